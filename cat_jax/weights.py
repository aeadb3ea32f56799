r"""CAT RL weight pipeline on ``[B, M]`` rollouts (prompt-major): rewards, old log-probs, answers -> weights.

:func:`cat_weights` does exactly what SPEC §2.5 says the reference trainer does:

1. ``standard``: ``w = 1``;
2. ``bon``: ``w = N q^{N-1}`` with ``q`` the within-prompt or reward-history quantile (SPEC §2.3);
3. ``passn`` / ``majority`` (binary rewards): a success probability ``p`` per completion, either
   ``sequence`` (``clip(exp(clip(log p_old, -50, 0)), 1e-10, 1 - 1e-10)``), ``empirical``
   (Laplace ``(sum_j R_ij + 1) / (M + 2)`` per prompt) or, beyond the paper, ``exact`` (the policy's
   teacher-forced probability of the prompt's reference answer, one ``p`` per prompt with the sequence
   clamps: on exact-match tasks the true ``p`` of SPEC's objective, where ``sequence`` takes each sampled
   string's own probability, which is not zero-sum within a group: a wrong string gets ``w(p_wrong)``;
   measured in results/weight_balance on addition rollouts after 600 steps of standard RL, Pass@16 log
   with the sequence p pushes sampled completions up with 0.19 ± 0.08 of the weight it pushes them down,
   where any per-prompt p keeps the two equal),
   then the ``raw`` RL weight ``F'(p)`` or the ``log``
   (SFT) weight ``p F'(p) / F(p)`` of :mod:`cat_jax.objectives`; majority uses a per-prompt threshold ``k``
   from the strongest wrong answer (:func:`majority_thresholds`);
4. optional cap ``w <- min(w, clip)``;
5. sample-level mean normalisation over all ``B M`` entries iff ``normalize`` and strategy != standard and
   (bon or ``B >= 2`` or sequence probabilities) and some ``w > 0``;
6. detached weights and flat stats.

Beyond the paper, :func:`pkpo_pass_rewards` / :func:`pkpo_max_rewards` are PKPO's unbiased pass@k / max@k
reward transforms (Walder & Karkhanis 2025, arXiv 2505.15201), selected by name through ``TRANSFORMS``.
They replace the rewards (use them with ``AdvantageConfig(estimator="identity")`` and ``strategy="standard"``
for the unbiased estimator, or with group advantages as a variance-reduced heuristic).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from cat_jax import advantages as adv
from cat_jax import numerics as nx
from cat_jax import objectives as obj

STRATEGIES = ("standard", "passn", "majority", "bon")
FORMS = ("raw", "log")
PROBABILITIES = ("sequence", "empirical", "exact")
QUANTILES = ("within_prompt", "history")

# SPEC §2.5 clamps of the sequence probability: exp(-50) ~ 2e-22 is already "never sampled again", and
# [1e-10, 1 - 1e-10] keeps both (1 - p)^{N-1} and the log-form denominator away from exact 0.
LOGP_FLOOR = -50.0
P_FLOOR = 1e-10


@dataclasses.dataclass(frozen=True)
class WeightConfig:
    """Static settings of the RL weight pipeline (SPEC §2.5), validated on construction.

    ``strategy`` standard | passn | majority | bon; ``n`` the aligned test-time budget; ``form`` raw (RL
    weight ``F'(p)``) | log (SFT weight ``p F'(p) / F(p)``); ``probability`` sequence | empirical | exact;
    ``normalize`` sample-level mean normalisation; ``clip`` cap before normalising (``None``: none);
    ``quantile`` within_prompt | history (bon only).
    """

    strategy: str = "standard"
    n: int = 1
    form: str = "raw"
    probability: str = "sequence"
    normalize: bool = False
    clip: float | None = None
    quantile: str = "within_prompt"

    def __post_init__(self):
        nx.check_choice("strategy", self.strategy, STRATEGIES)
        nx.check_choice("form", self.form, FORMS)
        nx.check_choice("probability", self.probability, PROBABILITIES)
        nx.check_choice("quantile", self.quantile, QUANTILES)
        nx.check_int("n", self.n, minimum=1)
        if self.strategy == "standard" and self.n != 1:
            raise ValueError(f"n must be 1 with strategy='standard' (nothing is aligned), got n={self.n}")
        if self.strategy == "majority" and self.n < 2:
            raise ValueError(f"n must be >= 2 with strategy='majority', got n={self.n}")
        if self.strategy == "bon" and self.form != "raw":
            raise ValueError(f"form must be 'raw' with strategy='bon' (rank weight only), got {self.form!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be a bool, got {self.normalize!r}")
        if self.clip is not None and not (isinstance(self.clip, int | float) and self.clip > 0):
            raise ValueError(f"clip must be a number > 0 or None, got {self.clip!r}")


# ----------------------------------------------------------------------------- pieces


def working_dtype() -> jnp.dtype:
    """float64 when x64 is enabled (SPEC §2.5 computes sequence probabilities in float64), else float32."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def sequence_probability(old_logp: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
    r"""``p = clip(exp(clip(log p_old, -50, 0)), 1e-10, 1 - 1e-10)`` in :func:`working_dtype` (SPEC §2.5).

    In float32 the upper clamp ``1 - 1e-10`` rounds to 1, so ``p`` within ``6e-8`` of 1 is exactly 1 (its
    Pass@N weight is then the limit 0); enable x64 for the reference's float64 behaviour.

    >>> float(sequence_probability(jnp.array(-1000.0)))
    1e-10
    """
    lp = jnp.asarray(old_logp, working_dtype())
    return jnp.clip(jnp.exp(jnp.clip(lp, LOGP_FLOOR, 0.0)), P_FLOOR, 1 - P_FLOOR)


def empirical_probability(rewards: Real[ArrayLike, "*b m"]) -> Float[Array, "*b m"]:
    r"""Laplace-smoothed success rate per prompt, ``(sum_j R_j + 1) / (M + 2)``, broadcast over its rollouts.

    >>> [round(float(x), 4) for x in empirical_probability(jnp.array([[1.0, 0.0, 0.0, 0.0]]))[0]]
    [0.3333, 0.3333, 0.3333, 0.3333]
    """
    r = jnp.asarray(rewards, working_dtype())
    m = r.shape[-1]
    p = (jnp.sum(r, axis=-1, keepdims=True) + 1) / (m + 2)
    return jnp.broadcast_to(p, r.shape)


def strongest_wrong_count(
    answer_ids: Int[ArrayLike, "*b m"],
    answer_valid: Bool[ArrayLike, "*b m"],
    correct: Bool[ArrayLike, "*b m"],
) -> Int[Array, "*b"]:
    r"""``c_max``: how many rollouts of a prompt share its most frequent *wrong* answer (SPEC §2.5).

    Answers are integer cluster ids (equal id = same normalised answer) with a validity mask; every invalid
    (unparseable / missing) answer joins one shared "None" category. Correct rollouts are not counted.
    ``O(M^2)`` per prompt, no Python loop. Shapes ``[..., M] -> [...]``.

    >>> ids = jnp.array([[0, 0, 7, 7]]); valid = jnp.array([[False, False, True, True]])
    >>> strongest_wrong_count(ids, valid, jnp.array([[False, False, True, True]])).tolist()
    [2]
    """
    ids = jnp.asarray(answer_ids)
    valid = jnp.asarray(answer_valid, bool)
    wrong = ~jnp.asarray(correct, bool)
    vi, vj = valid[..., :, None], valid[..., None, :]
    same = (vi & vj & (ids[..., :, None] == ids[..., None, :])) | (~vi & ~vj)
    counts = jnp.sum(same & wrong[..., None, :], axis=-1)
    return jnp.max(jnp.where(wrong, counts, 0), axis=-1).astype(jnp.int32)


def majority_thresholds(c_max: Int[ArrayLike, "*b"], *, n: int, m: int) -> Int[Array, "*b"]:
    r"""Dynamic majority threshold ``k = max(2, min(floor(N/2) + 1, floor(N c_max / M) + 1))`` (SPEC §2.5).

    A rival answer seen ``c_max`` times in ``M`` rollouts would get about ``N c_max / M`` of ``N`` votes, so
    the correct answer needs one more; never above a strict majority, never below 2 (``k = 1`` is Pass@N).

    >>> majority_thresholds(jnp.array([0, 1, 3, 8]), n=8, m=8).tolist()
    [2, 2, 4, 5]
    """
    n = nx.check_int("n", n, minimum=2)
    m = nx.check_int("m", m, minimum=1)
    c = jnp.asarray(c_max, jnp.int32)
    return jnp.maximum(2, jnp.minimum(n // 2 + 1, (n * c) // m + 1)).astype(jnp.int32)


def _majority_weight(p, k_row, *, n: int, form: str):
    # k varies per prompt but the objectives take a static k: evaluate every admissible k (2..N/2+1, so at
    # most N/2 cheap elementwise passes) and select, reusing the closed forms instead of re-deriving them.
    fn = obj.majority_rl_weight if form == "raw" else obj.majority_sft_weight
    out = jnp.zeros_like(p)
    for k in range(2, n // 2 + 2):
        out = jnp.where(k_row[..., None] == k, fn(p, n=n, k=k), out)
    return out


def mean_normalize(w: Float[ArrayLike, "..."]) -> tuple[Float[Array, "..."], Bool[Array, ""]]:
    r"""``(w / max w) / mean(w / max w)`` over all entries, and whether it was applied (SPEC §2.4).

    Dividing by the max first keeps ``1e±300`` scales finite; no additive epsilon; ratios are preserved and
    the mean is 1. All-zero (or max not > 0) input is returned unchanged with ``applied = False``.

    >>> [round(float(x), 4) for x in mean_normalize(jnp.array([3.0, 6.0, 12.0]))[0]]
    [0.4286, 0.8571, 1.7143]
    """
    w = nx.as_float(w)
    if w.size == 0:
        raise ValueError("w must hold at least one weight to normalise, got an empty array")
    top = jnp.max(w)
    applied = top > 0
    scaled = w / jnp.where(applied, top, jnp.ones_like(top))
    mean = jnp.mean(scaled)
    out = scaled / jnp.where(applied, mean, jnp.ones_like(mean))
    return jnp.where(applied, out, w), applied


# ----------------------------------------------------------------------------- the pipeline


def cat_weights(
    rewards: Real[ArrayLike, "b m"],
    old_logp: Float[ArrayLike, "b m"] | None = None,
    *,
    config: WeightConfig,
    answer_ids: Int[ArrayLike, "b m"] | None = None,
    answer_valid: Bool[ArrayLike, "b m"] | None = None,
    history: adv.RewardHistory | None = None,
    reference_logp: Float[ArrayLike, " b"] | None = None,
) -> tuple[Float[Array, "b m"], dict[str, Array]]:
    r"""CAT RL weights ``[B, M]`` (detached) and stats, exactly as SPEC §2.5 (see the module docstring).

    ``rewards [B, M]``; ``old_logp [B, M]`` summed completion log-probs (needed by ``probability=sequence``);
    ``answer_ids``/``answer_valid [B, M]`` (majority); ``history`` (bon with ``quantile=history``; query only,
    append after the update); ``reference_logp [B]`` the policy's log-probability of each prompt's reference
    answer (``probability=exact``). Non-binary rewards with passn/majority raise when concrete and give NaN
    weights under jit. Stats: ``weights/raw_mean`` (after the cap, before normalising), ``weights/mean``,
    ``/min``, ``/max``, ``/normalized``; majority adds ``weights/k_mean``, ``/k_min``, ``/k_max``.

    >>> w, s = cat_weights(jnp.array([[1.0, 0.0], [0.0, 0.0]]), config=WeightConfig(strategy="passn", n=4,
    ...     probability="empirical", normalize=True))
    >>> [round(float(x), 4) for x in w[:, 0]], bool(s["weights/normalized"])
    ([0.4571, 1.5429], True)
    """
    if not isinstance(config, WeightConfig):
        raise ValueError(f"config must be a WeightConfig, got {type(config).__name__}")
    r = nx.as_float(rewards)
    if r.ndim != 2:
        raise ValueError(f"rewards must have shape [B, M], got {r.shape}")
    b, m = r.shape
    s = config.strategy
    stats: dict[str, Array] = {}
    ok = jnp.asarray(True)
    if s == "standard":
        w = jnp.ones_like(r)
    elif s == "bon":
        if config.quantile == "history":
            if history is None:
                raise ValueError("history must be given with quantile='history'")
            q = history.quantiles(r)
        else:
            q = adv.within_prompt_quantiles(r)
        w = obj.bon_rl_weight(q, n=config.n)
    else:
        ok = adv.check_binary("rewards", r, why=f"strategy={s!r} needs a binary verifier")
        if s == "majority" and (answer_ids is None or answer_valid is None):
            raise ValueError("answer_ids and answer_valid must be given with strategy='majority'")
        if config.probability == "sequence":
            if old_logp is None:
                raise ValueError("old_logp must be given with probability='sequence'")
            lp = jnp.asarray(old_logp)
            if lp.shape != r.shape:
                raise ValueError(f"old_logp must have the rewards' shape {r.shape}, got {lp.shape}")
            p = sequence_probability(lp)
        elif config.probability == "exact":
            if reference_logp is None:
                raise ValueError("reference_logp must be given with probability='exact'")
            lp = jnp.asarray(reference_logp)
            if lp.shape != (b,):
                raise ValueError(f"reference_logp must have shape [B] = ({b},), got {lp.shape}")
            p = jnp.broadcast_to(sequence_probability(lp)[:, None], r.shape)
        else:
            p = empirical_probability(r)
        if s == "passn":
            fn = obj.passn_rl_weight if config.form == "raw" else obj.passn_sft_weight
            w = fn(p, n=config.n)
        else:
            for name, x in (("answer_ids", answer_ids), ("answer_valid", answer_valid)):
                if jnp.shape(x) != r.shape:
                    raise ValueError(f"{name} must have the rewards' shape {r.shape}, got {jnp.shape(x)}")
            k_row = majority_thresholds(
                strongest_wrong_count(answer_ids, answer_valid, r == 1), n=config.n, m=m
            )
            w = _majority_weight(p, k_row, n=config.n, form=config.form)
            kf = k_row.astype(r.dtype)
            stats.update(
                {"weights/k_mean": jnp.mean(kf), "weights/k_min": jnp.min(kf), "weights/k_max": jnp.max(kf)}
            )
        w = jnp.where(ok, w, jnp.nan).astype(r.dtype)
    w = w.astype(r.dtype)
    if config.clip is not None:
        w = jnp.minimum(w, jnp.asarray(config.clip, w.dtype))
    stats["weights/raw_mean"] = jnp.mean(w)
    if config.normalize and s != "standard" and (s == "bon" or b >= 2 or config.probability == "sequence"):
        w, applied = mean_normalize(w)
    else:
        applied = jnp.asarray(False)
    stats.update(
        {
            "weights/mean": jnp.mean(w),
            "weights/min": jnp.min(w),
            "weights/max": jnp.max(w),
            "weights/normalized": applied.astype(w.dtype),
        }
    )
    return jax.lax.stop_gradient(w), stats


# ----------------------------------------------------------------------------- PKPO (beyond the paper)


@functools.lru_cache(maxsize=64)
def _pkpo_max_matrix(m: int, k: int) -> np.ndarray:
    # Row i (ascending rank, 0-based) of s_sorted = W g_sorted: a k-subset containing the i-th smallest has
    # max g_(i) in C(i, k-1) subsets and max g_(j), j > i, in C(j-1, k-2) subsets; divide by C(M, k).
    total = math.comb(m, k)
    w = np.zeros((m, m), np.float64)
    for i in range(m):
        w[i, i] = math.comb(i, k - 1) / total
        if k >= 2:
            for j in range(i + 1, m):
                w[i, j] = math.comb(j - 1, k - 2) / total
    w.setflags(write=False)
    return w


def pkpo_max_rewards(rewards: Real[ArrayLike, "*b m"], *, k: int) -> Float[Array, "*b m"]:
    r"""PKPO max@k transform: ``s_i = C(M, k)^{-1} sum_{|S|=k, i in S} max_{j in S} g_j`` (arXiv 2505.15201).

    ``sum_i s_i grad log pi(y_i)`` is an unbiased estimate of ``grad E[max of k samples]`` from ``M >= k``
    samples, and ``mean_i s_i`` of ``E[max@k] k / M``. Closed form through one sort per prompt (ties are
    harmless: tied values give identical ``s``). ``k = 1`` gives ``g / M``. Shapes ``[..., M] -> [..., M]``.

    >>> [round(float(x), 4) for x in pkpo_max_rewards(jnp.array([[1.0, 3.0, 2.0]]), k=2)[0]]
    [1.6667, 2.0, 1.6667]
    """
    g = nx.as_float(rewards)
    m = g.shape[-1]
    k = nx.check_int("k", k, minimum=1, maximum=m)
    order = jnp.argsort(g, axis=-1)
    g_sorted = jnp.take_along_axis(g, order, axis=-1)
    s_sorted = jnp.einsum("ij,...j->...i", jnp.asarray(_pkpo_max_matrix(m, k), g.dtype), g_sorted)
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(s_sorted, inverse, axis=-1)


def pkpo_pass_rewards(rewards: Real[ArrayLike, "*b m"], *, k: int) -> Float[Array, "*b m"]:
    r"""PKPO pass@k transform for binary rewards: correct ``-> k/M``, wrong ``-> (k/M) rho(M-1, c, k-1)``.

    ``rho(n, c, k) = 1 - C(n-c, k) / C(n, k)`` is the unbiased pass@k of ``c`` successes in ``n`` (``c`` =
    correct rollouts of the prompt); a wrong rollout is credited for the subsets in which another one
    succeeds. The special case of :func:`pkpo_max_rewards` for ``g in {0, 1}``; ``[..., M] -> [..., M]``.

    >>> [round(float(x), 4) for x in pkpo_pass_rewards(jnp.array([[1.0, 0.0, 0.0, 0.0]]), k=2)[0]]
    [0.5, 0.1667, 0.1667, 0.1667]
    """
    g = nx.as_float(rewards)
    m = g.shape[-1]
    k = nx.check_int("k", k, minimum=1, maximum=m)
    binary = adv.check_binary("rewards", g, why="the PKPO pass@k transform needs a binary verifier")
    c = jnp.sum(g, axis=-1, keepdims=True)
    rho = 1 - adv.binomial_ratio(jnp.maximum(m - 1 - c, 0), n=m - 1, k=k - 1)
    s = (k / m) * jnp.where(g == 1, jnp.ones_like(g), rho)
    return jnp.where(binary, s, jnp.full_like(s, jnp.nan))


TRANSFORMS: dict[str, Callable[..., Array]] = {
    "identity": lambda rewards, *, k=1: nx.as_float(rewards),
    "pkpo_pass": pkpo_pass_rewards,
    "pkpo_max": pkpo_max_rewards,
}


def get_transform(name: str) -> Callable[..., Array]:
    """The reward transform ``fn(rewards, *, k)`` called ``name``; the error lists the valid names."""
    nx.check_choice("transform", name, TRANSFORMS)
    return TRANSFORMS[name]
