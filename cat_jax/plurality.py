r"""Exact plurality-vote success of a finite answer distribution, and the full (non-diagonal) Majority loss.

CAT's Majority objective (SPEC §2.2) is the fixed-threshold surrogate ``P[Bin(N, p) >= k]``; when the model's
answer distribution over ``C`` answers is known (a finite task), the real success probability of an
``N``-sample plurality vote can be computed exactly and differentiated with respect to *all* answer
probabilities, rivals included (SPEC §1.4).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from cat_jax import numerics as nx

__all__ = ["majority_exact_sft_loss", "plurality_win_probability", "win_polynomial"]


@functools.lru_cache(maxsize=32)
def _binom(n: int) -> np.ndarray:
    return np.array([[math.comb(d, u) for u in range(n + 1)] for d in range(n + 1)], dtype=np.float64)


def _powers(p: Array, n: int) -> Array:
    """``[p^0, ..., p^n]`` on a new last axis, by repeated products so gradients are exact at ``p = 0``."""
    reps = jnp.broadcast_to(p[..., None], (*p.shape, n))
    return jnp.concatenate([jnp.ones_like(p)[..., None], jnp.cumprod(reps, axis=-1)], axis=-1)


def win_polynomial(
    probs: Float[Array, "b c"], p_invalid: Float[Array, " b"], target: Int[Array, " b"], *, n: int, ties: str
) -> Float[Array, " b"]:
    r"""Plurality win probability as a polynomial in *unconstrained* ``probs`` and ``p_invalid``.

    Work in the exponential-generating-function basis ``b_d = d! [z^d]``: the factor of an answer with
    probability ``p`` is ``b_x = p^x``, products are binomial convolutions ``sum_u C(d, u) a_u b_{d-u}``
    (every value stays in ``[0, 1]``) and ``b_N`` of the product is the multinomial probability. For each
    level ``t`` the target contributes ``p_t^t`` at degree ``t``, every rival ``p_i^x`` for ``x < t`` plus
    ``w p_i^t`` (a tie), invalid answers ``p_0^x`` for every ``x``; ``ties="first"`` integrates ``w`` over
    ``[0, 1]`` (Gauss–Legendre, exact), ``"fail"`` sets ``w = 0``. Cost ``O(C N^3)`` (``"fail"``) or
    ``O(C^2 N^3 / 2)`` (``"first"``) per row.

    >>> p, inv = jnp.array([[0.5, 0.25]]), jnp.array([0.25])
    >>> round(float(win_polynomial(p, inv, jnp.array([0]), n=1, ties="fail")[0]), 4)
    0.5
    """
    dt = probs.dtype
    b, c = probs.shape
    if ties == "first":
        x, wq = np.polynomial.legendre.leggauss(max(1, (c + 1) // 2))
        nodes, weights = jnp.asarray((x + 1) / 2, dt), jnp.asarray(wq / 2, dt)
    else:
        nodes, weights = jnp.zeros((1,), dt), jnp.ones((1,), dt)
    binom = jnp.asarray(_binom(n), dt)
    deg = np.arange(n + 1)
    lev = np.arange(1, n + 1)  # t = 1..n
    diff = deg[:, None] - deg[None, :]  # d - u
    low = (diff >= 0)[None, None, None]

    def convolve(state, fac):  # state, fac: [B, T, Q, n+1]
        g = jnp.take(fac, np.clip(diff, 0, n), axis=-1)  # [B, T, Q, d, u] = fac[d-u]
        mat = jnp.where(low, g, 0) * binom[None, None, None]
        return jnp.einsum("btqdu,btqu->btqd", mat, state)

    pw = _powers(probs, n)  # [B, C, n+1]
    below = (deg[None, :] < lev[:, None])[None, :, None, :]  # [1, T, 1, n+1]
    at = (deg[None, :] == lev[:, None])[None, :, None, :]
    w = nodes[None, None, :, None]
    onehot = jax.nn.one_hot(target, c, dtype=jnp.bool_)

    def rival(carry, inp):
        pw_i, is_t = inp  # [B, n+1], [B]
        p = pw_i[:, None, None, :]
        other = jnp.where(below, p, 0) + jnp.where(at, w * p, 0)
        tgt = jnp.where(at, p, 0) * jnp.ones_like(w)
        fac = jnp.where(is_t[:, None, None, None], tgt, other)
        return convolve(carry, fac), None

    state = jnp.zeros((b, n, nodes.shape[0], n + 1), dt).at[..., 0].set(1)
    state, _ = jax.lax.scan(rival, state, (jnp.moveaxis(pw, 1, 0), jnp.moveaxis(onehot, 1, 0)))
    inv = jnp.broadcast_to(_powers(p_invalid, n)[:, None, None, :], state.shape)
    state = convolve(state, inv)
    return jnp.einsum("btq,q->b", state[..., n], weights)


# Undecorated above so it composes inside a caller's jit; the eager entry point below runs it compiled.
_win_polynomial = jax.jit(win_polynomial, static_argnames=("n", "ties"))


def plurality_win_probability(
    probs: Float[ArrayLike, "b c"],
    target: Int[ArrayLike, " b"],
    *,
    n: int,
    ties: str = "first",
    validate: bool | None = None,
) -> Float[Array, " b"]:
    r"""Exact probability that answer ``target`` wins a plurality vote over ``n`` i.i.d. samples.

    ``probs`` [B, C] are the probabilities of ``C`` distinct valid answers; the remaining mass
    ``1 - sum(probs)`` is invalid (occupies a vote, never wins). ``ties="first"``: a tie at the top is broken
    by first occurrence, so each of ``m`` tied answers wins with probability ``1/m``; ``"fail"``: ties lose
    (strict plurality). Differentiable in ``probs`` (a polynomial; the invalid mass moves with it), no
    enumeration of the ``~N^C`` outcomes: a DP over categories costs ``O(C N^3)`` for ``"fail"`` and
    ``O(C^2 N^3 / 2)`` for ``"first"`` per row (see :func:`win_polynomial`). Float32 is exact to ~1e-6 up to
    ``n ~ 100``; beyond, binomials exceed float32's range, so use float64.

    >>> probs = jnp.array([[0.5, 0.5]])
    >>> round(float(plurality_win_probability(probs, jnp.array([0]), n=2)[0]), 4)  # 1/4 + 1/2 * 1/2
    0.5
    >>> round(float(plurality_win_probability(probs, jnp.array([0]), n=2, ties="fail")[0]), 4)
    0.25
    """
    nx.check_choice("ties", ties, ("first", "fail"))
    n = nx.check_int("n", n, minimum=1)
    p = nx.as_float(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be a [B, C] array, got shape {p.shape}")
    tgt = jnp.asarray(target)
    if tgt.shape != p.shape[:1] or not jnp.issubdtype(tgt.dtype, jnp.integer):
        raise ValueError(
            f"target must be an integer array of shape {p.shape[:1]}, got {tgt.dtype}{tgt.shape}"
        )
    check = validate if validate is not None else nx.is_concrete(p)
    if check and nx.is_concrete(tgt):
        v = nx.concrete("probs", p)
        if not ((v >= 0).all() and (v.sum(-1) <= 1 + 1e-5).all()):
            raise ValueError(
                "probs must be >= 0 with rows summing to at most 1 (the rest is the invalid mass)"
            )
        t = np.asarray(tgt)
        if ((t < 0) | (t >= p.shape[1])).any():
            raise ValueError(f"target must index one of the {p.shape[1]} answers, got {t}")
    p_inv = 1 - jnp.sum(p, axis=-1)
    return _win_polynomial(p, p_inv, tgt, n=n, ties=ties)


def majority_exact_sft_loss(
    log_probs: Float[ArrayLike, "b c"],
    target: Int[ArrayLike, " b"],
    *,
    n: int,
    ties: str = "first",
    reduction: str = "mean",
) -> Float[Array, "..."]:
    r"""Full Majority-Vote SFT loss ``-log P[target wins an n-sample plurality vote]`` for a finite task.

    ``log_probs`` [B, C] are the model's log-probabilities of ``C`` candidate answers (the rest of the mass is
    unparseable output); unlike the fixed-threshold surrogate (``objectives.majority_sft_loss``) its gradient
    also pushes rival answers down (the off-diagonal terms of SPEC §1.4). Cost as
    :func:`plurality_win_probability`. ``reduction``: ``"none" | "mean" | "sum"``.

    >>> lp = jnp.log(jnp.array([[0.6, 0.3]]))
    >>> round(float(majority_exact_sft_loss(lp, jnp.array([0]), n=3)), 4)
    0.3285
    """
    nx.check_choice("reduction", reduction, nx.REDUCTIONS)
    lp = nx.as_float(log_probs)
    loss = -jnp.log(plurality_win_probability(jnp.exp(lp), target, n=n, ties=ties, validate=False))
    return nx.reduce(loss, reduction)
