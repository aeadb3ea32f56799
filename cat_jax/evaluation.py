"""Evaluation: sample N completions per problem, score them into ``[B, N]`` arrays, exact scaling curves.

The pipeline is task-agnostic:

1. :func:`generate` runs the jitted sampler over prompts in fixed-size chunks (the last chunk is padded so
   there is one compile) and returns host arrays ``tokens [B, N, L]`` and ``mask [B, N, L]``;
2. a task's scorer turns them into a :class:`Scored` record (``correct``, ``answer_ids`` + ``valid`` for
   voting, optional continuous ``rewards``), all ``[B, N]``;
3. :func:`curves` computes pass@k, maj@k and best-of-k for every requested budget with the exact estimators of
   :mod:`cat_jax.operators` (no Monte Carlo); :mod:`cat_jax.reporting` lays them out as tables and plots.

Without sampling, for exact-match tasks: :func:`exact_pass_at_k` and :func:`exact_majority_at_k` are the
noise-free expectations of the sampled pass@k / maj@k, from teacher-forced forward passes
(:func:`teacher_forced_log_p`) over the answers (EXPERIMENTS.md, the cross-check metric and its controls).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from cat_jax import logprobs, operators, plurality, sampling, sharding


def generate(
    apply: Any,
    params: PyTree,
    make_cache: Callable[[int, int], PyTree],
    prompts: np.ndarray,
    lengths: np.ndarray,
    key: Array,
    cfg: sampling.SampleConfig,
    *,
    stop_tokens: Sequence[int] = (),
    pad_id: int = 0,
    mesh: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.num_samples`` completions for each right-padded prompt; host ``(tokens, mask)`` ``[B, N, L]``.

    Prompt chunk ``c`` uses ``fold_in(key, c)`` (so ``chunk`` is part of the seed), or with
    ``cfg.samples_per_call`` below ``num_samples`` call ``j`` of the chunk ``fold_in(fold_in(key, c), j)``
    (the cache then holds ``chunk * samples_per_call`` rows); ``make_cache(rows, slots)`` builds an empty
    KV cache. ``mesh``: each chunk's prompts are split over its devices (data
    parallel sampling; ``cfg.chunk`` must be a multiple of the device count), with the same samples.
    """
    prompts = np.asarray(prompts, np.int32)
    lengths = np.asarray(lengths, np.int32)
    if prompts.ndim != 2 or lengths.shape != prompts.shape[:1]:
        raise ValueError(f"prompts must be [B, P] with lengths [B]; got {prompts.shape} and {lengths.shape}")
    b, p = prompts.shape
    chunk = min(cfg.chunk, b)
    place = jnp.asarray
    if mesh is not None:
        if chunk % mesh.devices.size:
            raise ValueError(
                f"chunk={chunk} prompts per sampler call must be a multiple of the {mesh.devices.size} "
                "devices of the mesh; change eval.chunk"
            )
        place = lambda x: sharding.shard_batch(x, mesh)
    slots = p + cfg.max_new_tokens
    per_call = cfg.samples_per_call or cfg.num_samples
    toks, masks = [], []
    for c, start in enumerate(range(0, b, chunk)):
        rows = prompts[start : start + chunk]
        lens = lengths[start : start + chunk]
        real = rows.shape[0]
        if real < chunk:  # pad with copies of the first row so every call has the same shape
            rows = np.concatenate([rows, np.repeat(rows[:1], chunk - real, 0)])
            lens = np.concatenate([lens, np.repeat(lens[:1], chunk - real, 0)])
        parts, chunk_key = [], jax.random.fold_in(key, c)
        for j in range(cfg.num_samples // per_call):
            # One call per chunk keeps fold_in(key, c); split calls fold in their index as well.
            call_key = chunk_key if per_call == cfg.num_samples else jax.random.fold_in(chunk_key, j)
            parts.append(
                sampling.sample(
                    apply,
                    params,
                    make_cache(chunk, slots),
                    place(rows),
                    place(lens),
                    call_key,
                    num_samples=per_call,
                    max_new_tokens=cfg.max_new_tokens,
                    strategy=cfg.strategy(),
                    stop_tokens=tuple(stop_tokens),
                    pad_id=pad_id,
                )
            )
        # Across processes each samples its devices' prompts; the samples are gathered to every process.
        toks.append(np.concatenate([sharding.to_host(o.tokens)[:real] for o in parts], axis=1))
        masks.append(np.concatenate([sharding.to_host(o.mask)[:real] for o in parts], axis=1))
    return np.concatenate(toks), np.concatenate(masks)


@dataclasses.dataclass(frozen=True)
class Scored:
    """Per-sample scores, all ``[B, N]``: verifier outcome, answer clusters for voting, optional rewards."""

    correct: np.ndarray
    answer_ids: np.ndarray | None = None
    valid: np.ndarray | None = None
    rewards: np.ndarray | None = None


def curves(scored: Scored, ks: Sequence[int], *, ties: str = "first") -> dict[str, operators.Curve]:
    """Exact ``pass@k`` (and ``maj@k``, ``best@k`` when the scores allow) at every budget in ``ks``."""
    out = {"pass@k": operators.scaling_curve(operators.pass_at_k, jnp.asarray(scored.correct), ks=ks)}
    if scored.answer_ids is not None:
        out["maj@k"] = operators.scaling_curve(
            operators.majority_at_k,
            jnp.asarray(scored.answer_ids),
            jnp.asarray(scored.correct),
            ks=ks,
            valid=None if scored.valid is None else jnp.asarray(scored.valid),
            ties=ties,
        )
    if scored.rewards is not None:
        out["best@k"] = operators.scaling_curve(operators.best_of_k, jnp.asarray(scored.rewards), ks=ks)
    return out


def curve_record(curve: operators.Curve) -> dict[str, list]:
    """JSON-ready ``{"k": [...], "mean": [...], "se": [...]}``."""
    return {
        "k": [int(k) for k in curve.ks],
        "mean": [float(v) for v in np.asarray(curve.mean)],
        "se": [float(v) for v in np.asarray(curve.se)],
    }


# ----------------------------------------------------------------------------- exact, teacher-forced


@functools.partial(jax.jit, static_argnames=("apply", "pad_id"))
def teacher_forced_log_p(
    apply: Any,
    params: PyTree,
    prompts: Int[Array, "b p"],
    lengths: Int[Array, " b"],
    targets: Int[Array, "b t"],
    target_lengths: Int[Array, " b"],
    temperatures: Float[Array, " n_temps"],
    *,
    pad_id: int,
) -> Float[Array, "n_temps b"]:
    """``[T, B]`` log-probability of ``targets[:target_lengths]`` after each right-padded prompt, per ``T``.

    One forward pass over ``prompt + target``, scored by :func:`cat_jax.logprobs.completion_log_probs` (one
    causal shift) under ``softmax(logits / T)`` at every temperature ``T``.
    Jitted here (unlike most library functions): the exact estimators call it in a host loop, once per
    candidate answer, with the same shapes.
    """
    target_mask = jnp.arange(targets.shape[1])[None, :] < target_lengths[:, None]
    tokens, mask = sampling.join(prompts, lengths, targets[:, None], target_mask[:, None], pad_id=pad_id)
    tokens, mask = tokens[:, 0].astype(jnp.int32), mask[:, 0]
    logits, _ = apply(params, tokens, logprobs.positions_for(tokens), None)
    labels = jnp.where(mask, tokens, logprobs.IGNORE)
    return jax.vmap(lambda t: logprobs.completion_log_probs(logits, labels, temperature=t)[0])(temperatures)


def exact_pass_at_k(
    apply: Any,
    params: PyTree,
    prompts: np.ndarray,
    lengths: np.ndarray,
    targets: np.ndarray,
    target_lengths: np.ndarray,
    *,
    temperatures: Sequence[float],
    ks: Sequence[int],
    pad_id: int,
) -> dict[str, float]:
    r"""Noise-free expected pass@k from one teacher-forced forward pass (EXPERIMENTS.md, cross-check metric).

    With temperature-``T`` sampling, no truncation and exact-match answers, a problem whose answer + stop
    token (``targets[:target_lengths]``) has probability :math:`p_i` under ``softmax(logits / T)`` is solved
    by ``k`` samples with probability :math:`1 - (1 - p_i)^k`; the mean over problems is the exact expected
    pass@k. Returns ``{"T<t>/pass@<k>": mean, "T<t>/pass@<k>_se": SE over problems, "T<t>/log_p": mean
    log p_i}``.
    """
    log_p = sharding.to_host(
        teacher_forced_log_p(
            apply,
            params,
            prompts,
            lengths,
            targets,
            target_lengths,
            jnp.asarray(temperatures, jnp.float32),
            pad_id=pad_id,
        )
    )  # [T, B]
    out = {}
    for t, lp in zip(temperatures, log_p, strict=True):
        tag = f"T{float(t):g}"
        out[f"{tag}/log_p"] = float(np.mean(lp))
        for k in ks:
            solved = -np.expm1(k * np.log1p(-np.exp(np.minimum(lp, 0.0))))
            out[f"{tag}/pass@{k}"] = float(np.mean(solved))
            out[f"{tag}/pass@{k}_se"] = float(np.std(solved, ddof=1) / np.sqrt(len(solved)))
    return out


def exact_majority_at_k(
    apply: Any,
    params: PyTree,
    prompts: np.ndarray,
    lengths: np.ndarray,
    targets: np.ndarray,
    target_lengths: np.ndarray,
    *,
    temperatures: Sequence[float],
    ks: Sequence[int],
    vocab_size: int,
    stop_tokens: Sequence[int],
    max_new_tokens: int,
    pad_id: int,
    max_candidates: int = 4096,
) -> dict[str, float]:
    r"""Noise-free expected maj@k at temperature ``T`` where every stopped completion can be listed.

    The sampled maj@k (``cat_jax.rl.exact_match_scores``) votes over identical completions that stop within
    ``max_new_tokens = L`` tokens (end on the stop token); one that does not stop is invalid (takes a vote,
    never wins). Every stopped completion is a string of ``l <= L`` tokens whose last is the stop token and no
    earlier one is: ``sum_l (V - 1)^(l - 1)`` candidates, each teacher-forced under ``softmax(logits / T)``.
    The chance that the correct one (``targets[:target_lengths]``) wins a ``k``-vote plurality is
    :func:`cat_jax.plurality.plurality_win_probability` (a tie split evenly among the tied answers, the
    expectation of the sampled estimator's first-occurrence rule), so this is the expectation of the sampled
    estimator, exactly. More than ``max_candidates`` candidates (long answers) is an error. Returns
    ``{"T<t>/maj@<k>": mean, "T<t>/maj@<k>_se": SE over problems}``.
    """
    if len(stop_tokens) != 1:
        raise ValueError(f"exact maj@k needs exactly one stop token, got {tuple(stop_tokens)}")
    stop, length = int(stop_tokens[0]), int(max_new_tokens)
    others = [t for t in range(vocab_size) if t != stop]
    count = sum(len(others) ** (n - 1) for n in range(1, length + 1))
    if count > max_candidates:
        raise ValueError(
            f"{count} stopped completions of up to max_new_tokens={length} tokens over a "
            f"{vocab_size}-token vocabulary exceed max_candidates={max_candidates}; "
            "exact maj@k is for short answers"
        )
    candidates = [
        (*prefix, stop) for n in range(1, length + 1) for prefix in itertools.product(others, repeat=n - 1)
    ]
    where = {c: i for i, c in enumerate(candidates)}
    index = np.array(
        [where[tuple(t[:n].tolist())] for t, n in zip(targets, target_lengths, strict=True)], np.int32
    )
    temps = jnp.asarray(temperatures, jnp.float32)
    b = len(prompts)
    log_p = np.stack(  # [C, T, B]
        [
            np.asarray(
                teacher_forced_log_p(
                    apply,
                    params,
                    prompts,
                    lengths,
                    np.broadcast_to(np.array([*c, *[pad_id] * (length - len(c))], np.int32), (b, length)),
                    np.full((b,), len(c), np.int32),
                    temps,
                    pad_id=pad_id,
                )
            )
            for c in candidates
        ]
    )
    probs = np.moveaxis(np.exp(log_p), 0, -1)  # [T, B, C]
    out = {}
    for t, pr in zip(temperatures, probs, strict=True):
        for k in ks:
            win = np.concatenate(  # rows in blocks: the DP's intermediates grow as C * k^3 per row
                [
                    np.asarray(plurality.plurality_win_probability(pr[i : i + 16], index[i : i + 16], n=k))
                    for i in range(0, b, 16)
                ]
            )
            out[f"T{float(t):g}/maj@{k}"] = float(np.mean(win))
            out[f"T{float(t):g}/maj@{k}_se"] = float(np.std(win, ddof=1) / np.sqrt(len(win)))
    return out
