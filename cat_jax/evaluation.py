"""Evaluation: sample N completions per problem, score them into ``[B, N]`` arrays, exact scaling curves.

The pipeline is task-agnostic:

1. :func:`generate` runs the jitted sampler over prompts in fixed-size chunks (the last chunk is padded so
   there is one compile) and returns host arrays ``tokens [B, N, L]`` and ``mask [B, N, L]``;
2. a task's scorer turns them into a :class:`Scored` record (``correct``, ``answer_ids`` + ``valid`` for
   voting, optional continuous ``rewards``), all ``[B, N]``;
3. :func:`curves` computes pass@k, maj@k and best-of-k for every requested budget with the exact estimators of
   :mod:`cat_jax.operators` (no Monte Carlo); :mod:`cat_jax.reporting` lays them out as tables and plots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from cat_jax import operators, sampling

SampleConfig = sampling.SampleConfig  # the one sampling config; kept here for existing callers


def generate(
    apply: Any,
    params: PyTree,
    make_cache: Callable[[int, int], PyTree],
    prompts: np.ndarray,
    lengths: np.ndarray,
    key: Array,
    cfg: SampleConfig,
    *,
    stop_tokens: Sequence[int] = (),
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.num_samples`` completions for each right-padded prompt; host ``(tokens, mask)`` ``[B, N, L]``.

    Prompt chunk ``c`` uses ``fold_in(key, c)`` (so ``chunk`` is part of the seed); ``make_cache(rows,
    slots)`` builds an empty KV cache.
    """
    prompts = np.asarray(prompts, np.int32)
    lengths = np.asarray(lengths, np.int32)
    if prompts.ndim != 2 or lengths.shape != prompts.shape[:1]:
        raise ValueError(f"prompts must be [B, P] with lengths [B]; got {prompts.shape} and {lengths.shape}")
    b, p = prompts.shape
    chunk = min(cfg.chunk, b)
    slots = p + cfg.max_new_tokens
    toks, masks = [], []
    for c, start in enumerate(range(0, b, chunk)):
        rows = prompts[start : start + chunk]
        lens = lengths[start : start + chunk]
        real = rows.shape[0]
        if real < chunk:  # pad with copies of the first row so every call has the same shape
            rows = np.concatenate([rows, np.repeat(rows[:1], chunk - real, 0)])
            lens = np.concatenate([lens, np.repeat(lens[:1], chunk - real, 0)])
        out = sampling.sample(
            apply,
            params,
            make_cache(chunk, slots),
            jnp.asarray(rows),
            jnp.asarray(lens),
            jax.random.fold_in(key, c),
            num_samples=cfg.num_samples,
            max_new_tokens=cfg.max_new_tokens,
            strategy=cfg.strategy(),
            stop_tokens=tuple(stop_tokens),
            pad_id=pad_id,
        )
        toks.append(np.asarray(out.tokens)[:real])
        masks.append(np.asarray(out.mask)[:real])
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
