r"""Log-probabilities of given tokens under a model: the one scorer every loss, sampler and evaluator uses.

Token layout (SPEC §2.10, §3.1): ``labels [..., L]`` hold the target token at supervised positions and
``IGNORE = -100`` elsewhere; one causal shift, so position ``t`` is scored by
``log softmax(logits[t-1] / T)[labels[t]]`` and position 0 is never supervised (nothing predicts it).
Per-token log-probs come back in the same ``[..., L]`` layout with exact zeros at unsupervised positions;
their sum over ``L`` is the summed completion log-probability ``log p`` that the objectives take.

* :func:`token_log_probs` (logits in) and :func:`model_token_log_probs` (a logits function in) score tokens;
* :func:`completion_log_probs` sums them per sequence and counts the targets;
* :func:`shared_prompt_log_probs` scores M completions per prompt, running each prompt once (RL updates);
* :func:`check_supervision` validates a label batch eagerly.

Any model used through ``apply(params, tokens, positions, cache) -> (logits, cache)`` (DESIGN.md §3) plugs in.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree, Shaped

from cat_jax import numerics as nx

IGNORE = -100  # label of an unsupervised position (the Hugging Face convention the data pipeline uses)

ApplyFn = Callable[..., tuple[Array, Any]]


def check_supervision(
    labels: Int[ArrayLike, "*b l"],
    mask: Shaped[ArrayLike, "*b l"] | None = None,
    *,
    vocab_size: int | None = None,
) -> None:
    """Eagerly validate a supervision batch; raises ``ValueError`` naming ``labels`` or ``mask``.

    Rules (SPEC §2.10): labels are ``-100`` or a token id in ``[0, vocab_size)``; position 0 is unsupervised
    (nothing predicts it); every row has at least one target; with an attention ``mask`` (1 = real token) a
    target may not sit on padding nor be predicted from a padding position.
    """
    lab = np.asarray(jax.device_get(labels))
    if lab.ndim < 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer array [..., L], got {lab.dtype}{list(lab.shape)}")
    sup = lab != IGNORE
    out = sup & ((lab < 0) | (lab >= vocab_size)) if vocab_size is not None else np.zeros_like(sup)
    if out.any():  # name the offending ids, not every supervised one
        raise ValueError(f"labels must be -100 or in [0, {vocab_size}), got {np.unique(lab[out])[:5]}")
    if (lab[sup] < 0).any():
        raise ValueError(f"labels must be -100 or a token id >= 0, got {np.unique(lab[sup & (lab < 0)])[:5]}")
    if sup[..., 0].any():
        raise ValueError("labels at position 0 must be -100: no logit predicts the first token")
    empty = ~sup.any(axis=-1)
    if empty.any():
        raise ValueError(
            f"labels: every row needs >= 1 target, rows {np.argwhere(empty).ravel()[:5]} have none"
        )
    if mask is None:
        return
    m = np.asarray(jax.device_get(mask))
    if m.shape != lab.shape:
        raise ValueError(f"mask must have the labels' shape {lab.shape}, got {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("mask must contain only 0/1 (or booleans)")
    m = m.astype(bool)
    if (sup & ~m).any():
        raise ValueError("labels: a target sits on a padding position (mask = 0)")
    if (sup[..., 1:] & ~m[..., :-1]).any():
        raise ValueError("labels: a target is predicted from a padding position (mask = 0 just before it)")


def _untempered(temperature) -> bool:
    """True for the static temperature 1 (no division: the scores stay bit-identical to plain logits);
    other static values must be > 0; a traced temperature is used as given."""
    if not nx.is_concrete(temperature) or isinstance(temperature, jax.Array | np.ndarray):
        return False
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    return temperature == 1


def token_log_probs(
    logits: Float[Array, "*b l v"], labels: Int[ArrayLike, "*b l"], *, temperature: float | ArrayLike = 1.0
) -> Float[Array, "*b l"]:
    r"""``out[t] = log softmax(logits[t-1] / T)[labels[t]]`` where ``labels[t] != -100``, else 0; out[0] = 0.

    Half-precision logits are computed in float32. Unsupervised positions get an exact zero and no
    gradient. ``temperature`` ``T`` may be a Python number (> 0; 1 skips the division) or a traced scalar
    (e.g. under ``vmap`` over temperatures). Shapes ``[..., L, V], [..., L] -> [..., L]``.

    >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]]))
    >>> [round(float(x), 4) for x in token_log_probs(logits, jnp.array([[-100, 1, 0]]))[0]]
    [0.0, -0.6931, -0.1054]
    """
    if jnp.shape(labels) != logits.shape[:-1]:  # static: broadcasting would silently misalign tokens
        raise ValueError(
            f"labels must have shape {logits.shape[:-1]} (logits without V), got {jnp.shape(labels)}"
        )
    z = nx.as_float(logits)[..., :-1, :]
    if not _untempered(temperature):
        z = z / temperature
    lp = _chosen_log_probs(z, jnp.asarray(labels)[..., 1:])
    return jnp.concatenate([jnp.zeros_like(lp[..., :1]), lp], axis=-1)


def _chosen_log_probs(z: Float[Array, "*b v"], labels: Int[Array, "*b"]) -> Float[Array, "*b"]:
    """``log softmax(z)[labels]`` where ``labels != -100``, else an exact 0 (no shift; float32 ``z``).

    The chosen logit minus the log-partition: the ``[..., V]`` log-softmax itself is never materialised.
    """
    with jax.named_scope("vocab_log_softmax"):  # a group of benchmarks/step_profile.py
        sup = labels != IGNORE
        picked = jnp.take_along_axis(z, jnp.where(sup, labels, 0)[..., None], axis=-1)[..., 0]
        return jnp.where(sup, picked - jax.nn.logsumexp(z, axis=-1), jnp.zeros_like(picked))


def completion_log_probs(
    logits: Float[Array, "*b l v"],
    labels: Int[ArrayLike, "*b l"],
    mask: Shaped[ArrayLike, "*b l"] | None = None,
    *,
    temperature: float | ArrayLike = 1.0,
    validate: bool = False,
) -> tuple[Float[Array, "*b"], Int[Array, "*b"]]:
    r"""Summed completion log-probability ``log p = sum_t log pi_T(labels[t] | <t)`` and targets per row.

    ``log p`` is the *summed* log-probability the objectives take (never a token mean); ``temperature`` as in
    :func:`token_log_probs`. ``validate=True`` runs :func:`check_supervision` eagerly (not under jit).
    Shapes ``[..., L, V], [..., L] -> [...], [...]``.

    >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]]))
    >>> lp, t = completion_log_probs(logits, jnp.array([[-100, 1, 0]]))
    >>> round(float(lp[0]), 4), int(t[0])
    (-0.7985, 2)
    """
    if validate:
        check_supervision(labels, mask, vocab_size=jnp.shape(logits)[-1])
    tok = token_log_probs(logits, labels, temperature=temperature)
    return jnp.sum(tok, axis=-1), jnp.sum(jnp.asarray(labels) != IGNORE, axis=-1).astype(jnp.int32)


def positions_for(tokens: Int[ArrayLike, "b l"]) -> Int[Array, "b l"]:
    """Positions ``0..L-1`` of every row of right-padded ``tokens``, int32."""
    shape = jnp.shape(tokens)
    return jnp.broadcast_to(jnp.arange(shape[-1], dtype=jnp.int32)[None, :], shape)


def model_token_log_probs(
    apply_fn: ApplyFn,
    params: PyTree,
    tokens: Int[ArrayLike, "*b l"],
    labels: Int[ArrayLike, "*b l"],
    positions: Int[ArrayLike, "*b l"] | None = None,
    *,
    temperature: float | ArrayLike = 1.0,
) -> Float[Array, "*b l"]:
    """:func:`token_log_probs` of ``apply_fn(params, tokens, positions, None)`` (one uncached forward);
    leading axes are flattened for the model and restored. Positions default to ``0..L-1`` (right padding)."""
    tokens = jnp.asarray(tokens)
    lead, length = tokens.shape[:-1], tokens.shape[-1]
    flat = tokens.reshape(-1, length)
    pos = positions_for(flat) if positions is None else jnp.asarray(positions).reshape(-1, length)
    logits, _ = apply_fn(params, flat, pos, None)
    lp = token_log_probs(logits, jnp.asarray(labels).reshape(-1, length), temperature=temperature)
    return lp.reshape(*lead, length)


def shared_prompt_log_probs(
    apply_fn: ApplyFn,
    params: PyTree,
    make_cache: Callable[[int, int], PyTree],
    prompts: Int[ArrayLike, "b p"],
    lengths: Int[ArrayLike, " b"],
    completions: Int[ArrayLike, "b m l"],
    mask: Shaped[ArrayLike, "b m l"],
) -> Float[Array, "b m l"]:
    r"""Per-token ``log pi(c_j | prompt, c_{<j})`` of ``M`` completions per prompt, each prompt run once.

    The same numbers as :func:`model_token_log_probs` of the joined rows ``prompt[:len] + completion``
    (``sampling.join``), in the completion layout (``[B, M, L]``, zeros where ``mask`` is False), for less
    compute: the ``B`` right-padded prompts are prefilled once into a KV cache (``make_cache(B, P)``), the
    cache is repeated for the ``M`` samples of each group, and one cached pass over ``B M`` rows of ``L``
    tokens, ``[last prompt token, c_0, ..., c_{L-2}]`` at positions ``len - 1, ..., len + L - 2``, gives the
    logits of ``c_0, ..., c_{L-1}`` (the last prompt token rewrites its own slot with the same key and value;
    padding slots past it are overwritten or causally hidden, as in the sampler). Differentiable: the
    gradient reaches the prompt positions through their cached keys and values, summed over the group.

    ``apply_fn`` is any logits function with the cache contract of DESIGN.md §3 (every cache leaf has the
    batch on axis 0 and the slot on axis -2); ``lengths`` in ``[1, P]``; temperature 1, raw logits.
    """
    prompts = jnp.asarray(prompts, jnp.int32)
    completions = jnp.asarray(completions, jnp.int32)
    lengths = jnp.asarray(lengths, jnp.int32)
    b, p = prompts.shape
    m, length = completions.shape[1:]
    _, head = apply_fn(params, prompts, positions_for(prompts), make_cache(b, p))
    # [B, ..., P, d] -> [B M, ..., P + L, d]: each group's prompt slots for its M rows, L empty slots after.
    pad = lambda x: [(0, 0)] * (x.ndim - 2) + [(0, length), (0, 0)]
    cache = jax.tree.map(lambda x: jnp.pad(jnp.repeat(x, m, axis=0), pad(x)), head)
    last = jnp.take_along_axis(prompts, (lengths - 1)[:, None], axis=1)  # [B, 1]
    inputs = jnp.concatenate(
        [jnp.broadcast_to(last[:, None, :], (b, m, 1)), completions[..., :-1]], axis=-1
    ).reshape(b * m, length)
    pos = jnp.repeat(lengths - 1, m)[:, None] + jnp.arange(length, dtype=jnp.int32)[None, :]
    logits, _ = apply_fn(params, inputs, pos, cache)
    labels = jnp.where(jnp.asarray(mask, bool), completions, IGNORE).reshape(b * m, length)
    return _chosen_log_probs(nx.as_float(logits), labels).reshape(b, m, length)


__all__ = [
    "IGNORE",
    "check_supervision",
    "completion_log_probs",
    "model_token_log_probs",
    "positions_for",
    "shared_prompt_log_probs",
    "token_log_probs",
]
