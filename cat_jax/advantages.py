r"""Group advantages and Best-of-N reward quantiles on ``[B, M]`` rollouts (prompt-major; SPEC §2.3, §2.6).

* :func:`group_advantages`: ``A_j = (r_j - mean r) / (std_unbiased r + eps) - pen * 1[all r = 0]``, clip;
* :func:`passk_group_advantages`: the analytic Pass@k group advantage of Chen et al. 2025 (arXiv 2508.10751);
* :func:`informative_groups`: groups whose rewards are not all equal (the others carry no gradient signal);
* :func:`within_prompt_quantiles` and :class:`RewardHistory` (a FIFO pytree, queried before append):
  the lower-tail quantiles ``q`` that the Best-of-N rank weight ``N q^{N-1}`` needs;
* :class:`AdvantageConfig` + :func:`compute_advantages`: the estimator by name (``ESTIMATORS``/``get``).

Every function is pure, jit-able and reduces over the last axis (the ``M`` rollouts of one prompt) only.
Array-value checks (binary rewards) run eagerly when the input is concrete; under ``jit`` a violated
precondition gives NaN (so a trainer's non-finite guard stops) instead of a silently wrong number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Real

from cat_jax import numerics as nx

DEFAULT_EPS = 1e-4  # SPEC §2.6: keeps an almost-constant group from exploding without changing larger ones
HISTORY_CAPACITY = 4000  # SPEC §2.3: the reference's FIFO size


# ----------------------------------------------------------------------------- helpers


def _rewards(rewards, *, min_m: int = 1) -> Array:
    r = nx.as_float(rewards)
    if r.ndim < 1:
        raise ValueError(f"rewards must have shape [..., M], got a scalar of shape {r.shape}")
    nx.check_int("M (rewards.shape[-1])", r.shape[-1], minimum=min_m)
    return r


def check_binary(name: str, x, *, why: str) -> Array:
    """Reject non-0/1 values eagerly when ``x`` is concrete; return a traced "all binary" flag for jit."""
    x = jnp.asarray(x)
    if nx.is_concrete(x):
        v = np.asarray(jax.device_get(x), dtype=np.float64)
        bad = (v != 0) & (v != 1)
        if bad.any():
            raise ValueError(f"{name} must be exactly 0 or 1 ({why}); got {v[bad].ravel()[:5]}")
    return jnp.all((x == 0) | (x == 1))


def _check_eps(eps, *, estimator: str) -> None:
    # group divides by std + eps and an all-equal group has std 0: eps = 0 would make its advantages NaN.
    # passk divides only where the group has signal (std > 0), so eps = 0 is safe there.
    if estimator == "group" and not eps > 0:
        raise ValueError(
            "eps must be > 0 for the group estimator (it divides by std + eps; an all-equal group has "
            f"std 0), got {eps}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _nan_unless(ok: Array, x: Array) -> Array:
    return jnp.where(ok, x, jnp.full_like(x, jnp.nan))


# ----------------------------------------------------------------------------- group advantages


def group_advantages(
    rewards: Real[ArrayLike, "*b m"],
    *,
    eps: float = DEFAULT_EPS,
    all_wrong_penalty: float = 0.0,
    clip: float | None = None,
) -> Float[Array, "*b m"]:
    r"""Group-standardised advantages per prompt row (SPEC §2.6).

    ``A_j = (r_j - mean(r)) / (std_unbiased(r) + eps) - all_wrong_penalty * 1[r_j = 0 for all j]``, then
    ``clip(A, -clip, clip)`` if ``clip`` is set; ``eps > 0`` (an all-equal group has std 0). Shapes:
    ``[..., M] -> [..., M]``, ``M >= 2`` (an unbiased std of one sample does not exist). Each row is
    independent; an all-correct row gives 0, an all-wrong row ``-all_wrong_penalty``. The penalty is only
    defined for binary rewards. Not differentiable on purpose: the loss stops the gradient (see
    :mod:`cat_jax.losses`).

    >>> a = group_advantages(jnp.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), all_wrong_penalty=0.5)
    >>> a.round(3).tolist()
    [[1.5, -0.5, -0.5, -0.5], [-0.5, -0.5, -0.5, -0.5]]
    """
    r = _rewards(rewards, min_m=2)
    _check_eps(eps, estimator="group")
    if not all_wrong_penalty >= 0:
        raise ValueError(f"all_wrong_penalty must be >= 0, got {all_wrong_penalty}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")
    mean = jnp.mean(r, axis=-1, keepdims=True)
    std = jnp.std(r, axis=-1, ddof=1, keepdims=True)
    a = (r - mean) / (std + eps)
    if all_wrong_penalty:
        binary = check_binary("rewards", r, why="all_wrong_penalty > 0 needs binary rewards")
        all_wrong = jnp.all(r == 0, axis=-1, keepdims=True)
        a = _nan_unless(binary, a - all_wrong_penalty * all_wrong.astype(a.dtype))
    if clip is not None:
        a = jnp.clip(a, -clip, clip)
    return a


def informative_groups(rewards: Real[ArrayLike, "*b m"]) -> Bool[Array, "*b"]:
    """``[..., M] -> [...]``: True where a prompt's rewards are not all equal (they carry a gradient signal).

    >>> informative_groups(jnp.array([[1, 0], [1, 1], [0, 0]])).tolist()
    [True, False, False]
    """
    r = _rewards(rewards)
    return jnp.any(r != r[..., :1], axis=-1)


def binomial_ratio(a: Real[ArrayLike, "*b"], *, n: int, k: int) -> Float[Array, "*b"]:
    r"""``C(a, k) / C(n, k)`` for traced counts ``0 <= a <= n`` and static ``n >= k >= 0``, as
    ``prod_{i<k} max(a - i, 0) / (n - i)``: exactly 0 when ``a < k`` and exactly 1 when ``a = n``, so the
    degenerate groups that decide zero variance never suffer ``lgamma`` cancellation.

    >>> [round(float(x), 4) for x in binomial_ratio(jnp.array([1.0, 2.0, 4.0]), n=4, k=2)]
    [0.0, 0.1667, 1.0]
    """
    a = nx.as_float(a)
    if k == 0:
        return jnp.ones_like(a)
    i = jnp.arange(k, dtype=a.dtype).reshape((1,) * a.ndim + (k,))
    ratio = jnp.prod(jnp.maximum(a[..., None] - i, 0), axis=-1) / float(math.prod(range(n - k + 1, n + 1)))
    # XLA may divide as x * (1/y), so pin the exact end values the zero-variance logic relies on.
    return jnp.where(a >= n, jnp.ones_like(ratio), jnp.where(a < k, jnp.zeros_like(ratio), ratio))


def passk_group_advantages(
    rewards: Real[ArrayLike, "*b m"], *, k: int, eps: float = 0.0
) -> Float[Array, "*b m"]:
    r"""Analytic Pass@k group advantage (Chen et al. 2025, arXiv 2508.10751), binary rewards, ``1 <= k <= M``.

    Treat every ``k``-subset of the ``M`` rollouts as one group whose reward is its max (pass@k). With ``c``
    correct and ``M - c`` wrong rollouts: mean group reward ``R = 1 - C(M-c, k) / C(M, k)``, its std
    ``s = sqrt(R (1 - R))``; correct rollouts get ``(1 - R) / (s + eps)``, wrong ones
    ``(1 - R - C(M-c-1, k-1) / C(M-1, k-1)) / (s + eps)`` — the mean standardised advantage of the groups
    that contain them. Groups without signal (all wrong, or fewer than ``k`` wrong) give exactly 0.
    ``k = 1`` is GRPO with the population std. Shapes ``[..., M] -> [..., M]``.

    >>> [round(float(x), 4) for x in passk_group_advantages(jnp.array([[1.0, 0.0, 0.0, 0.0]]), k=2)[0]]
    [1.0, -0.3333, -0.3333, -0.3333]
    """
    r = _rewards(rewards)
    m = r.shape[-1]
    k = nx.check_int("k", k, minimum=1, maximum=m)
    binary = check_binary("rewards", r, why="the Pass@k advantage is defined for a binary verifier")
    wrong = jnp.sum(r == 0, axis=-1, keepdims=True).astype(r.dtype)
    mean = 1 - binomial_ratio(wrong, n=m, k=k)
    # P[all k-1 companions of a wrong rollout are wrong] (only used where that rollout is wrong, wrong >= 1).
    neg_all_wrong = binomial_ratio(jnp.maximum(wrong - 1, 0), n=m - 1, k=k - 1)
    # Every k-subset has the same max when all rollouts are wrong or fewer than k are: no signal, exactly 0.
    signal = (wrong < m) & (wrong >= k)
    std = jnp.sqrt(jnp.clip(mean * (1 - mean), 0, None))
    denom = jnp.where(signal, std + eps, jnp.ones_like(std))
    adv = jnp.where(r == 1, 1 - mean, 1 - mean - neg_all_wrong) / denom
    return _nan_unless(binary, jnp.where(signal, adv, jnp.zeros_like(adv)))


# ----------------------------------------------------------------------------- Best-of-N quantiles


def within_prompt_quantiles(rewards: Real[ArrayLike, "*b m"]) -> Float[Array, "*b m"]:
    r"""Lower-tail reward quantile within each prompt: ``q_j = (#{i: r_i < r_j} + 1) / (M + 1)`` (SPEC §2.3).

    Ties share the rank of their lowest member; never ranks across prompts; range ``[1/(M+1), M/(M+1)]``.
    Shapes ``[..., M] -> [..., M]``.

    >>> within_prompt_quantiles(jnp.array([[2.0, 2.0, 9.0]])).tolist()
    [[0.25, 0.25, 0.75]]
    """
    r = _rewards(rewards)
    if nx.is_concrete(r) and not bool(jnp.all(jnp.isfinite(r))):  # NaN compares False: it would rank silently
        raise ValueError(f"rewards must be finite to rank them, got {r[~jnp.isfinite(r)][:5]}")
    m = r.shape[-1]
    lower = jnp.sum(r[..., None, :] < r[..., :, None], axis=-1)
    return ((lower + 1) / (m + 1)).astype(r.dtype)


@flax.struct.dataclass
class RewardHistory:
    """FIFO of the most recent rewards (all completions of previous steps) as a pytree for the train state.

    ``buffer [capacity]`` is a ring, ``count`` how many entries are filled (``<= capacity``), ``head`` where
    the next reward goes. Use :meth:`quantiles` on the current batch *before* :meth:`append` (SPEC §2.3).
    """

    # Typed loosely: pytree utilities rebuild this class with numpy arrays, ShapeDtypeStructs, shardings.
    buffer: Any  # [capacity] float
    count: Any  # int32 scalar
    head: Any  # int32 scalar

    @classmethod
    def create(cls, capacity: int = HISTORY_CAPACITY, dtype=jnp.float32) -> RewardHistory:
        """An empty history holding at most ``capacity`` rewards."""
        capacity = nx.check_int("capacity", capacity, minimum=1)
        return cls(jnp.zeros((capacity,), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.buffer.shape[0]

    def quantiles(self, rewards: Real[ArrayLike, "*b m"]) -> Float[Array, "*b m"]:
        r"""``q_j = clip((#{h < r_j} + 1) / (|hist| + 2), 0.001, 0.999)``; an empty history gives 0.5.

        Does not change the history. ``O(H log H + R log H)`` through one sort and a binary search.

        >>> h = RewardHistory.create(8).append(jnp.array([[2.0, 4.0, 6.0]]))
        >>> h.quantiles(jnp.array([[1.0, 2.0]])).round(6).tolist()
        [[0.2, 0.2]]
        """
        r = _rewards(rewards)
        filled = jnp.arange(self.capacity) < self.count
        # Empty slots sort to the end as +inf, so they are never "below" a finite reward.
        hist = jnp.sort(jnp.where(filled, self.buffer.astype(r.dtype), jnp.inf))
        below = jnp.minimum(jnp.searchsorted(hist, r.reshape(-1), side="left"), self.count).reshape(r.shape)
        q = jnp.clip((below + 1) / (self.count + 2), 0.001, 0.999).astype(r.dtype)
        return jnp.where(self.count > 0, q, jnp.full_like(q, 0.5))

    def append(self, rewards: Real[ArrayLike, "..."]) -> RewardHistory:
        """The history with every reward of ``rewards`` appended (oldest dropped beyond ``capacity``)."""
        flat = jnp.asarray(rewards, self.buffer.dtype).reshape(-1)
        if flat.shape[0] > self.capacity:  # static: only the newest `capacity` can survive
            flat = flat[-self.capacity :]
        n = flat.shape[0]
        idx = (self.head + jnp.arange(n, dtype=jnp.int32)) % self.capacity
        return RewardHistory(
            buffer=self.buffer.at[idx].set(flat),
            count=jnp.minimum(self.count + n, self.capacity).astype(jnp.int32),
            head=((self.head + n) % self.capacity).astype(jnp.int32),
        )


# ----------------------------------------------------------------------------- estimators by name


def _group(rewards, cfg: AdvantageConfig):
    return group_advantages(rewards, eps=cfg.eps, all_wrong_penalty=cfg.all_wrong_penalty, clip=cfg.clip)


def _passk(rewards, cfg: AdvantageConfig):
    a = passk_group_advantages(rewards, k=cfg.k, eps=cfg.eps)
    return a if cfg.clip is None else jnp.clip(a, -cfg.clip, cfg.clip)


def _identity(rewards, cfg: AdvantageConfig):
    # No baseline: the unbiased REINFORCE estimator, e.g. on PKPO-transformed rewards (cat_jax.weights).
    return nx.as_float(rewards)


ESTIMATORS: dict[str, Callable[[Array, AdvantageConfig], Array]] = {
    "group": _group,
    "passk": _passk,
    "identity": _identity,
}


def get(name: str) -> Callable[[Array, AdvantageConfig], Array]:
    """The advantage estimator ``fn(rewards, config)`` called ``name``; the error lists the valid names."""
    nx.check_choice("estimator", name, ESTIMATORS)
    return ESTIMATORS[name]


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
    """Static advantage settings, validated on construction.

    ``estimator``: ``group`` (SPEC §2.6), ``passk`` (Chen et al. 2025, uses ``k``), ``identity`` (rewards);
    ``eps``; ``all_wrong_penalty`` (``group`` only, binary rewards); ``clip`` (``None`` = no clip);
    ``filter_zero_variance``: zero the advantages of groups whose rewards are all equal.
    """

    estimator: str = "group"
    eps: float = DEFAULT_EPS
    all_wrong_penalty: float = 0.0
    clip: float | None = None
    k: int = 1
    filter_zero_variance: bool = False

    def __post_init__(self):
        nx.check_choice("estimator", self.estimator, ESTIMATORS)
        nx.check_int("k", self.k, minimum=1)
        _check_eps(self.eps, estimator=self.estimator)
        if not self.all_wrong_penalty >= 0:
            raise ValueError(f"all_wrong_penalty must be >= 0, got {self.all_wrong_penalty}")
        if self.all_wrong_penalty and self.estimator != "group":
            raise ValueError(
                f"all_wrong_penalty is only defined for estimator='group', got {self.estimator!r}"
            )
        if self.all_wrong_penalty and self.filter_zero_variance:
            # An all-wrong group is zero-variance: the filter would silently cancel the penalty.
            raise ValueError("all_wrong_penalty > 0 contradicts filter_zero_variance=True; choose one")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {self.clip}")
        if self.estimator != "passk" and self.k != 1:
            raise ValueError(f"k is only used by estimator='passk', got k={self.k} with {self.estimator!r}")


def compute_advantages(
    rewards: Real[ArrayLike, "b m"], *, config: AdvantageConfig
) -> tuple[Float[Array, "b m"], dict[str, Array]]:
    """Advantages ``[B, M]`` by ``config.estimator`` plus metrics.

    Metrics: ``advantages/mean``, ``advantages/abs_mean`` and ``advantages/informative_groups`` (the fraction
    of prompts whose rewards are not all equal). With ``filter_zero_variance`` the other groups get 0.

    >>> a, m = compute_advantages(jnp.array([[1.0, 0.0], [1.0, 1.0]]), config=AdvantageConfig())
    >>> float(m["advantages/informative_groups"])
    0.5
    """
    if not isinstance(config, AdvantageConfig):
        raise ValueError(f"config must be an AdvantageConfig, got {type(config).__name__}")
    r = _rewards(rewards, min_m=2)
    a = get(config.estimator)(r, config)
    informative = informative_groups(r)
    if config.filter_zero_variance:
        a = jnp.where(informative[..., None], a, jnp.zeros_like(a))
    metrics = {
        "advantages/mean": jnp.mean(a),
        "advantages/abs_mean": jnp.mean(jnp.abs(a)),
        "advantages/informative_groups": jnp.mean(informative.astype(a.dtype)),
    }
    return jax.lax.stop_gradient(a), metrics


__all__ = [
    "ESTIMATORS",
    "AdvantageConfig",
    "RewardHistory",
    "binomial_ratio",
    "compute_advantages",
    "get",
    "group_advantages",
    "informative_groups",
    "passk_group_advantages",
    "within_prompt_quantiles",
]
