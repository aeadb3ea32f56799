"""Shared by the objectives: static budget checks, eager domain checks (``validate=True``), NaN outside the
domain (never a clamped number) and the subnormal-safe scaled power ``c * base**m``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike

from cat_jax import numerics as nx


def budget(n) -> int:
    return nx.check_int("n", n, minimum=1)


def threshold(n, k) -> tuple[int, int]:
    n = budget(n)
    return n, nx.check_int("k", k, minimum=1, maximum=n)


def check_unit(name: str, x: ArrayLike) -> None:
    v = nx.concrete(name, x)
    bad = ~(v >= 0) | ~(v <= 1)  # also catches NaN
    if bad.any():
        raise ValueError(f"{name} must lie in [0, 1] and not be NaN; got {v[bad].ravel()[:5]}")


def check_log(name: str, x: ArrayLike) -> None:
    v = nx.concrete(name, x)
    bad = ~(v <= 0) | ~(v > -float("inf"))
    if bad.any():
        raise ValueError(
            f"{name} must be a finite log-probability <= 0 (summed, not a positive NLL); "
            f"got {v[bad].ravel()[:5]}"
        )


def nan_outside_unit(x, out):
    # Out-of-domain values give NaN (caught by a trainer's non-finite guard), never a clamped number.
    return jnp.where((x >= 0) & (x <= 1), out, jnp.nan)


def nan_above_zero(lp, out):
    return jnp.where(lp <= 0, out, jnp.nan)


def n_pow(c: int, base, m: int, *, log_base):
    """``c * base**m`` for ``base`` in [0, 1]: in log space while ``base > 0`` (an integer power would flush
    subnormal intermediates such as ``0.5**1023`` to zero on CPU), an exact integer power at ``base = 0``
    so the gradient there stays right. ``log_base`` is ``log(base)`` computed accurately by the caller on a
    safe argument (e.g. ``log1p(-p)`` for ``base = 1 - p``)."""
    if m == 0:
        return jnp.full_like(base, c)
    pos = base > 0
    safe = jnp.where(pos, jnp.zeros_like(base), base)
    return jnp.where(pos, jnp.exp(math.log(c) + m * log_base), c * jax.lax.integer_pow(safe, m))


def prob_input(p, validate, name="p"):
    if validate:
        check_unit(name, p)
    return nx.as_float(p)


def log_input(log_p, validate):
    if validate:
        check_log("log_p", log_p)
    return nx.as_float(log_p)
