r"""Test-time operators on ``[B, N]`` samples and exact scaling-curve estimators (SPEC §1.1, §3.4, §3.5).

Every function takes prompt-major ``[B, N]`` arrays (``B`` problems, ``N`` saved samples on the last axis) and
returns ``[B]`` per-problem values. Budgets ``k``, tie rules and options are keyword-only static values.

* Apply-form operators on exactly the given samples: :func:`pass_at_n`, :func:`majority_vote`,
  :func:`best_of_n`.
* Exact estimators: the expectation over a uniformly random ``k``-subset of the pool drawn without replacement
  (no sampling, deterministic, jit-able): :func:`pass_at_k`, :func:`majority_at_k`, :func:`best_of_k`
  (``replacement=True`` gives the with-replacement expected maximum of SPEC §3.4).
* :func:`scaling_curve` evaluates an estimator at many budgets in one pass, with the mean and standard error
  across problems (equal weight per problem, SE = sample std / sqrt(B)).
* :func:`plurality_win_probability` / :func:`majority_exact_sft_loss` (from ``cat_jax.plurality``): the
  exact plurality-vote success of a finite answer distribution.

Validation (``cat_jax._pools``): static arguments (``k``, shapes, tie rule) are always checked. Value checks
(NaN rewards, ``correct`` disagreeing inside one answer cluster, too many clusters) run when ``validate`` is
true, or when it is ``None`` (the default) and the inputs are concrete; under ``jit`` they are skipped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from cat_jax import _pools as pools
from cat_jax import numerics as nx
from cat_jax._majority import majority_curve
from cat_jax.plurality import majority_exact_sft_loss, plurality_win_probability

__all__ = [
    "TIES",
    "Curve",
    "best_of_k",
    "best_of_n",
    "majority_at_k",
    "majority_exact_sft_loss",
    "majority_vote",
    "pass_at_k",
    "pass_at_n",
    "plurality_win_probability",
    "scaling_curve",
]

TIES = ("first", "fail")


# ----------------------------------------------------------------------------- apply-form operators


def pass_at_n(correct: Bool[ArrayLike, "b n"]) -> Bool[Array, " b"]:
    """Pass@N on exactly the given samples: does any of the ``N`` samples verify? Cost ``O(B N)``.

    >>> pass_at_n(jnp.array([[False, True], [False, False]])).tolist()
    [True, False]
    """
    return jnp.any(pools.binary("correct", pools.pool("correct", correct)).astype(bool), axis=-1)


def _cluster_stats(ids: Array, valid: Array) -> tuple[Array, Array]:
    """Per sample: size of its answer cluster (0 if invalid) and whether it is the cluster's first sample."""
    n = ids.shape[-1]
    same = (ids[..., :, None] == ids[..., None, :]) & valid[..., :, None] & valid[..., None, :]
    count = jnp.sum(same, axis=-1)
    earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)
    leader = valid & ~jnp.any(same & earlier[None], axis=-1)
    return count, leader


def majority_vote(
    answer_ids: Int[ArrayLike, "b n"], *, valid: Bool[ArrayLike, "b n"] | None = None, ties: str = "first"
) -> tuple[Int[Array, " b"], Bool[Array, " b"]]:
    """Plurality vote over exactly the given samples -> ``(winner id, has_winner)``. Cost ``O(B N^2)``.

    Invalid samples (``valid=False``) occupy a slot but never win; an all-invalid row has no winner.
    ``ties="first"``: among tied answers the one that occurs first in sample order wins
    (``Counter.most_common(1)``); ``ties="fail"``: a tie means no winner. Without a winner the id is ``-1``.

    >>> ids = jnp.array([[3, 5, 5, 3], [7, 7, 2, 2]])
    >>> w, ok = majority_vote(ids, valid=jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool))
    >>> w.tolist(), ok.tolist()
    ([5, 7], [True, True])
    >>> majority_vote(ids, ties="fail")[1].tolist()
    [False, False]
    """
    nx.check_choice("ties", ties, TIES)
    ids, v = pools.ids_valid(answer_ids, valid)
    n = ids.shape[-1]
    count, leader = _cluster_stats(ids, v)
    top = jnp.max(count, axis=-1)
    # Largest count first, then the earliest first occurrence.
    score = jnp.where(leader, count * (n + 1) + (n - jnp.arange(n))[None, :], -1)
    idx = jnp.argmax(score, axis=-1)
    winner = jnp.take_along_axis(ids, idx[:, None], axis=-1)[:, 0]
    has = top > 0
    if ties == "fail":
        has = has & (jnp.sum(leader & (count == top[:, None]), axis=-1) == 1)
    return jnp.where(has, winner, -1), has


def best_of_n(
    rewards: Float[ArrayLike, "b n"], *, validate: bool | None = None
) -> tuple[Int[Array, " b"], Float[Array, " b"]]:
    """Best-of-N on exactly the given samples -> ``(index, reward)`` of the maximum (first index on ties).

    Cost ``O(B N)``. Rewards must be finite (NaN and ±inf are rejected, as in :func:`best_of_k`; a NaN would
    win the argmax); checked as the module docstring says.

    >>> i, v = best_of_n(jnp.array([[1.0, 3.0, 3.0], [-2.0, -5.0, -4.0]]))
    >>> i.tolist(), v.tolist()
    ([1, 0], [3.0, -2.0])
    """
    r = nx.as_float(pools.pool("rewards", rewards))
    if pools.want_checks(validate, r):
        pools.check_finite("rewards", r)
    return jnp.argmax(r, axis=-1), jnp.max(r, axis=-1)


# ----------------------------------------------------------------------------- exact estimators


@functools.partial(jax.jit, static_argnames=("ks",))
def _pass_curve(correct: Array, ks: tuple[int, ...]) -> Array:
    n = correct.shape[-1]
    dt = jnp.result_type(float)
    c = jnp.sum(correct.astype(bool), axis=-1).astype(dt)[:, None]
    rest = jnp.asarray(n - np.arange(n), dt)[None, :]
    # 1 - C(n-c, k)/C(n, k) = 1 - prod_{i<k} (1 - c/(n-i)): summing log1p terms keeps tiny values (no
    # cancellation) and the factor that hits zero (c >= n - i) is an exact -inf.
    frac = jnp.where(c < rest, c / rest, jnp.zeros_like(c * rest))
    term = jnp.where(c < rest, jnp.log1p(-frac), -jnp.inf)
    log_fail = jnp.cumsum(term, axis=-1)
    return -jnp.expm1(log_fail[:, np.asarray(ks) - 1])


def pass_at_k(correct: Bool[ArrayLike, "b n"], *, k: int) -> Float[Array, " b"]:
    r"""Unbiased Pass@k from a pool of ``n >= k`` samples: ``1 - C(n-c, k) / C(n, k)`` (SPEC §3.5, App. H.2).

    ``c`` is the number of correct samples. Evaluated as ``-expm1(sum_{i<k} log1p(-c/(n-i)))`` so tiny values
    are not rounded to zero. ``k = 1`` gives ``c/n``, ``k = n`` gives :func:`pass_at_n`. Cost ``O(B n)``
    (one pass gives every ``k``; see :func:`scaling_curve`).

    >>> pool = jnp.array([[True, False, False, False]])
    >>> pass_at_k(pool, k=2).tolist()
    [0.5]
    """
    c = pools.binary("correct", pools.pool("correct", correct))
    return _pass_curve(c, pools.budgets(k, c.shape[-1]))[:, 0]


def _majority_curve_checked(answer_ids, correct, ks, valid, ties, max_clusters, validate):
    nx.check_choice("ties", ties, TIES)
    ids, v = pools.ids_valid(answer_ids, valid)
    corr = pools.binary("correct", pools.same_shape("answer_ids", ids, "correct", correct)).astype(bool)
    n = ids.shape[-1]
    ks = pools.budgets(ks, n)
    slots = n if max_clusters is None else nx.check_int("max_clusters", max_clusters, minimum=1, maximum=n)
    if pools.want_checks(validate, ids, v, corr):
        most = pools.clusters_host(ids, v, corr)
        if most > slots:
            raise ValueError(f"max_clusters={slots} but a problem has {most} distinct valid answers")
        if max_clusters is None:
            slots = max(1, min(n, 1 << max(most - 1, 0).bit_length()))  # eager: fewer slots, same value
    count, leader = _cluster_stats(ids, v)
    sizes = jnp.where(leader, count, 0)
    return majority_curve(sizes, leader & corr, n=n, ks=ks, ties=ties, slots=slots)


def majority_at_k(
    answer_ids: Int[ArrayLike, "b n"],
    correct: Bool[ArrayLike, "b n"],
    *,
    k: int,
    valid: Bool[ArrayLike, "b n"] | None = None,
    ties: str = "first",
    max_clusters: int | None = None,
    validate: bool | None = None,
) -> Float[Array, " b"]:
    r"""Exact Maj@k: probability that the plurality answer of a random ``k``-subset of the pool is correct.

    The reference protocol (SPEC §3.5, App. I.3) draws ``k`` of the ``n`` samples without replacement, in a
    random order; invalid samples occupy slots but never win (all-invalid = failure); distinct correct answers
    are *not* pooled (each cluster votes for itself). ``ties="first"``: the tied answer that occurs first in
    the draw order wins, so each of ``m`` tied answers wins with probability ``1/m``; ``ties="fail"``: any
    tie at the top is a failure. ``correct`` must be constant inside each answer cluster.

    Method (no sampling): the cluster counts of a random ``k``-subset are multivariate hypergeometric. For
    each correct cluster ``j`` and count ``t``, the number of subsets in which ``j`` has ``t`` votes and every
    other cluster fewer (or also ``t``: a tie shared by ``m`` answers is weighted by ``1/m = int_0^1 w^{m-1}
    dw``, exact Gauss–Legendre in ``w``) is a coefficient of a product of truncated binomial polynomials. The
    products are evaluated pointwise on saddle-point circles and every budget's coefficient is read off with
    one discrete Fourier transform (see ``cat_jax._majority``).

    Cost: ``O(B n^2)`` to find the clusters, then ``O(B · R n · n log C)`` for ``ties="fail"`` and
    ``O(B · R n · n C)`` for ``"first"``, for all budgets together, with ``C = max_clusters`` (default ``n``;
    inferred from the data, rounded up to a power of two, when called eagerly) and ``R ~ sqrt(n)/2`` circles.
    Absolute error below ~1e-6 in float32 at n = 128 (values may leave [0, 1] by that much), ~1e-13 in
    float64.

    >>> ids = jnp.array([[1, 1, 2, 3]])
    >>> ok = jnp.array([[True, True, False, False]])
    >>> round(float(majority_at_k(ids, ok, k=2)[0]), 4)  # 1/6 (both 1s) + 4/6 * 1/2 (one 1, tie)
    0.5
    >>> round(float(majority_at_k(ids, ok, k=2, ties="fail")[0]), 4)
    0.1667
    """
    return _majority_curve_checked(answer_ids, correct, k, valid, ties, max_clusters, validate)[:, 0]


@functools.lru_cache(maxsize=128)
def _bon_table(n: int, ks: tuple[int, ...], replacement: bool) -> np.ndarray:
    i = np.arange(1, n + 1, dtype=np.float64)
    if replacement:
        return np.stack([(i[:-1] / n) ** k for k in ks])  # P(all k draws <= v_(i)), i = 1..n-1
    lg = np.vectorize(math.lgamma)
    rows = []
    for k in ks:
        # P(max of a k-subset is the i-th smallest) = C(i-1, k-1) / C(n, k); zero for i < k.
        ok = i >= k
        j = np.where(ok, i - 1, k - 1)
        lc = (
            lg(j + 1)
            - lg(k)
            - lg(j - k + 2)
            - (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        )
        rows.append(np.where(ok, np.exp(lc), 0.0))
    return np.stack(rows)


@functools.partial(jax.jit, static_argnames=("ks", "replacement"))
def _bon_curve(rewards: Array, ks: tuple[int, ...], replacement: bool) -> Array:
    r = nx.as_float(rewards)
    srt = jnp.sort(r, axis=-1)
    table = jnp.asarray(_bon_table(r.shape[-1], ks, replacement), r.dtype)
    if replacement:
        # v_(n) - sum_i (v_(i+1) - v_(i)) (i/n)^k, the SPEC §3.4 form: differences of sorted values keep
        # cancellation harmless when rewards are large and the pool nearly constant.
        return srt[:, -1:] - jnp.einsum("bi,ki->bk", jnp.diff(srt, axis=-1), table)
    return jnp.einsum("bi,ki->bk", srt, table)


def best_of_k(
    rewards: Float[ArrayLike, "b n"], *, k: int, replacement: bool = False, validate: bool | None = None
) -> Float[Array, " b"]:
    r"""Exact expected maximum reward of ``k`` draws from the pool of ``n`` rewards (Best-of-k, SPEC §3.4).

    Without replacement (a random ``k``-subset, the default): ``sum_i v_(i) C(i-1, k-1) / C(n, k)`` over the
    sorted rewards. ``replacement=True``: ``k`` i.i.d. draws from the empirical pool,
    ``v_(n) - sum_{i<n} (v_(i+1) - v_(i)) (i/n)^k``, the metric of the paper's protein tables, defined for
    any ``k >= 1`` (also ``k > n``; without replacement ``k <= n``). Ties and negative rewards need no
    special care. Cost ``O(B n log n + B n)`` per budget.

    >>> pool = jnp.array([[-2.0, 4.0]])
    >>> best_of_k(pool, k=2, replacement=True).tolist()
    [2.5]
    >>> best_of_k(pool, k=1).tolist()
    [1.0]
    """
    return _bon_values(rewards, k, replacement, validate)[:, 0]


def _bon_values(rewards, ks, replacement, validate) -> Array:
    r = pools.pool("rewards", rewards)
    # k i.i.d. draws with replacement are defined for any k >= 1; a k-subset needs k <= n.
    ks = pools.budgets(ks, None if replacement else r.shape[-1])
    if pools.want_checks(validate, r):
        pools.check_finite("rewards", r)
    return _bon_curve(r, ks, bool(replacement))


# ----------------------------------------------------------------------------- scaling curves


class Curve(NamedTuple):
    """Per-problem ``values`` [B, K] at budgets ``ks``, their ``mean`` and standard error ``se`` [K]."""

    ks: tuple[int, ...]
    values: Float[Array, "b k"]
    mean: Float[Array, " k"]
    se: Float[Array, " k"]


def _curve_values(estimator: Callable, args, ks, kwargs) -> Array:
    if estimator is pass_at_k:
        (correct,) = args
        c = pools.binary("correct", pools.pool("correct", correct))
        return _pass_curve(c, pools.budgets(ks, c.shape[-1]))
    if estimator is best_of_k:
        (rewards,) = args
        return _bon_values(rewards, ks, kwargs.get("replacement", False), kwargs.get("validate"))
    if estimator is majority_at_k:
        answer_ids, correct = args
        opts = {"valid": None, "ties": "first", "max_clusters": None, "validate": None} | kwargs
        return _majority_curve_checked(answer_ids, correct, ks, **opts)
    return jnp.stack([estimator(*args, k=k, **kwargs) for k in ks], axis=-1)


def scaling_curve(estimator: Callable, *args, ks: Sequence[int] | None = None, **kwargs) -> Curve:
    """Evaluate ``estimator(*args, k=k, **kwargs)`` at every budget in ``ks`` (default ``1..n``).

    The three exact estimators of this module compute all budgets in one pass (one compile per shape); any
    other estimator is called once per budget. Returns a :class:`Curve` with the per-problem values and the
    mean and standard error across problems (equal weight per problem, SE = sample std / sqrt(B); NaN for
    ``B = 1``).

    >>> c = scaling_curve(pass_at_k, jnp.array([[True, False, False, False], [True, True, False, False]]))
    >>> c.ks, [round(float(x), 4) for x in c.mean]
    ((1, 2, 3, 4), [0.375, 0.6667, 0.875, 1.0])
    """
    n = jnp.shape(args[0])[-1]
    unbounded = estimator is best_of_k and kwargs.get("replacement", False)  # i.i.d. draws: any k >= 1
    ks = tuple(range(1, n + 1)) if ks is None else pools.budgets(tuple(ks), None if unbounded else n, "ks")
    values = _curve_values(estimator, args, ks, kwargs)
    b = values.shape[0]
    mean = jnp.mean(values, axis=0)
    if b > 1:
        se = jnp.std(values, axis=0, ddof=1) / np.sqrt(b)
    else:
        se = jnp.full_like(mean, jnp.nan)
    return Curve(ks, values, mean, se)
