"""Train state, optimizer and the jitted step's body: what changes during training and how it changes.

* :class:`TrainState`: a pytree (step, params, opt_state, rng key data, extra state such as a reward
  history);
* :func:`make_optimizer`: AdamW with global-norm clipping, constant / linear / cosine schedules with warm-up
  and gradient accumulation through ``optax.MultiSteps`` (the schedule advances once per optimizer step);
* :func:`make_train_step`: ``train_step(state, batch) -> (state, metrics)`` with
  ``rng = fold_in(key, step)`` so resumed runs are exact, and a non-finite guard (:func:`guarded_update`)
  that keeps the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree

from cat_jax import numerics as nx

SCHEDULES = ("constant", "linear", "cosine")


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree (checkpointed whole)."""

    # Leaves are typed loosely: pytree utilities rebuild this class with ShapeDtypeStructs, shardings, etc.
    step: Any  # int32 scalar
    params: PyTree
    opt_state: PyTree
    key_data: Any  # raw uint32 key data: plain arrays checkpoint everywhere, typed keys do not
    extra: PyTree = None

    @classmethod
    def create(cls, params: PyTree, tx: optax.GradientTransformation, seed: int, extra: PyTree = None):
        """Fresh state at step 0 with ``tx.init(params)`` and the key of ``seed``."""
        key = jax.random.key(nx.check_int("seed", seed, minimum=0))
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            key_data=jax.random.key_data(key),
            extra=extra,
        )

    def step_key(self) -> Array:
        """``fold_in(base_key, step)``: the step's randomness depends only on the seed and the step."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.key_data), self.step)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a learning-rate schedule, global-norm clipping and gradient accumulation."""

    lr: float = 1e-3
    schedule: str = "constant"  # constant | linear (decay to 0) | cosine (decay to 0)
    total_steps: int = 0  # optimizer steps the schedule spans; required by linear and cosine
    warmup_steps: int = 0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = 1.0
    accum_steps: int = 1  # micro-batches per optimizer step

    def __post_init__(self):
        nx.check_choice("schedule", self.schedule, SCHEDULES)
        nx.check_int("accum_steps", self.accum_steps, minimum=1)
        nx.check_int("warmup_steps", self.warmup_steps, minimum=0)
        nx.check_int("total_steps", self.total_steps, minimum=0)
        if self.schedule != "constant" and self.total_steps <= self.warmup_steps:
            raise ValueError(
                f"schedule={self.schedule!r} needs total_steps > warmup_steps, got total_steps="
                f"{self.total_steps}, warmup_steps={self.warmup_steps}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")


def make_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """Learning rate per optimizer step: linear warm-up, then constant, linear-to-0 or cosine-to-0."""
    decay_steps = max(cfg.total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(cfg.lr, 0.0, decay_steps)
    else:
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps)
    if cfg.warmup_steps == 0:
        return main
    warm = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    return optax.join_schedules([warm, main], [cfg.warmup_steps])


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """``clip_by_global_norm -> adamw(schedule)``, wrapped in ``MultiSteps`` when accumulating."""
    parts = [] if cfg.clip_norm is None else [optax.clip_by_global_norm(cfg.clip_norm)]
    parts.append(
        optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    )
    tx = optax.chain(*parts)
    if cfg.accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accum_steps).gradient_transformation()
    return tx


LossFn = Callable[[PyTree, Any, Array], tuple[Array, Mapping[str, Array]]]


def with_frozen(params: PyTree, frozen: PyTree = None) -> PyTree:
    """What a logits function reads: ``params``, or ``(params, frozen)`` when a frozen part exists.

    The LoRA contract (:func:`cat_jax.models.lora.decoder` takes ``(adapters, base)``): the state holds and
    checkpoints only what is trained, the frozen base is an argument of every step, never donated or saved.
    """
    return params if frozen is None else (params, frozen)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation):
    """``train_step(state, batch, frozen=None) -> (state, metrics)`` for ``loss_fn(params, batch, rng)``.

    ``loss_fn`` returns ``(loss, aux)`` and receives :func:`with_frozen` of the state's parameters, so with
    ``frozen`` (e.g. a LoRA base) it differentiates the trained part only. Undecorated: jit it once at the
    boundary (``jax.jit(step, donate_argnums=0)``; ``frozen`` is not donated). When the loss or the gradient
    is not finite the returned state equals the input state (nothing is applied) and
    ``metrics["train/finite"]`` is 0, so the host loop can stop with the step number and the last good
    state intact even with donated buffers.
    """

    def train_step(state: TrainState, batch, frozen: PyTree = None):
        (loss, metrics), grads = jax.value_and_grad(
            lambda p, b, key: loss_fn(with_frozen(p, frozen), b, key), has_aux=True
        )(state.params, batch, state.step_key())
        new_state, update_metrics = guarded_update(state, tx, loss, grads)
        return new_state, {**metrics, **update_metrics}

    return train_step


def guarded_update(
    state: TrainState, tx: optax.GradientTransformation, loss: Array, grads: PyTree, **replace
) -> tuple[TrainState, dict[str, Array]]:
    """Apply ``grads`` unless the loss or the gradient is non-finite (then return ``state`` unchanged).

    ``replace`` sets further fields of the new state (e.g. ``extra``) under the same finite condition.
    Metrics: ``loss/total``, ``train/grad_norm``, ``train/finite``.
    """
    with jax.named_scope("optimizer"):  # profiles (benchmarks/step_profile.py) group ops by this scope
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        fields = {"params": params, "opt_state": opt_state, **replace}
        new_state = state.replace(
            step=jnp.where(finite, state.step + 1, state.step),
            **{k: keep(v, getattr(state, k)) for k, v in fields.items()},
        )
    return new_state, {"loss/total": loss, "train/grad_norm": grad_norm, "train/finite": finite}
