r"""CAT objectives: success probabilities, SFT losses and SFT/RL weights of test-time strategies.

A test-time strategy with budget ``N`` turns the single-sample probability ``p`` of the right answer into a
success probability ``F(p)`` (Ousherovitch & Tewari 2026, arXiv 2604.24957, Table 1; SPEC §1–§2):

* Pass@N: ``S_N(p) = 1 - (1 - p)^N``;
* Majority Vote (fixed-threshold surrogate): ``B_{N,k}(p) = P[Bin(N, p) >= k]``;
* Best-of-N: RL rank weight ``N q^{N-1}`` on the lower-tail reward quantile ``q``; its SFT loss is Pass@N's.

CAT SFT minimises ``-log F(p)`` (differentiated directly, never CE times a weight), whose gradient is CE's
scaled by ``w_SFT = dlog F / dlog p = p F'(p) / F(p)``; CAT RL scales policy gradients by ``w_RL = F'(p)``.

Every function is elementwise (any shape in, same shape out), computes half precision in float32, keeps
float64, and stays finite with finite gradients for ``log p`` in ``[-1e4, 0]``. Budgets ``n``, ``k`` and
``reduction`` are keyword-only static Python values; array-domain checks run only with ``validate=True``
(eagerly), and nothing is ever clamped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from cat_jax import numerics as nx

REDUCTIONS = nx.REDUCTIONS


# ----------------------------------------------------------------------------- validation


def _budget(n) -> int:
    return nx.check_int("n", n, minimum=1)


def _threshold(n, k) -> tuple[int, int]:
    n = _budget(n)
    return n, nx.check_int("k", k, minimum=1, maximum=n)


def _check_unit(name: str, x: ArrayLike) -> None:
    v = nx.concrete(name, x)
    bad = ~(v >= 0) | ~(v <= 1)  # also catches NaN
    if bad.any():
        raise ValueError(f"{name} must lie in [0, 1] and not be NaN; got {v[bad].ravel()[:5]}")


def _check_log(name: str, x: ArrayLike) -> None:
    v = nx.concrete(name, x)
    bad = ~(v <= 0) | ~(v > -float("inf"))
    if bad.any():
        raise ValueError(
            f"{name} must be a finite log-probability <= 0 (summed, not a positive NLL); "
            f"got {v[bad].ravel()[:5]}"
        )


def _nan_outside_unit(x, out):
    # Out-of-domain values give NaN (caught by a trainer's non-finite guard), never a clamped number.
    return jnp.where((x >= 0) & (x <= 1), out, jnp.nan)


def _nan_above_zero(lp, out):
    return jnp.where(lp <= 0, out, jnp.nan)


def _n_pow(c: int, base, m: int, *, log_base):
    """``c * base**m`` for ``base`` in [0, 1]: in log space while ``base > 0`` (an integer power would flush
    subnormal intermediates such as ``0.5**1023`` to zero on CPU), an exact integer power at ``base = 0``
    so the gradient there stays right. ``log_base`` is ``log(base)`` computed accurately by the caller on a
    safe argument (e.g. ``log1p(-p)`` for ``base = 1 - p``)."""
    if m == 0:
        return jnp.full_like(base, c)
    pos = base > 0
    safe = jnp.where(pos, jnp.zeros_like(base), base)
    return jnp.where(pos, jnp.exp(math.log(c) + m * log_base), c * jax.lax.integer_pow(safe, m))


def _prob_input(p, validate, name="p"):
    if validate:
        _check_unit(name, p)
    return nx.as_float(p)


def _log_input(log_p, validate):
    if validate:
        _check_log("log_p", log_p)
    return nx.as_float(log_p)


# ----------------------------------------------------------------------------- Pass@N


def passn_probability(p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N success probability ``S_N(p) = 1 - (1 - p)^N`` (SPEC §2.1).

    Computed as ``-expm1(N log1p(-p))`` so small ``p`` keeps full relative accuracy.
    Endpoints: ``S(0) = 0``, ``S(1) = 1``; ``N = 1`` gives ``p``.

    >>> round(float(passn_probability(0.1, n=4)), 6)
    0.3439
    """
    n = _budget(n)
    p = _prob_input(p, validate)
    if n == 1:
        return _nan_outside_unit(p, p)
    return _nan_outside_unit(
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
    n = _budget(n)
    lp = _log_input(log_p, validate)
    if n == 1:
        return _nan_above_zero(lp, lp)
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
    return _nan_above_zero(lp, body)


def passn_sft_loss(
    log_p: ArrayLike, *, n: int, reduction: str = "mean", validate: bool = False
) -> Float[Array, "..."]:
    r"""CAT Pass@N SFT loss ``-log S_N(p)``, reduced over all elements (``none`` | ``mean`` | ``sum``).

    Its gradient w.r.t. ``log p`` is ``-w_SFT`` (:func:`passn_sft_weight_from_logp`). ``N = 1`` is the
    sequence NLL; at ``log p -> -inf`` it tends to ``-log p - log N``.

    >>> round(float(passn_sft_loss(jnp.log(jnp.array([0.1, 0.3])), n=4, reduction="sum")), 6)
    1.341973
    """
    nx.check_choice("reduction", reduction, REDUCTIONS)
    return nx.reduce(-passn_log_probability(log_p, n=n, validate=validate), reduction)


def _passn_sft_weight_logs(lp, l1m, log_s, n):
    return jnp.exp(math.log(n) + lp + (n - 1) * l1m - log_s)


def passn_sft_weight(p: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Pass@N SFT weight ``w = N p (1-p)^{N-1} / (1 - (1-p)^N)`` (Table 1).

    Continuous extension ``w(0) = 1``, ``w(1) = 0`` for ``N > 1``; ``N = 1`` gives 1 everywhere.

    >>> round(float(passn_sft_weight(0.1, n=4)), 6)
    0.847921
    """
    n = _budget(n)
    p = _prob_input(p, validate)
    if n == 1:
        return _nan_outside_unit(p, jnp.ones_like(p))

    def interior(a):
        l1m = jnp.log1p(-a)
        return _passn_sft_weight_logs(jnp.log(a), l1m, nx.log1mexp(n * l1m), n)

    inside = (p > 0) & (p < 1)
    return _nan_outside_unit(
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
    n = _budget(n)
    lp = _log_input(log_p, validate)
    if n == 1:
        return _nan_above_zero(lp, jnp.ones_like(lp))
    tiny_at = math.log(nx.eps(lp.dtype)) - math.log(n)
    mid = (lp >= tiny_at) & (lp < 0)

    def interior(a):
        l1m = nx.log1mexp(a)
        return _passn_sft_weight_logs(a, l1m, nx.log1mexp(n * l1m), n)

    return _nan_above_zero(
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
    n = _budget(n)
    p = _prob_input(p, validate)
    return _nan_outside_unit(p, _n_pow(n, 1 - p, n - 1, log_base=jnp.log1p(-jnp.where(p < 1, p, 0.5))))


# ----------------------------------------------------------------------------- Majority Vote


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
    n, k = _threshold(n, k)
    lp = _log_input(log_p, validate)
    if k == 1:
        return passn_log_probability(lp, n=n)
    if k == n:
        return _nan_above_zero(lp, n * lp)
    pivot = math.log(k / (n + 1))
    up, comp = _majority_branches(n, k, _logs_from_logp)
    # log p = 0 is certain success; feed the pivot instead so the complement's log(1-p) = -inf never appears.
    certain = lp >= 0
    lps = jnp.where(certain, pivot, lp)
    val = nx.safe_where(lps < pivot, lps, up, comp, true_safe=pivot, false_safe=pivot)
    return _nan_above_zero(lp, jnp.where(certain, jnp.zeros_like(val), val))


def majority_probability(p: ArrayLike, *, n: int, k: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Majority surrogate ``B_{N,k}(p) = P[Bin(N, p) >= k]`` (SPEC §2.2).

    ``k = 1`` is Pass@N, ``k = N`` is ``p^N``, ``B(0) = 0``, ``B(1) = 1``; otherwise the exponential of the
    two-branch log tail (with ``log(1-p)`` taken as ``log1p(-p)``).

    >>> round(float(majority_probability(0.5, n=8, k=3)), 8)
    0.85546875
    """
    n, k = _threshold(n, k)
    p = _prob_input(p, validate)
    if k == 1:
        return passn_probability(p, n=n)
    if k == n:
        return _nan_outside_unit(p, _n_pow(1, p, n, log_base=jnp.log(jnp.where(p > 0, p, 0.5))))
    pivot = k / (n + 1)
    up, comp = _majority_branches(n, k, _logs_from_p)

    def interior(a):
        return jnp.exp(nx.safe_where(a < pivot, a, up, comp, true_safe=pivot, false_safe=pivot))

    return _nan_outside_unit(
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
    nx.check_choice("reduction", reduction, REDUCTIONS)
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
    n, k = _threshold(n, k)
    p = _prob_input(p, validate)
    if k == 1:
        return passn_sft_weight(p, n=n)
    if k == n:
        return _nan_outside_unit(p, jnp.full_like(p, n))
    return _nan_outside_unit(
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
    n, k = _threshold(n, k)
    lp = _log_input(log_p, validate)
    if k == 1:
        return passn_sft_weight_from_logp(lp, n=n)
    if k == n:
        return _nan_above_zero(lp, jnp.full_like(lp, n))
    return _nan_above_zero(
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
    n, k = _threshold(n, k)
    p = _prob_input(p, validate)
    if k == 1:
        return passn_rl_weight(p, n=n)
    if k == n:
        return _nan_outside_unit(p, _n_pow(n, p, n - 1, log_base=jnp.log(jnp.where(p > 0, p, 0.5))))
    log_coef = math.log(k) + float(nx.log_binomial_row(n)[k])
    return _nan_outside_unit(
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


# ----------------------------------------------------------------------------- Best-of-N


def bon_rl_weight(q: ArrayLike, *, n: int, validate: bool = False) -> Float[Array, "..."]:
    r"""Best-of-N rank weight ``N q^{N-1}`` (Table 1; SPEC §2.3), ``q = P[R(Y') < R(y)]``.

    ``q`` is a lower-tail reward quantile (not a reward or a probability of the sample). Diagonal
    approximation of the expected-maximum gradient; ``w_BoN(1 - q) = w_RL^{Pass@N}(q)``. Best-of-N SFT with
    a best-possible target is Pass@N SFT.

    >>> round(float(bon_rl_weight(0.9, n=8)), 4)
    3.8264
    """
    n = _budget(n)
    q = _prob_input(q, validate, name="q")
    return _nan_outside_unit(q, _n_pow(n, q, n - 1, log_base=jnp.log(jnp.where(q > 0, q, 0.5))))


# ----------------------------------------------------------------------------- strategies


@dataclasses.dataclass(frozen=True)
class Objective:
    """One strategy's CAT functions with its budgets bound; every field is elementwise.

    ``probability(p)``, ``log_probability(log_p)``, ``sft_loss(log_p, reduction=...)``,
    ``sft_weight(p)``, ``sft_weight_from_logp(log_p)``, ``rl_weight(p)`` (for ``bon``: of the quantile ``q``).
    """

    name: str
    probability: Callable[..., Array]
    log_probability: Callable[..., Array]
    sft_loss: Callable[..., Array]
    sft_weight: Callable[..., Array]
    sft_weight_from_logp: Callable[..., Array]
    rl_weight: Callable[..., Array]


def _bind(name, **static) -> Objective:
    if name == "majority":
        fns = (
            majority_probability,
            majority_log_probability,
            majority_sft_loss,
            majority_sft_weight,
            majority_sft_weight_from_logp,
            majority_rl_weight,
        )
    else:
        fns = (
            passn_probability,
            passn_log_probability,
            passn_sft_loss,
            passn_sft_weight,
            passn_sft_weight_from_logp,
            bon_rl_weight if name == "bon" else passn_rl_weight,
        )
    return Objective(name, *(functools.partial(f, **static) for f in fns))


def _ce() -> Objective:
    return _bind("ce", n=1)


def _passn(*, n: int) -> Objective:
    return _bind("passn", n=_budget(n))


def _majority(*, n: int, k: int) -> Objective:
    n, k = _threshold(n, k)
    return _bind("majority", n=n, k=k)


def _bon(*, n: int) -> Objective:
    return _bind("bon", n=_budget(n))


STRATEGIES: dict[str, Callable[..., Objective]] = {
    "ce": _ce,
    "passn": _passn,
    "majority": _majority,
    "bon": _bon,
}


def get(name: str, **budgets) -> Objective:
    """The :class:`Objective` for strategy ``name`` with its budgets, e.g. ``get("majority", n=8, k=3)``.

    >>> float(get("passn", n=4).rl_weight(0.1))
    2.916...
    """
    nx.check_choice("strategy", name, STRATEGIES)
    try:
        return STRATEGIES[name](**budgets)
    except TypeError as e:
        raise ValueError(f"strategy {name!r} got budgets {sorted(budgets)}: {e}") from None


def from_success_fn(
    success_fn: Callable[[Array], Array],
    *,
    log_success_fn: Callable[[Array], Array] | None = None,
    name: str = "custom",
) -> Objective:
    r"""Derive a strategy's CAT loss and weights from its success function ``F(p)`` by autodiff.

    ``F`` maps the single-sample success probability to the probability that the test-time strategy
    succeeds; it must be elementwise and differentiable on ``(0, 1)``. Returned, as an :class:`Objective`:
    ``log_probability(log p) = log F(e^{log p})`` (or ``log_success_fn`` if given, for tiny ``p``),
    ``sft_loss = -log F``, ``sft_weight = p F'(p) / F(p)``, ``sft_weight_from_logp = d log F / d log p`` and
    ``rl_weight = F'(p)``; the closed forms above are special cases.

    >>> obj = from_success_fn(lambda p: 1 - (1 - p) ** 2)
    >>> round(float(obj.rl_weight(0.25)), 6), round(float(obj.sft_weight(0.5)), 6)
    (1.5, 0.666667)
    """
    if not callable(success_fn):
        raise ValueError(f"success_fn must be callable, got {type(success_fn).__name__}")

    def derivative(fn, x):
        return jax.jvp(fn, (x,), (jnp.ones_like(x),))

    def probability(p, validate=False):
        return success_fn(_prob_input(p, validate))

    def log_probability(log_p, validate=False):
        lp = _log_input(log_p, validate)
        if log_success_fn is not None:
            return log_success_fn(lp)
        return jnp.log(success_fn(jnp.exp(lp)))

    def sft_loss(log_p, reduction="mean", validate=False):
        nx.check_choice("reduction", reduction, REDUCTIONS)
        return nx.reduce(-log_probability(log_p, validate=validate), reduction)

    def sft_weight(p, validate=False):
        p = _prob_input(p, validate)
        f, df = derivative(success_fn, p)
        return p * df / f

    def sft_weight_from_logp(log_p, validate=False):
        lp = _log_input(log_p, validate)
        return derivative(log_probability, lp)[1]

    def rl_weight(p, validate=False):
        return derivative(success_fn, _prob_input(p, validate))[1]

    return Objective(
        name, probability, log_probability, sft_loss, sft_weight, sft_weight_from_logp, rl_weight
    )
