"""Jit sampler over an explicit KV cache: N completions per prompt in one compiled loop, and exact scoring.

Any logits function ``apply(params, tokens [b, t], positions [b, t], cache) -> (logits [b, t, v], cache)``
plugs in (DESIGN.md §3), as long as every cache leaf has the batch on axis 0 and cache slots on axis -2
(``cat_jax.models.init_cache`` builds one). ``apply`` is a static argument of the compiled loop, so it must
be hashable by value (``cat_jax.models.decoder(graphdef)`` is) to reuse the compilation across calls.

**Prompts are right-padded**: row ``b`` holds its prompt in ``prompts[b, :lengths[b]]``, anything after is
ignored (its cache slots are overwritten before they become visible). The sampler

1. prefills the ``B`` prompts (positions ``0..P-1``) into their first ``P`` cache slots, in one forward pass
   (on CPU: one pass per group of rows of at most ``CPU_PREFILL_TOKENS`` tokens, see ``_prefill_rows``),
2. copies the prefilled slots to the ``N`` sample rows of each prompt (the N samples share them; nothing is
   recomputed),
3. runs one ``lax.while_loop`` of at most ``max_new_tokens`` single-token steps, which exits as soon as every
   sequence has emitted a stop token. Step ``i`` feeds the previous token (step 0: the prompt's last token
   again, so the prefill never computes logits over the prompt) and samples token ``i``.

Randomness: sample ``n`` of prompt ``b`` at step ``i`` draws one uniform from
``fold_in(fold_in(fold_in(key, b), n), i)`` and inverts the CDF of its sampling distribution, so a row's
tokens depend on the key and on that row only (not on the batch size, the
other rows, or how the batch is sharded).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from cat_jax import logprobs
from cat_jax import numerics as nx


def _check_temperature(temperature) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(
            f"temperature must be a float > 0 for sampling, got {temperature!r}; use Greedy() for argmax"
        )


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Argmax decoding. Its sampling distribution is a point mass: sampling log-probs are 0."""

    def scores(self, logits: Array) -> Array:
        return logits


@dataclasses.dataclass(frozen=True)
class Temperature:
    """Sample from ``softmax(logits / temperature)``."""

    temperature: float = 1.0

    def __post_init__(self):
        _check_temperature(self.temperature)

    def scores(self, logits: Array) -> Array:
        return logits / self.temperature


def _top_k(scores: Array, k: int) -> Array:
    kth = jax.lax.top_k(scores, k)[0][..., -1:]
    return jnp.where(scores >= kth, scores, -jnp.inf)


def _top_p(scores: Array, p: float) -> Array:
    """Keep the smallest set of highest-scoring tokens whose probability reaches ``p`` (ties kept)."""
    sorted_desc = -jnp.sort(-scores, axis=-1)
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The first token always has mass_before = 0 < p, so the kept set is never empty.
    cutoff = jnp.min(jnp.where(mass_before < p, sorted_desc, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(scores >= cutoff, scores, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class TopK:
    """Sample among the ``k`` highest logits at ``temperature``; ``k = 0`` disables the filter."""

    k: int
    temperature: float = 1.0

    def __post_init__(self):
        nx.check_int("k", self.k, minimum=0)
        _check_temperature(self.temperature)

    def scores(self, logits: Array) -> Array:
        s = logits / self.temperature
        return _top_k(s, min(self.k, s.shape[-1])) if self.k else s


@dataclasses.dataclass(frozen=True)
class TopP:
    """Nucleus sampling: mass ``p`` at ``temperature`` (applied first), after top-``k`` (0: off)."""

    p: float
    temperature: float = 1.0
    k: int = 0

    def __post_init__(self):
        if isinstance(self.p, bool) or not isinstance(self.p, int | float) or not 0 < self.p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got p={self.p!r}; use p=1 to disable the filter")
        _check_temperature(self.temperature)
        nx.check_int("k", self.k, minimum=0)

    def scores(self, logits: Array) -> Array:
        s = logits / self.temperature
        if self.k:
            s = _top_k(s, min(self.k, s.shape[-1]))
        # p = 1 keeps everything; skipping the sort avoids dropping a tail whose cumulative sum rounds to 1.
        return _top_p(s, self.p) if self.p < 1 else s


Strategy = Greedy | Temperature | TopK | TopP


def strategy_for(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Strategy:
    """Strategy for config-style settings: top-p (after top-k) if ``top_p < 1``, else top-k, else plain."""
    TopP(top_p, temperature=temperature, k=top_k)  # validates all three, so none is ignored silently
    if top_p < 1.0:
        return TopP(top_p, temperature=temperature, k=top_k)
    if top_k > 0:
        return TopK(top_k, temperature=temperature)
    return Temperature(temperature)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Sampling settings shared by evaluation and the RL rollout, validated on construction.

    ``num_samples`` completions per prompt (the RL step needs >= 2), at most ``max_new_tokens`` each, drawn
    with ``temperature`` / ``top_k`` (0 = off) / ``top_p`` (1 = off) (see :func:`strategy_for`); ``chunk``:
    prompts per sampler call in ``cat_jax.evaluation.generate`` (the RL step samples its batch in one call);
    ``samples_per_call``: that many of each prompt's samples per call (0 = all ``num_samples``): the KV
    cache holds ``chunk * samples_per_call`` rows.
    """

    num_samples: int = 16
    max_new_tokens: int = 8
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    chunk: int = 64
    samples_per_call: int = 0

    def __post_init__(self):
        nx.check_int("num_samples", self.num_samples, minimum=1)
        nx.check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        nx.check_int("top_k", self.top_k, minimum=0)
        nx.check_int("chunk", self.chunk, minimum=1)
        nx.check_int("samples_per_call", self.samples_per_call, minimum=0)
        if self.samples_per_call and self.num_samples % self.samples_per_call:
            raise ValueError(
                f"samples_per_call={self.samples_per_call} must divide num_samples={self.num_samples}"
            )
        TopP(self.top_p, temperature=self.temperature, k=self.top_k)  # the sampler's own checks and messages

    def strategy(self) -> Strategy:
        """The sampling strategy of these settings (:func:`strategy_for`)."""
        return strategy_for(self.temperature, self.top_k, self.top_p)


class Samples(NamedTuple):
    """Sampler output; tokens after a sequence's stop token are ``pad_id`` with mask False and log-probs 0."""

    tokens: Int[Array, "b n l"]  # generated tokens (the prompt is not repeated)
    logp_sample: Float[Array, "b n l"]  # log-prob under the sampling distribution (temperature, filters)
    logp_model: Float[Array, "b n l"]  # log-prob under the untempered model, log softmax(logits)
    mask: Bool[Array, "b n l"]  # True for generated tokens, up to and including the stop token
    lengths: Int[Array, "b n"]  # number of generated tokens, mask.sum(-1)


def cache_size(cache: PyTree) -> int:
    """Slots per row of a cache (axis -2 of its leaves)."""
    return int(jax.tree.leaves(cache)[0].shape[-2])


def sample(
    apply: Any,
    params: PyTree,
    cache: PyTree,
    prompts: Int[Array, "b p"],
    lengths: Int[Array, " b"],
    key: Array,
    *,
    num_samples: int,
    max_new_tokens: int,
    strategy: Strategy = Temperature(1.0),
    stop_tokens: tuple[int, ...] = (),
    pad_id: int = 0,
) -> Samples:
    """``num_samples`` completions of each right-padded prompt, at most ``max_new_tokens`` long, one compile.

    ``cache`` is a cache for ``B`` rows with at least ``P + max_new_tokens`` slots (e.g. ``init_cache``);
    only its structure, dtypes and slot count are used, never its contents, so one cache serves every call
    (on CPU a 16-bit cache is carried in float32 inside the loop, with the same results: ``CPU_CACHE_DTYPE``).
    Stopping: a sequence ends after the first token in ``stop_tokens`` (EOS and any others), which is kept
    and masked True. ``lengths`` must be in ``[1, P]`` (checked when concrete).
    """
    num_samples = nx.check_int("num_samples", num_samples, minimum=1)
    max_new_tokens = nx.check_int("max_new_tokens", max_new_tokens, minimum=1)
    if not isinstance(strategy, Strategy):
        raise ValueError(f"strategy must be one of Greedy, Temperature, TopK, TopP; got {strategy!r}")
    stop_tokens = tuple(int(t) for t in stop_tokens)
    b, p = prompts.shape
    size = cache_size(cache)
    if p + max_new_tokens > size:
        raise ValueError(
            f"prompts of length {p} plus max_new_tokens={max_new_tokens} need {p + max_new_tokens} cache "
            f"slots but the cache has {size}; build it with init_cache(config, batch, {p + max_new_tokens}) "
            "or shorten the prompts / lower max_new_tokens"
        )
    if jax.tree.leaves(cache)[0].shape[0] != b:
        raise ValueError(f"cache batch {jax.tree.leaves(cache)[0].shape[0]} != number of prompts {b}")
    if nx.is_concrete(lengths):
        lens = np.asarray(lengths)
        if lens.min(initial=1) < 1 or lens.max(initial=1) > p:
            raise ValueError(f"prompt lengths must be in [1, {p}] (right padding), got {lens.tolist()}")
    return _sample(
        apply,
        params,
        cache,
        jnp.asarray(prompts, jnp.int32),
        jnp.asarray(lengths, jnp.int32),
        key,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        strategy=strategy,
        stop_tokens=stop_tokens,
        pad_id=int(pad_id),
    )


# Prompt tokens per prefill pass on CPU. One pass over [B * P] tokens spills the activations out of the
# per-core L2 cache: at B = 256, P = 32 (8192 tokens, d = 128) the MLP matmuls ran at 38 GFLOP/s, in passes of
# 256-512 tokens at 105 (benchmarks/sampler.py's machine). Accelerators prefill in one pass.
CPU_PREFILL_TOKENS = 256


# Dtype the compiled loop carries 16-bit (bfloat16 / float16) cache leaves in on CPU: XLA:CPU computes every
# 16-bit op but dots in float32, so writing one token into a bfloat16 cache converted the whole cache to
# float32 and back, per layer, per tensor, at every decoding step (more than the attention products cost).
# Same results: the models write values already rounded to their compute dtype, which float32 holds exactly,
# and attention reads its cache upcast to float32 either way. None: carry the cache's own dtypes.
CPU_CACHE_DTYPE = jnp.float32


def _carried(dtype) -> Any:
    """The dtype the loop carries a cache leaf of ``dtype`` in (see ``CPU_CACHE_DTYPE``)."""
    dtype = jnp.dtype(dtype)
    if CPU_CACHE_DTYPE is None or jax.default_backend() != "cpu" or dtype.itemsize != 2:
        return dtype
    return jnp.dtype(CPU_CACHE_DTYPE) if jnp.issubdtype(dtype, jnp.floating) else dtype


def _prefill_rows(b: int, p: int) -> int:
    """Rows per prefill pass: all on accelerators; on CPU the largest divisor of ``b`` with at most
    ``CPU_PREFILL_TOKENS`` tokens (at least one row)."""
    if jax.default_backend() != "cpu" or b * p <= CPU_PREFILL_TOKENS:
        return b
    return max(r for r in range(1, b + 1) if b % r == 0 and (r * p <= CPU_PREFILL_TOKENS or r == 1))


@functools.partial(
    jax.jit,
    static_argnames=("apply", "num_samples", "max_new_tokens", "strategy", "stop_tokens", "pad_id"),
)
def _sample(
    apply, params, cache, prompts, lengths, key, *, num_samples, max_new_tokens, strategy, stop_tokens, pad_id
):
    b, p = prompts.shape
    n, steps = num_samples, max_new_tokens
    rows = _prefill_rows(b, p)
    positions = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32)[None], (rows, p))
    empty = jax.tree.map(
        lambda x: jnp.zeros((rows, *x.shape[1:-2], p, x.shape[-1]), _carried(x.dtype)), cache
    )

    def prefill(c, head):
        # Rows [c * rows, (c + 1) * rows) into an empty p-slot cache, so attention is p x p, not p x size.
        # The logits are unused (the loop re-feeds each prompt's last token), so XLA drops the LM head over
        # the prompt positions.
        _, part = apply(params, jax.lax.dynamic_slice_in_dim(prompts, c * rows, rows), positions, empty)
        return jax.tree.map(lambda h, x: jax.lax.dynamic_update_slice_in_dim(h, x, c * rows, 0), head, part)

    head = jax.tree.map(lambda x: jnp.zeros((b, *x.shape[1:]), x.dtype), empty)
    head = jax.lax.fori_loop(0, b // rows, prefill, head)
    # The model sees a flat batch of B*N rows (prompt-major); outputs are reshaped back to [B, N, ...].
    # The N sample rows of a prompt share its prefilled slots; the later slots start empty. Only the input
    # cache's structure, dtypes and slot count are used (a slot is never visible before it is written:
    # prefill writes slots < p, step i writes slot length - 1 + i).
    cache = jax.tree.map(
        lambda x, h: jnp.pad(
            jnp.repeat(h, n, axis=0), [(0, 0)] * (x.ndim - 2) + [(0, x.shape[-2] - p), (0, 0)]
        ),
        cache,
        head,
    )
    last = jnp.take_along_axis(prompts, (lengths - 1)[:, None], axis=1)[:, 0]
    tok0 = jnp.repeat(last, n)
    pos = jnp.repeat(lengths - 1, n)
    row_keys = jax.vmap(
        lambda i: jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(key, i), j))(jnp.arange(n))
    )(jnp.arange(b)).reshape(b * n)
    stops = jnp.asarray(stop_tokens, jnp.int32) if stop_tokens else None

    def choose(logits_v, step):
        logits_v = logits_v.astype(jnp.float32)
        logp_model = jax.nn.log_softmax(logits_v, axis=-1)
        if isinstance(strategy, Greedy):
            tok = jnp.argmax(logits_v, axis=-1)
            logp_s = jnp.zeros(tok.shape, jnp.float32)
        else:
            scores = strategy.scores(logits_v)
            step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, step)
            # Inverse-CDF sampling: one uniform per row instead of a Gumbel per vocabulary entry (the
            # per-token random bits dominated the decode step on CPU). u > 0 so zero-probability tokens
            # (filtered to -inf) can never be drawn.
            u = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32, jnp.finfo(jnp.float32).tiny, 1.0))(
                step_keys
            )
            logp_all = jax.nn.log_softmax(scores, axis=-1)
            cdf = jnp.cumsum(jnp.exp(logp_all), axis=-1)
            tok = jnp.sum(cdf < (u * cdf[:, -1])[:, None], axis=-1)
            logp_s = jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]
        lm = jnp.take_along_axis(logp_model, tok[:, None], axis=-1)[:, 0]
        return tok.astype(jnp.int32), logp_s, lm

    def cond(state):
        i, done = state[0], state[1]
        return (i < steps) & ~jnp.all(done)

    def body(state):
        # Step i feeds the previous token (step 0: the prompt's last, at position length - 1, which rewrites
        # its own slot) and samples token i from the logits; no forward pass is wasted after the last token.
        i, done, tok, cache, pos, toks, lps, lms, mask = state
        logits, cache = apply(params, tok[:, None], pos[:, None], cache)
        tok, lp, lm = choose(logits[:, 0], i)
        active = ~done
        tok = jnp.where(active, tok, pad_id)
        toks = toks.at[:, i].set(tok)
        lps = lps.at[:, i].set(jnp.where(active, lp, 0.0))
        lms = lms.at[:, i].set(jnp.where(active, lm, 0.0))
        mask = mask.at[:, i].set(active)
        if stops is not None:
            done = done | (active & jnp.any(tok[:, None] == stops[None, :], axis=-1))
        return i + 1, done, tok, cache, pos + 1, toks, lps, lms, mask

    bn = b * n
    state = (
        jnp.int32(0),
        jnp.zeros((bn,), bool),
        tok0,
        cache,
        pos,
        jnp.full((bn, steps), pad_id, jnp.int32),
        jnp.zeros((bn, steps), jnp.float32),
        jnp.zeros((bn, steps), jnp.float32),
        jnp.zeros((bn, steps), bool),
    )
    _, _, _, _, _, toks, lps, lms, mask = jax.lax.while_loop(cond, body, state)
    shape = (b, n, steps)
    mask = mask.reshape(shape)
    return Samples(
        toks.reshape(shape), lps.reshape(shape), lms.reshape(shape), mask, mask.sum(-1).astype(jnp.int32)
    )


def join(
    prompts: Int[Array, "b p"],
    lengths: Int[Array, " b"],
    completions: Int[Array, "b n l"],
    mask: Bool[Array, "b n l"],
    *,
    pad_id: int = 0,
) -> tuple[Int[Array, "b n t"], Bool[Array, "b n t"]]:
    """Contiguous sequences ``prompt[:len] + completion + padding`` of length ``P + L`` and their label mask.

    The returned mask is True exactly on completion tokens (the labels of SPEC §3.1: prompt and padding
    unsupervised), ready for :func:`sequence_log_probs`.
    """
    b, p = prompts.shape
    n, length = completions.shape[1:]
    t = jnp.arange(p + length)[None, :]  # [1, t]
    lens = lengths[:, None]  # [b, 1]
    in_prompt = t < lens
    comp_idx = jnp.clip(t - lens, 0, length - 1)  # [b, t]
    from_prompt = jnp.take_along_axis(prompts, jnp.clip(t, 0, p - 1) * jnp.ones_like(lens), axis=1)  # [b, t]
    idx = jnp.broadcast_to(comp_idx[:, None, :], (b, n, p + length))
    from_comp = jnp.take_along_axis(completions, idx, axis=2)
    comp_mask = (
        jnp.take_along_axis(mask, idx, axis=2) & ~in_prompt[:, None, :] & (t - lens < length)[:, None, :]
    )
    tokens = jnp.where(
        in_prompt[:, None, :], from_prompt[:, None, :], jnp.where(comp_mask, from_comp, pad_id)
    )
    return tokens, comp_mask


def sequence_log_probs(
    apply: Any, params: PyTree, tokens: Int[Array, "*batch t"], mask: Bool[Array, "*batch t"]
) -> Float[Array, "*batch t"]:
    r"""Per-token log-probs :math:`\log\pi(x_t \mid x_{<t})` of masked tokens, 0 elsewhere (one causal shift).

    One uncached forward over positions ``0..T-1``; logits at ``t - 1`` score token ``t`` (SPEC §3.1:
    position 0 has no prediction and is always unsupervised, whatever ``mask[..., 0]`` says). Raw logits,
    temperature 1, no filtering (SPEC §3.3 step 3). ``.sum(-1)`` is the sequence log-probability ``log p``
    of the objectives. Leading batch axes (``[B, N, T]``) are flattened for the model and restored. The
    scorer is :func:`cat_jax.logprobs.model_token_log_probs` with labels ``where(mask, tokens, -100)``.
    """
    tokens = jnp.asarray(tokens).astype(jnp.int32)
    return logprobs.model_token_log_probs(apply, params, tokens, jnp.where(mask, tokens, logprobs.IGNORE))
