r"""Diagonal-approximation diagnostics (SPEC §4, App. A.11 and B).

On an explicit categorical answer distribution ``p`` (``C`` categories, a target ``t``, budget ``N``) the
*forced-vote sensitivity* of category ``j`` is ``s_j = dP_N[win]/dp_j`` with the N-sample success probability
viewed as a polynomial in unconstrained ``p``; equivalently ``N * P[win | one vote forced to j, N-1 drawn from
p]``. The diagonal term is ``a = s_t``, the rival correction ``C = sum_{j != t} p_j s_j / (1 - p_t)``, the
total derivative along the proportional-decay direction is ``a - C`` and the diagonal ratio ``rho = a / (a -
C)`` (``>= 1``: the diagonal term over-states the derivative but has the right sign).

:func:`sensitivity` computes all of it exactly (autodiff of :func:`cat_jax.plurality.win_polynomial` or of the
closed-form Best-of-N success); :func:`sensitivity_mc` is the reference's Monte Carlo algorithm (one shared
set of ``N-1`` competitor draws for every category). Also: the Figure-9 sign conversion and the App. E cosine
table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from cat_jax import numerics as nx
from cat_jax import objectives
from cat_jax.plurality import win_polynomial

# sensitivity() is an eager boundary: it differentiates the polynomial compiled (one compile per C, n).
_win_polynomial = jax.jit(win_polynomial, static_argnames=("n", "ties"))

__all__ = [
    "STRATEGIES",
    "Sensitivity",
    "passn_weight_cosine_table",
    "plus_ratio_to_rho",
    "sensitivity",
    "sensitivity_mc",
]

STRATEGIES = ("plurality", "best_of_n")


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """Result of a forced-vote diagnostic. ``rho`` is ``None`` (with ``reason``) when ``a - C <= 0``."""

    sensitivities: np.ndarray
    a: float
    c_rival: float
    total_derivative: float
    rho: float | None
    reason: str | None
    tie_policy: str
    method: str
    mc_se: np.ndarray | None = None


def _inputs(p, target, n, strategy, rewards):
    nx.check_choice("strategy", strategy, STRATEGIES)
    n = nx.check_int("n", n, minimum=1)
    pv = np.asarray(jax.device_get(p), dtype=np.float64)
    if pv.ndim != 1 or pv.size < 2:
        raise ValueError(f"p must be a 1-D categorical vector with C >= 2 entries, got shape {pv.shape}")
    if not (np.all(pv >= 0) and abs(pv.sum() - 1) <= 1e-6):
        raise ValueError(f"p must be a probability vector (>= 0, sums to 1), got sum {pv.sum()}")
    target = nx.check_int("target", target, minimum=0, maximum=pv.size - 1)
    if not 0 < pv[target] < 1:
        raise ValueError(f"p[target] must lie strictly in (0, 1), got {pv[target]}")
    rv = None
    if strategy == "best_of_n":
        if rewards is None:
            raise ValueError("rewards are required for strategy='best_of_n'")
        rv = np.asarray(jax.device_get(rewards), dtype=np.float64)
        if rv.shape != pv.shape or not np.all(np.isfinite(rv)) or len(np.unique(rv)) != rv.size:
            raise ValueError("rewards must be finite, distinct and have one entry per category")
    return pv, target, n, rv


def _summary(s, pv, target, tie_policy, method, mc_se=None) -> Sensitivity:
    a = float(s[target])
    others = np.arange(pv.size) != target
    c = float(np.sum(pv[others] * s[others]) / (1 - pv[target]))
    total = a - c
    if total > 0:
        rho, reason = a / total, None
    else:
        rho, reason = (
            None,
            f"a - C = {total:.3g} <= 0: the total derivative is not positive, rho is undefined",
        )
    return Sensitivity(np.asarray(s), a, c, total, rho, reason, tie_policy, method, mc_se)


def sensitivity(
    p: Float[ArrayLike, " c"],
    target: int,
    *,
    n: int,
    strategy: str = "plurality",
    rewards: Float[ArrayLike, " c"] | None = None,
) -> Sensitivity:
    r"""Exact forced-vote sensitivities, rival correction ``C`` and ``rho = a / (a - C)`` (SPEC §4.1).

    ``plurality``: the target must get strictly more votes than every other category (ties fail); exact via
    autodiff of the plurality polynomial, cost ``O(C N^3)``. ``best_of_n``: the target must appear and no
    category with a higher (distinct) reward may appear; success ``(sum_{r_j <= r_t} p_j)^N - (sum_{r_j < r_t}
    p_j)^N``, cost ``O(C)``. Computed in float64 when x64 is enabled, else float32.

    >>> d = sensitivity(jnp.array([0.2, 0.8]), 0, n=1)
    >>> d.sensitivities.round(6).tolist(), d.rho
    ([1.0, 0.0], 1.0)
    """
    pv, target, n, rv = _inputs(p, target, n, strategy, rewards)
    x = jnp.asarray(pv, jnp.result_type(float))
    if strategy == "plurality":

        def win(q):
            zero = jnp.zeros((1,), q.dtype)
            return _win_polynomial(q[None], zero, jnp.asarray([target]), n=n, ties="fail")[0]

    else:
        le = jnp.asarray(rv <= rv[target])
        lt = jnp.asarray(rv < rv[target])

        def win(q):
            return jnp.sum(jnp.where(le, q, 0)) ** n - jnp.sum(jnp.where(lt, q, 0)) ** n

    s = np.asarray(jax.grad(win)(x), dtype=np.float64)
    policy = "strict_plurality" if strategy == "plurality" else "distinct_reward_order"
    return _summary(s, pv, target, policy, "exact")


def sensitivity_mc(
    p: Float[ArrayLike, " c"],
    target: int,
    *,
    n: int,
    strategy: str = "plurality",
    rewards: Float[ArrayLike, " c"] | None = None,
    trials: int = 5000,
    seed: int = 42,
) -> Sensitivity:
    r"""The reference's Monte Carlo version of :func:`sensitivity` (SPEC §4.1 algorithm).

    Draws one shared set of ``trials`` competitor count vectors ``m ~ Mult(N-1, p)``, adds one forced vote to
    each category ``j`` in turn and sets ``s_j = N * mean(win)``; ``mc_se`` is the binomial standard error of
    each ``s_j``. Deterministic for a fixed ``seed``. Cost ``O(trials · (N + C^2))``.

    >>> d = sensitivity_mc(jnp.array([0.2, 0.8]), 0, n=1, trials=100)
    >>> d.sensitivities.tolist(), d.rho
    ([1.0, 0.0], 1.0)
    """
    pv, target, n, rv = _inputs(p, target, n, strategy, rewards)
    trials = nx.check_int("trials", trials, minimum=2)
    c = pv.size
    key = jax.random.PRNGKey(seed)
    logits = jnp.log(jnp.asarray(pv, jnp.float32))
    draws = (
        jax.random.categorical(key, logits, shape=(trials, n - 1)) if n > 1 else jnp.zeros((trials, 0), int)
    )
    counts = (
        np.asarray(jax.nn.one_hot(draws, c, dtype=jnp.int32).sum(axis=1))
        if n > 1
        else np.zeros((trials, c), int)
    )
    wins = np.empty((c, trials))
    for j in range(c):
        m = counts.copy()
        m[:, j] += 1
        if strategy == "plurality":
            rivals = np.delete(m, target, axis=1)
            wins[j] = m[:, target] > rivals.max(axis=1)
        else:
            higher = rv > rv[target]
            wins[j] = (m[:, target] >= 1) & ~np.any(m[:, higher] >= 1, axis=1)
    freq = wins.mean(axis=1)
    s = n * freq
    se = n * np.sqrt(freq * (1 - freq) / (trials - 1))
    policy = "strict_plurality" if strategy == "plurality" else "distinct_reward_order"
    return _summary(s, pv, target, policy, f"monte_carlo[{trials}]", se)


def plus_ratio_to_rho(r: ArrayLike | Sequence[float]) -> np.ndarray:
    r"""Convert the saved Figure-9 statistic ``a/(a+C)`` (a sign error) to ``rho = a/(a-C) = r/(2r-1)``.

    Valid for ``r`` in ``(0.5, 1]`` (SPEC §4.2); anything else raises rather than being clipped.

    >>> plus_ratio_to_rho([1.0, 0.75]).tolist()
    [1.0, 1.5]
    """
    v = np.asarray(r, dtype=np.float64)
    bad = ~((v > 0.5) & (v <= 1))
    if bad.any():
        raise ValueError(f"r must lie in (0.5, 1] to convert a/(a+C) to a/(a-C); got {v[bad][:5]}")
    return v / (2 * v - 1)


def passn_weight_cosine_table(ns=(1, 4, 16, 64), *, points: int = 2001) -> Float[Array, "m m"]:
    r"""Cosine similarity of Pass@N SFT weight functions on ``p in [0, 1]`` (App. E, SPEC §3.6).

    ``cos(w_a, w_b) = int w_a w_b / sqrt(int w_a^2 int w_b^2)`` with a ``points``-point trapezoid rule.

    >>> t = passn_weight_cosine_table((1, 4, 16, 64))
    >>> [round(float(x), 4) for x in t[0]]
    [1.0, 0.7409, 0.418, 0.216]
    """
    p = jnp.linspace(0.0, 1.0, points)
    w = jnp.stack([objectives.passn_sft_weight(p, n=n) for n in ns])
    h = 1.0 / (points - 1)
    tw = jnp.full((points,), h).at[0].set(h / 2).at[-1].set(h / 2)
    gram = jnp.einsum("ap,bp,p->ab", w, w, tw)
    d = jnp.sqrt(jnp.diagonal(gram))
    return gram / (d[:, None] * d[None, :])
