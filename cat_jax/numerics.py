"""Numerical primitives shared by every CAT formula.

Log-space helpers (``log1mexp``, log-binomials, masked log-sum-exp), the "double where" helper that keeps
unselected branches from producing NaN gradients, and the dtype policy: float16/bfloat16 are computed in
float32, float32 and float64 are kept, integers and booleans become JAX's default float. Also the one copy
of the small checks every module shares: static integers and choices, the ``reduction`` switch, and whether
an array is concrete (inspectable on the host) or traced.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

LOG_HALF = -math.log(2.0)
REDUCTIONS = ("none", "mean", "sum")


def compute_dtype(x: ArrayLike) -> jnp.dtype:
    """Working dtype for ``x``: half precision -> float32, float32/float64 kept, else default float."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):  # casting to float would drop the imaginary part
        raise ValueError(f"expected real numbers, got dtype {dtype}")
    if dtype in (jnp.float16, jnp.bfloat16):
        return jnp.dtype(jnp.float32)
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(dtype)
    return jnp.dtype(jnp.result_type(float))


def as_float(x: ArrayLike) -> Float[Array, "..."]:
    """``x`` as a JAX array in its working dtype (see :func:`compute_dtype`); never mutates the input."""
    return jnp.asarray(x, dtype=compute_dtype(x))


def eps(dtype) -> float:
    """Machine epsilon of ``dtype`` (float32: 2**-23, float64: 2**-52)."""
    return float(jnp.finfo(dtype).eps)


def safe_where(
    pred: Bool[Array, "..."],
    x: Float[Array, "..."],
    true_fn: Callable[[Array], Array],
    false_fn: Callable[[Array], Array],
    *,
    true_safe: float,
    false_safe: float,
) -> Float[Array, "..."]:
    """``where(pred, true_fn(x), false_fn(x))`` whose gradient is NaN-free on both sides.

    Each branch is evaluated on ``x`` only where it is selected and on a harmless constant elsewhere
    (the "double where" trick), so a branch that is infinite or NaN off its domain (``log 0``,
    ``log1mexp(0)``) contributes an exact zero, not ``0 * inf``, to the gradient.

    >>> f = lambda x: safe_where(x > 0, x, jnp.log, lambda u: u, true_safe=1.0, false_safe=0.0)
    >>> float(jax.grad(f)(0.0))
    1.0
    """
    xt = jnp.where(pred, x, jnp.asarray(true_safe, x.dtype))
    xf = jnp.where(pred, jnp.asarray(false_safe, x.dtype), x)
    return jnp.where(pred, true_fn(xt), false_fn(xf))


def log1mexp(u: Float[Array, "..."]) -> Float[Array, "..."]:
    r"""``log(1 - exp(u))`` for ``u <= 0``, accurate everywhere (Mächler 2012).

    Two branches split at ``u0 = -log 2``: ``log1p(-exp(u))`` below it (``exp(u)`` small) and
    ``log(-expm1(u))`` above it (``1 - exp(u)`` small). Endpoints: ``-inf`` at ``u = 0``, ``0`` as
    ``u -> -inf``. Each branch sees only its own arguments (double where), so gradients stay finite for
    ``u < 0``. SPEC §2.0.

    >>> round(float(log1mexp(jnp.asarray(-1e-20))), 4)  # log(1e-20)
    -46.0517
    >>> float(log1mexp(jnp.asarray(-50.0)))
    -1.9287...e-22
    """
    u = as_float(u)
    return safe_where(
        u < LOG_HALF,
        u,
        lambda a: jnp.log1p(-jnp.exp(a)),
        lambda b: jnp.log(-jnp.expm1(b)),
        true_safe=LOG_HALF,
        false_safe=LOG_HALF,
    )


@functools.lru_cache(maxsize=256)
def _log_binomial_row(n: int) -> np.ndarray:
    row = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)],
        dtype=np.float64,
    )
    row[0] = row[-1] = 0.0  # log C(n, 0) = log C(n, n) = 0 exactly; lgamma rounding would leave ~1e-13.
    row.setflags(write=False)
    return row


def log_binomial_row(n: int, dtype=jnp.float64) -> np.ndarray:
    """``[log C(n, 0), ..., log C(n, n)]`` computed on host in float64, ends exactly 0, cast to ``dtype``.

    >>> np.exp(log_binomial_row(4)).round(6).tolist()
    [1.0, 4.0, 6.0, 4.0, 1.0]
    """
    check_int("n", n, minimum=0)
    return _log_binomial_row(n).astype(dtype)


def log_comb(n: ArrayLike, k: ArrayLike) -> Float[Array, "..."]:
    """Traced ``log C(n, k)`` via ``lgamma`` for array-valued ``n, k``; ``-inf`` outside ``0 <= k <= n``.

    >>> float(jnp.exp(log_comb(10, 3)).round(6))
    120.0
    """
    n = as_float(n)
    k = jnp.asarray(k, n.dtype)
    ok = (k >= 0) & (k <= n)
    ks = jnp.where(ok, k, 0)
    lg = jax.scipy.special.gammaln
    val = lg(n + 1) - lg(ks + 1) - lg(n - ks + 1)
    return jnp.where(ok, val, -jnp.inf)


def logsumexp_masked(
    x: Float[Array, "... m"], mask: Bool[Array, "... m"], axis: int = -1
) -> Float[Array, "..."]:
    """``log sum_{i: mask_i} exp(x_i)`` along ``axis``; ``-inf`` (with zero gradient) if nothing is selected.

    This is the "logsumexp over an index range" primitive: pass ``mask = (lo <= i) & (i <= hi)`` for a
    range whose ends are traced (per-row thresholds). Unselected entries never reach ``exp``, so they
    cannot overflow or poison gradients.

    >>> x = jnp.log(jnp.arange(1.0, 5.0))
    >>> float(jnp.exp(logsumexp_masked(x, jnp.arange(4) >= 2)))  # 3 + 4
    7.0
    """
    x = as_float(x)
    mask = jnp.broadcast_to(mask, x.shape)
    neg_inf = jnp.asarray(-jnp.inf, x.dtype)
    m = jax.lax.stop_gradient(jnp.max(jnp.where(mask, x, neg_inf), axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    z = jnp.where(mask, x - m, jnp.zeros_like(x))
    s = jnp.sum(jnp.where(mask, jnp.exp(z), jnp.zeros_like(x)), axis=axis, keepdims=True)
    nonempty = s > 0
    out = jnp.log(jnp.where(nonempty, s, jnp.ones_like(s))) + m
    return jnp.squeeze(jnp.where(nonempty, out, neg_inf), axis=axis)


def trailing(v: ArrayLike, like: Array) -> Array:
    """Reshape a 1-D vector to ``[1, ..., 1, m]`` so it broadcasts against ``like[..., None]``.

    Needed because the library runs with ``jax_numpy_rank_promotion="raise"`` in tests.
    """
    v = jnp.asarray(v, like.dtype)
    return v.reshape((1,) * like.ndim + (v.shape[-1],))


def check_int(name: str, value, *, minimum: int, maximum: int | None = None) -> int:
    """Validate a static integer argument (booleans rejected) and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a Python integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer in {allowed}, got {value}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Validate a static string option against ``choices``; the error lists the valid values."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def reduce(x: Array, reduction: str) -> Array:
    """``x`` reduced over all elements by ``reduction``: ``"none"`` (unchanged) | ``"mean"`` | ``"sum"``.

    >>> float(reduce(jnp.array([1.0, 2.0]), "sum")), reduce(jnp.array([1.0]), "none").shape
    (3.0, (1,))
    """
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(x)
    if reduction == "sum":
        return jnp.sum(x)
    return x


def is_concrete(*xs) -> bool:
    """True when every ``x`` (``None`` skipped) can be inspected on the host: none is a tracer inside
    jit/grad/vmap, nor a global array with shards on other processes. Eager value checks run only then.

    >>> is_concrete(jnp.ones(2), None), jax.jit(lambda x: jnp.asarray(is_concrete(x)))(1.0).item()
    (True, False)
    """
    # A global array of a multi-process run is not a tracer, but only its local shards are on this host.
    return not any(
        isinstance(x, jax.core.Tracer) or (isinstance(x, jax.Array) and not x.is_fully_addressable)
        for x in xs
        if x is not None
    )


def concrete(name: str, x: ArrayLike) -> np.ndarray:
    """Host copy of ``x`` for eager validation; explains what to do if ``x`` is a tracer."""
    if not is_concrete(x):
        raise ValueError(
            f"validate=True needs a concrete {name}, but it is traced (inside jit/grad/vmap). "
            "Validate eagerly before jit, or wrap the call with jax.experimental.checkify."
        )
    return np.asarray(jax.device_get(x), dtype=np.float64)
