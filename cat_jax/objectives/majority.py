r"""Majority Vote (fixed-threshold surrogate): ``B_{N,k}(p) = P[Bin(N, p) >= k]``, its log, the SFT loss
``-log B_{N,k}`` and the SFT/RL weights (SPEC §2.2, Table 1). ``k = 1`` is Pass@N. Elementwise; see
:mod:`cat_jax.objectives` for the shared contract."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from cat_jax import numerics as nx
from cat_jax.objectives import _checks as ck
from cat_jax.objectives.passn import (
    passn_log_probability,
    passn_probability,
    passn_rl_weight,
    passn_sft_weight,
    passn_sft_weight_from_logp,
)


def _upper_lse(lp, l1m, n, k):
    """``LSE_{i=k}^{N} [log C(N,i) + (i-k) log p + (N-i) log(1-p)]`` (the tail with ``p^k`` factored out)."""
    i = jnp.arange(k, n + 1)
    lc = nx.trailing(nx.log_binomial_row(n)[k:], lp)
    terms = lc + nx.trailing(i - k, lp) * lp[..., None] + nx.trailing(n - i, lp) * l1m[..., None]
    return jax.nn.logsumexp(terms, axis=-1)


def _lower_log_fail(lp, l1m, n, k):
    """``log P[Bin(N,p) < k]`` with ``(1-p)^{N-k+1}`` factored out of the sum."""
    j = jnp.arange(0, k)
    lc = nx.trailing(nx.log_binomial_row(n)[:k], lp)
    terms = lc + nx.trailing(j, lp) * lp[..., None] + nx.trailing(k - 1 - j, lp) * l1m[..., None]
    return (n - k + 1) * l1m + jax.nn.logsumexp(terms, axis=-1)


def _majority_branches(n, k, logs: Callable):
    """The two branches of ``log B_{N,k}`` on ``x`` (``log p`` or ``p``; ``logs(x) -> (log p, log(1-p))``).

    Upper tail (``B`` small): ``k log p + LSE_{i>=k}``;
    complement (``B`` near 1): ``log1mexp(log P[Bin < k])``.
    """

    def upper_branch(a):
        la, l1a = logs(a)
        return k * la + _upper_lse(la, l1a, n, k)

    def complement_branch(b):
        lb, l1b = logs(b)
        return nx.log1mexp(_lower_log_fail(lb, l1b, n, k))

    return upper_branch, complement_branch


def _logs_from_logp(a):
    return a, nx.log1mexp(a)


def _logs_from_p(a):
    return jnp.log(a), jnp.log1p(-a)


def majority_log_probability(
    log_p: ArrayLike, *, n: int, k: int, validate: bool = False
) -> Float[Array, "..."]:
    r"""``log B_{N,k}(p)``, ``B_{N,k}(p) = sum_{i=k}^{N} C(N,i) p^i (1-p)^{N-i}`` (SPEC §2.2).

    Pivot ``lambda = log(k / (N+1))`` (the binomial mode sits at ``k`` there). Below it the upper tail is
    summed in log space with ``p^k`` factored out (exact for ``log p -> -inf``: ``k log p + log C(N,k)``);
    above it ``log B = log1mexp(log P[Bin < k])`` so ``B`` near 1 keeps its tiny complement.
    ``k = 1`` is Pass@N, ``k = N`` is ``N log p``, ``log p = 0`` gives 0. Cost ``O(N)`` per element.

    >>> round(float(majority_log_probability(jnp.log(0.5), n=8, k=3)), 6)
    -0.156106
    """
    n, k = ck.threshold(n, k)
    lp = ck.log_input(log_p, validate)
    if k == 1:
        return passn_log_probability(lp, n=n)
    if k == n:
        return ck.nan_above_zero(lp, n * lp)
    pivot = math.log(k / (n + 1))
    up, comp = _majority_branches(n, k, _logs_from_logp)
    # log p = 0 is certain success; feed the pivot instead so the complement's log(1-p) = -inf never appears.
    certain = lp >= 0
    lps = jnp.where(certain, pivot, lp)
    val = nx.safe_where(lps < pivot, lps, up, comp, true_safe=pivot, false_safe=pivot)
    return ck.nan_above_zero(lp, jnp.where(certain, jnp.zeros_like(val), val))


def majority_probability(p: ArrayLike, *, n: int, k: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Majority surrogate ``B_{N,k}(p) = P[Bin(N, p) >= k]`` (SPEC §2.2).

    ``k = 1`` is Pass@N, ``k = N`` is ``p^N``, ``B(0) = 0``, ``B(1) = 1``; otherwise the exponential of the
    two-branch log tail (with ``log(1-p)`` taken as ``log1p(-p)``).

    >>> round(float(majority_probability(0.5, n=8, k=3)), 8)
    0.85546875
    """
    n, k = ck.threshold(n, k)
    p = ck.prob_input(p, validate)
    if k == 1:
        return passn_probability(p, n=n)
    if k == n:
        return ck.nan_outside_unit(p, ck.n_pow(1, p, n, log_base=jnp.log(jnp.where(p > 0, p, 0.5))))
    pivot = k / (n + 1)
    up, comp = _majority_branches(n, k, _logs_from_p)

    def interior(a):
        return jnp.exp(nx.safe_where(a < pivot, a, up, comp, true_safe=pivot, false_safe=pivot))

    return ck.nan_outside_unit(
        p,
        nx.safe_where(
            (p > 0) & (p < 1),
            p,
            interior,
            lambda b: jnp.where(b > 0, jnp.ones_like(b), jnp.zeros_like(b)),
            true_safe=pivot,
            false_safe=0.0,
        ),
    )


def majority_sft_loss(
    log_p: ArrayLike, *, n: int, k: int, reduction: str = "mean", validate: bool = False
) -> Float[Array, "..."]:
    r"""CAT Majority SFT loss ``-log B_{N,k}(p)``, reduced (``none`` | ``mean`` | ``sum``).

    Tiny-``p`` asymptote ``-k log p - log C(N, k)`` (gradient ``-k``): for long targets this is ``k`` x CE.

    >>> round(float(majority_sft_loss(jnp.log(0.2), n=16, k=4)), 6)
    0.911637
    """
    nx.check_choice("reduction", reduction, nx.REDUCTIONS)
    return nx.reduce(-majority_log_probability(log_p, n=n, k=k, validate=validate), reduction)


def _majority_sft_weight_logs(lp, l1m, n, k):
    return jnp.exp(math.log(k) + float(nx.log_binomial_row(n)[k]) + (n - k) * l1m - _upper_lse(lp, l1m, n, k))


def majority_sft_weight(p: ArrayLike, *, n: int, k: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Majority SFT weight ``k C(N,k) p^k (1-p)^{N-k} / B_{N,k}(p)`` (Table 1).

    Continuous extension ``w(0) = k``; ``w(1) = 0`` unless ``k = N`` (constant ``N``). ``k = 1`` is the
    Pass@N weight. ``p^k`` cancels analytically, so no branch is needed.

    >>> round(float(majority_sft_weight(0.5, n=4, k=3)), 6)
    2.4
    """
    n, k = ck.threshold(n, k)
    p = ck.prob_input(p, validate)
    if k == 1:
        return passn_sft_weight(p, n=n)
    if k == n:
        return ck.nan_outside_unit(p, jnp.full_like(p, n))
    return ck.nan_outside_unit(
        p,
        nx.safe_where(
            (p > 0) & (p < 1),
            p,
            lambda a: _majority_sft_weight_logs(*_logs_from_p(a), n, k),
            lambda b: jnp.where(b == 0, float(k), 0.0).astype(b.dtype),
            true_safe=0.5,
            false_safe=0.0,
        ),
    )


def majority_sft_weight_from_logp(
    log_p: ArrayLike, *, n: int, k: int, validate: bool = False
) -> Float[Array, "..."]:
    r"""Majority SFT weight from ``log p``; equals ``-d majority_sft_loss / d log p``.

    ``exp(log k + log C(N,k) + (N-k) log(1-p) - LSE_{i=k}^{N}[log C(N,i) + (i-k) log p + (N-i) log(1-p)])``;
    tends to ``k`` as ``log p -> -inf``, 0 at ``log p = 0`` (``k < N``); ``k = N`` gives ``N``.

    >>> round(float(majority_sft_weight_from_logp(jnp.log(0.2), n=8, k=3)), 6)
    2.168589
    """
    n, k = ck.threshold(n, k)
    lp = ck.log_input(log_p, validate)
    if k == 1:
        return passn_sft_weight_from_logp(lp, n=n)
    if k == n:
        return ck.nan_above_zero(lp, jnp.full_like(lp, n))
    return ck.nan_above_zero(
        lp,
        nx.safe_where(
            lp < 0,
            lp,
            lambda a: _majority_sft_weight_logs(*_logs_from_logp(a), n, k),
            jnp.zeros_like,
            true_safe=nx.LOG_HALF,
            false_safe=0.0,
        ),
    )


def majority_rl_weight(p: ArrayLike, *, n: int, k: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Majority RL weight ``dB_{N,k}/dp = N C(N-1, k-1) p^{k-1} (1-p)^{N-k}`` (Table 1).

    The coefficient is ``N C(N-1,k-1) = k C(N,k)``, not ``N C(N,k)`` (SPEC §7.5). ``k = 1`` is Pass@N's
    ``N (1-p)^{N-1}``, ``k = N`` is ``N p^{N-1}``; otherwise 0 at ``p in {0, 1}``.

    >>> float(majority_rl_weight(0.5, n=8, k=3))
    1.3125
    """
    n, k = ck.threshold(n, k)
    p = ck.prob_input(p, validate)
    if k == 1:
        return passn_rl_weight(p, n=n)
    if k == n:
        return ck.nan_outside_unit(p, ck.n_pow(n, p, n - 1, log_base=jnp.log(jnp.where(p > 0, p, 0.5))))
    log_coef = math.log(k) + float(nx.log_binomial_row(n)[k])
    return ck.nan_outside_unit(
        p,
        nx.safe_where(
            (p > 0) & (p < 1),
            p,
            lambda a: jnp.exp(log_coef + (k - 1) * jnp.log(a) + (n - k) * jnp.log1p(-a)),
            jnp.zeros_like,
            true_safe=0.5,
            false_safe=0.0,
        ),
    )
