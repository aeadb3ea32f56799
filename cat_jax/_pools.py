"""Validation of the ``[B, N]`` sample pools that the operators take (shapes, budgets, verifier outcomes,
answer clusters, finite rewards). Value checks run when asked (``validate=True``; inputs must be concrete)
or, by default (``None``), whenever the inputs are concrete; under ``jit`` they are skipped."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from cat_jax import numerics as nx


def want_checks(validate, *xs) -> bool:
    """Value checks run if asked (inputs must then be concrete) or, by default, whenever they are concrete."""
    if validate is None:
        return nx.is_concrete(*xs)
    if validate:
        for x in xs:
            nx.concrete("every array argument", x)
    return bool(validate)


def pool(name: str, x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[-1] < 1:
        raise ValueError(
            f"{name} must be a [B, N] array with N >= 1 samples per problem, got shape {x.shape}"
        )
    return x


def same_shape(ref_name: str, ref: Array, name: str, x: ArrayLike | None) -> Array | None:
    if x is None:
        return None
    x = jnp.asarray(x)
    if x.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {ref.shape}, got {x.shape}")
    return x


def budgets(ks, n: int | None, name: str = "k") -> tuple[int, ...]:
    """Budgets ``ks`` (one or a sequence) as a tuple of ints in ``[1, n]`` (``n = None``: no upper bound)."""
    if not isinstance(ks, (tuple, list, range, np.ndarray)):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError(f"{name} must name at least one budget")
    return tuple(nx.check_int(name, k, minimum=1, maximum=n) for k in ks)


def check_finite(name: str, x: Array) -> None:
    v = nx.concrete(name, x)
    bad = ~np.isfinite(v)
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{name} must be finite (no NaN/inf); first bad entry at {idx}: {v[idx]}")


def clusters_host(ids: Array, valid: Array, correct: Array | None) -> int:
    """Eager check that ``correct`` is constant inside each answer cluster; returns the max cluster count."""
    ids_h = np.asarray(jax.device_get(ids))
    valid_h = np.asarray(jax.device_get(valid), dtype=bool)
    corr_h = None if correct is None else np.asarray(jax.device_get(correct), dtype=bool)
    most = 0
    for b in range(ids_h.shape[0]):
        seen: dict = {}
        for i in np.nonzero(valid_h[b])[0]:
            key = ids_h[b, i].item()
            flag = None if corr_h is None else bool(corr_h[b, i])
            if key in seen and seen[key] != flag:
                raise ValueError(
                    f"correct disagrees with answer_ids inside one cluster: problem {b}, answer id {key} is "
                    "marked both correct and incorrect (equal ids must mean the same normalised answer)"
                )
            seen[key] = flag
        most = max(most, len(seen))
    return most


def binary(name: str, x: Array) -> Array:
    """Verifier outcomes: booleans, or numbers exactly 0/1 (checked when concrete; 0.3 is never rounded)."""
    if x.dtype != jnp.bool_ and nx.is_concrete(x):
        v = np.asarray(jax.device_get(x))
        bad = (v != 0) & (v != 1)
        if bad.any():
            raise ValueError(f"{name} must be boolean or exactly 0/1, got {np.unique(v[bad])[:5]}")
    return x


def ids_valid(answer_ids: ArrayLike, valid: ArrayLike | None) -> tuple[Array, Array]:
    ids = pool("answer_ids", answer_ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"answer_ids must be integer cluster labels, got dtype {ids.dtype}")
    v = same_shape("answer_ids", ids, "valid", valid)
    v = jnp.ones(ids.shape, bool) if v is None else v.astype(bool)
    return ids, v
