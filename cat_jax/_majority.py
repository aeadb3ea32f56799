r"""Exact Maj@k for every budget at once: the counting engine behind :func:`cat_jax.operators.majority_at_k`.

Per problem the pool has valid answer clusters of sizes ``n_i`` (with a correct flag) and ``n_0`` invalid
samples. The number of ``k``-subsets in which cluster ``j`` has ``t`` votes and every other cluster fewer is
the coefficient of ``z^k`` in ``C(n_j, t) z^t (1+z)^{n_0} prod_{i != j} A_i^{(t)}(z)`` with the truncated
binomial ``A_i^{(t)}(z) = sum_{x<t} C(n_i, x) z^x``. Ties at ``t`` are marked with ``w``: ``A_i + w C(n_i, t)
z^t``; a win shared by ``m`` tied answers is worth ``1/m = int_0^1 w^{m-1} dw`` (exact Gauss–Legendre, the
degree in ``w`` is below the number of clusters that can reach ``t``). Only clusters with ``n_i >= t`` are
truncated, the others contribute ``(1+z)^{n_i}``; with sizes sorted in decreasing order slot ``s`` can reach
``t`` only if ``(s+1) t <= n``, which bounds the work per level (and the degree in ``w``).

The polynomials are never expanded: they are multiplied pointwise at ``n+1`` points on circles ``|z| = rho``
(normalised by ``(1+rho)^{n_i}`` so every value has modulus <= 1) and the ``z^k`` coefficients are read off
with a DFT. One circle serves a band of budgets around its saddle point ``rho_k = k/(n-k)``; the absolute
error of ``P(k)`` is about ``eps * (1+rho)^n / (rho^k C(n, k))``, kept within a small factor of its minimum
``sqrt(2 pi k(n-k)/n)`` by choosing enough circles. All host tables are float64 cast to the working dtype.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

__all__ = ["majority_curve"]


def _log_l(rho: float, k: int, n: int) -> float:
    """log of ``(1+rho)^n / (rho^k C(n, k))``, the error amplification of coefficient ``k`` at ``rho``."""
    lc = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return n * math.log1p(rho) - k * math.log(rho) - lc


def _radii(n: int, ks: tuple[int, ...], slack: float) -> tuple[list[float], list[int]]:
    """Greedy cover of the budgets by circles whose amplification exceeds each budget's best by <= e^slack."""
    # The +0.5 keeps k = n finite and rho != 1 exactly when n is even, so z = -1 is never a sample point.
    best = {k: (k + 0.5) / (n - k + 0.5) for k in ks}
    radii: list[float] = []
    todo = sorted(set(ks))
    while todo:
        k0 = todo[0]
        ok = lambda r, k: _log_l(r, k, n) - _log_l(best[k], k, n) <= slack
        rho = max((best[k] for k in todo if ok(best[k], k0)), default=best[k0])
        radii.append(rho)
        todo = [k for k in todo if not ok(rho, k)]
    assign = [min(range(len(radii)), key=lambda r: _log_l(radii[r], k, n)) for k in ks]
    return radii, assign


@functools.lru_cache(maxsize=64)
def _plan(n: int, ks: tuple[int, ...], slots: int, ties: str, dtype_name: str):
    dtype = np.dtype(dtype_name)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    slack = math.log(8.0) if dtype == np.float32 else math.log(1e3)
    radii, assign = _radii(n, ks, slack)
    m_pts = n + 1
    half = m_pts // 2 + 1
    theta = 2 * np.pi * np.arange(half) / m_pts
    rho = np.asarray(radii)
    z = (rho[:, None] * np.exp(1j * theta)[None, :]).ravel()  # [Z], radius-major
    log_e = np.log1p(z) - np.repeat(np.log1p(rho), half)
    e_pow = np.exp(np.arange(n + 1)[:, None] * log_e[None, :])  # ((1+z)/(1+rho))^S, S = 0..n
    phase = np.exp(1j * np.arange(n + 1)[:, None] * np.tile(theta, len(radii))[None, :])  # e^{i x theta}
    a = np.arange(n + 1, dtype=np.float64)
    lg = np.vectorize(math.lgamma)
    lc = lg(a[:, None] + 1) - lg(a[None, :] + 1) - lg(np.maximum(a[:, None] - a[None, :], 0) + 1)
    lc = np.where(a[None, :] <= a[:, None], lc, -np.inf)  # [size a, count x]
    # C(a, x) rho^x / (1+rho)^a, [a, x, R]: term magnitudes, <= 1 and summing to 1 over x.
    mag = np.exp(lc[:, :, None] + a[None, :, None] * np.log(rho) - a[:, None, None] * np.log1p(rho))
    # DFT read-out of coefficient k at its own circle, times the amplification back to P(k).
    w_m = np.where((np.arange(half) == 0) | (2 * np.arange(half) == m_pts), 1.0, 2.0) / m_pts
    read = np.zeros((len(radii) * half, len(ks)), np.complex128)
    for col, (k, r) in enumerate(zip(ks, assign, strict=True)):
        read[r * half : (r + 1) * half, col] = w_m * np.exp(-1j * k * theta) * np.exp(_log_l(radii[r], k, n))
    # Levels with the same bounds share one scan: at level t at most min(slots, n // t) clusters can reach t
    # (sizes sorted decreasingly), and the tie polynomial in w has degree below that.
    bands = []
    for t in range(1, n + 1):
        s_t = min(slots, n // t)
        if bands and bands[-1][2] == s_t:
            bands[-1][1] = t
        else:
            bands.append([t, t, s_t])
    for band in bands:
        s_t = band[2]
        if ties == "first":
            x, wq = np.polynomial.legendre.leggauss((s_t + 1) // 2)
            nodes, weights = (x + 1) / 2, wq / 2
        else:
            nodes, weights = np.zeros(1), np.ones(1)
        band += [nodes.astype(dtype), weights.astype(dtype)]
    bands = [tuple(b) for b in bands]
    return dict(
        half=half,
        n_radii=len(radii),
        e_pow=e_pow.astype(cdtype),
        phase=phase.astype(cdtype),
        mag=mag.astype(dtype),
        read_re=read.real.astype(dtype),
        read_im=read.imag.astype(dtype),
        bands=bands,
    )


@functools.partial(jax.jit, static_argnames=("n", "ks", "ties", "slots"))
def majority_curve(
    sizes: Int[Array, "b n"],
    correct: Bool[Array, "b n"],
    *,
    n: int,
    ks: tuple[int, ...],
    ties: str,
    slots: int,
) -> Float[Array, "b k"]:
    """Maj@k for every ``k`` in ``ks`` from cluster ``sizes`` (0 for non-clusters) and cluster ``correct``.

    ``sizes``/``correct`` may use any per-sample layout (e.g. at a cluster's first sample); at most ``slots``
    clusters per problem are used (the largest). Pool size ``n`` includes invalid samples.

    >>> sizes, ok = jnp.array([[2, 1, 0]]), jnp.array([[True, False, False]])  # pool of 3, one answer twice
    >>> [round(float(x), 4) for x in majority_curve(sizes, ok, n=3, ks=(1, 2, 3), ties="fail", slots=2)[0]]
    [0.6667, 0.3333, 1.0]
    """
    dt = jnp.result_type(float)
    plan = _plan(n, ks, slots, ties, np.dtype(dt).name)
    half, n_r = plan["half"], plan["n_radii"]
    mag = jnp.asarray(plan["mag"])
    phase = jnp.asarray(plan["phase"])
    e_pow = jnp.asarray(plan["e_pow"])
    top, idx = jax.lax.top_k(sizes, slots)  # decreasing sizes: slot s can reach level t only if (s+1) t <= n
    corr = jnp.take_along_axis(correct, idx, axis=-1)
    b = sizes.shape[0]

    def expand(m):  # [..., R] -> [..., Z] (radius-major, like the points)
        return jnp.repeat(m, half, axis=-1)

    a_cur = expand(mag[top, 0, :]).astype(phase.dtype)  # A^{(1)} = C(n_i, 0) / (1+rho)^{n_i}
    acc = jnp.zeros((b, n_r * half), phase.dtype)
    for lo, hi, s_g, nodes, weights in plan["bands"]:
        a_cur = a_cur[:, :s_g]
        sz, cf = top[:, :s_g], corr[:, :s_g]
        w = jnp.asarray(nodes)[None, :, None]
        om = jnp.asarray(weights)[None, :, None]

        def level(carry, t, sz=sz, cf=cf, w=w, om=om):
            a_t, acc = carry
            d_t = (
                expand(jax.lax.dynamic_index_in_dim(mag, t, axis=1, keepdims=False)[sz])
                * phase[t][None, None, :]
            )
            big = sz >= t
            p0 = jnp.ones((b, w.shape[1], a_t.shape[-1]), a_t.dtype)
            p1 = jnp.zeros_like(p0)
            for s in range(sz.shape[1]):
                d_s = d_t[:, None, s, :]
                f = jnp.where(big[:, s, None, None], a_t[:, None, s, :] + w * d_s, 1)
                win = jnp.where((big[:, s] & cf[:, s])[:, None, None], d_s, 0)
                p1 = p1 * f + p0 * win
                p0 = p0 * f
            rest = n - jnp.sum(jnp.where(big, sz, 0), axis=-1)  # invalid + clusters below t: (1+z)^rest
            acc = acc + e_pow[rest] * jnp.sum(om * p1, axis=1)
            return (a_t + d_t, acc), None

        (a_cur, acc), _ = jax.lax.scan(level, (a_cur, acc), jnp.arange(lo, hi + 1))
    read_re, read_im = jnp.asarray(plan["read_re"]), jnp.asarray(plan["read_im"])
    return acc.real @ read_re - acc.imag @ read_im
