r"""Pass@N: success probability ``S_N(p) = 1 - (1 - p)^N``, its log, the SFT loss ``-log S_N`` and the SFT/RL
weights (SPEC §2.1, Table 1). Elementwise; see :mod:`cat_jax.objectives` for the shared contract."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from cat_jax import numerics as nx
from cat_jax.objectives import _checks as ck


def passn_probability(p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N success probability ``S_N(p) = 1 - (1 - p)^N`` (SPEC §2.1).

    Computed as ``-expm1(N log1p(-p))`` so small ``p`` keeps full relative accuracy.
    Endpoints: ``S(0) = 0``, ``S(1) = 1``; ``N = 1`` gives ``p``.

    >>> round(float(passn_probability(0.1, n=4)), 6)
    0.3439
    """
    n = ck.budget(n)
    p = ck.prob_input(p, validate)
    if n == 1:
        return ck.nan_outside_unit(p, p)
    return ck.nan_outside_unit(
        p,
        nx.safe_where(
            p < 1,
            p,
            lambda a: -jnp.expm1(n * jnp.log1p(-a)),
            jnp.ones_like,
            true_safe=0.5,
            false_safe=1.0,
        ),
    )


def passn_log_probability(log_p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""``log S_N(p)`` from the summed log-probability ``log p`` (SPEC §2.1).

    Branches: *tiny* ``log p < log eps - log N`` returns ``log N + log p`` (``S ~ N p`` to within machine
    precision, which keeps loss and gradient finite at ``log p = -1e4``); *certain* ``log p = 0`` returns 0;
    otherwise ``log1mexp(N log1mexp(log p))``. ``N = 1`` returns ``log p``.

    >>> round(float(passn_log_probability(jnp.log(0.1), n=4)), 6)
    -1.067404
    """
    n = ck.budget(n)
    lp = ck.log_input(log_p, validate)
    if n == 1:
        return ck.nan_above_zero(lp, lp)
    # Below this, (N-1) p / 2 < eps: the first-order value N p is exact to working precision.
    tiny_at = math.log(nx.eps(lp.dtype)) - math.log(n)
    mid = (lp >= tiny_at) & (lp < 0)
    body = nx.safe_where(
        mid,
        lp,
        lambda a: nx.log1mexp(n * nx.log1mexp(a)),
        lambda b: jnp.where(b < 0, math.log(n) + b, jnp.zeros_like(b)),
        true_safe=nx.LOG_HALF,
        false_safe=nx.LOG_HALF,
    )
    return ck.nan_above_zero(lp, body)


def passn_sft_loss(
    log_p: ArrayLike, *, n: int, reduction: str = "mean", validate: bool = False
) -> Float[Array, "..."]:
    r"""CAT Pass@N SFT loss ``-log S_N(p)``, reduced over all elements (``none`` | ``mean`` | ``sum``).

    Its gradient w.r.t. ``log p`` is ``-w_SFT`` (:func:`passn_sft_weight_from_logp`). ``N = 1`` is the
    sequence NLL; at ``log p -> -inf`` it tends to ``-log p - log N``.

    >>> round(float(passn_sft_loss(jnp.log(jnp.array([0.1, 0.3])), n=4, reduction="sum")), 6)
    1.341973
    """
    nx.check_choice("reduction", reduction, nx.REDUCTIONS)
    return nx.reduce(-passn_log_probability(log_p, n=n, validate=validate), reduction)


def _passn_sft_weight_logs(lp, l1m, log_s, n):
    return jnp.exp(math.log(n) + lp + (n - 1) * l1m - log_s)


def passn_sft_weight(p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N SFT weight ``w = N p (1-p)^{N-1} / (1 - (1-p)^N)`` (Table 1).

    Continuous extension ``w(0) = 1``, ``w(1) = 0`` for ``N > 1``; ``N = 1`` gives 1 everywhere.

    >>> round(float(passn_sft_weight(0.1, n=4)), 6)
    0.847921
    """
    n = ck.budget(n)
    p = ck.prob_input(p, validate)
    if n == 1:
        return ck.nan_outside_unit(p, jnp.ones_like(p))

    def interior(a):
        l1m = jnp.log1p(-a)
        return _passn_sft_weight_logs(jnp.log(a), l1m, nx.log1mexp(n * l1m), n)

    inside = (p > 0) & (p < 1)
    return ck.nan_outside_unit(
        p,
        nx.safe_where(
            inside,
            p,
            interior,
            lambda b: jnp.where(b == 0, jnp.ones_like(b), jnp.zeros_like(b)),
            true_safe=0.5,
            false_safe=0.0,
        ),
    )


def passn_sft_weight_from_logp(log_p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N SFT weight from ``log p``: ``exp(log N + log p + (N-1) log(1-p) - log S_N)``.

    Tiny branch (as in :func:`passn_log_probability`) gives exactly 1, ``log p = 0`` gives 0 (``N > 1``).
    Equals ``-d passn_sft_loss / d log p``.

    >>> round(float(passn_sft_weight_from_logp(jnp.log(0.01), n=64)), 6)
    0.716225
    """
    n = ck.budget(n)
    lp = ck.log_input(log_p, validate)
    if n == 1:
        return ck.nan_above_zero(lp, jnp.ones_like(lp))
    tiny_at = math.log(nx.eps(lp.dtype)) - math.log(n)
    mid = (lp >= tiny_at) & (lp < 0)

    def interior(a):
        l1m = nx.log1mexp(a)
        return _passn_sft_weight_logs(a, l1m, nx.log1mexp(n * l1m), n)

    return ck.nan_above_zero(
        lp,
        nx.safe_where(
            mid,
            lp,
            interior,
            lambda b: jnp.where(b < 0, jnp.ones_like(b), jnp.zeros_like(b)),
            true_safe=nx.LOG_HALF,
            false_safe=nx.LOG_HALF,
        ),
    )


def passn_rl_weight(p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N RL weight ``w_RL = dS_N/dp = N (1-p)^{N-1}`` (Table 1); ``w(0) = N``, ``w(1) = 0`` (``N > 1``).

    No normalisation or clipping (that lives in the RL weight pipeline).

    >>> round(float(passn_rl_weight(0.1, n=4)), 6)
    2.916
    """
    n = ck.budget(n)
    p = ck.prob_input(p, validate)
    return ck.nan_outside_unit(p, ck.n_pow(n, 1 - p, n - 1, log_base=jnp.log1p(-jnp.where(p < 1, p, 0.5))))
