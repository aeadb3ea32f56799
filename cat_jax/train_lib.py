"""Training infrastructure: train state, optimizers, jitted steps, Orbax checkpoints, preemption, metrics.

Everything an experiment needs around a ``loss_fn(params, batch, rng) -> (loss, metrics)``:

* :class:`TrainState`: a pytree (step, params, opt_state, rng key data, extra state such as a reward
  history);
* :func:`make_optimizer`: AdamW with global-norm clipping, constant / linear / cosine schedules with warm-up
  and gradient accumulation through ``optax.MultiSteps`` (the schedule advances once per optimizer step);
* :func:`make_train_step`: ``train_step(state, batch) -> (state, metrics)`` with
  ``rng = fold_in(key, step)`` so resumed runs are exact, and a non-finite guard that keeps the state;
* :class:`Checkpointer`: Orbax ``CheckpointManager`` with auto-resume, keep-last-k plus keep-best-by-metric,
  and fallback to the previous checkpoint when the newest cannot be read;
* :class:`PreemptionGuard`: SIGTERM/SIGINT set a flag; the loop saves and exits cleanly;
* :class:`MetricWriter`: JSON lines (truncated to the restored step on resume, so a resumed log equals an
  uninterrupted one) and TensorBoard event files when tensorboardX is installed; :func:`train_loop` ties
  them together with a tqdm progress bar.

Mesh and sharding helpers live in :mod:`cat_jax.sharding`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from jaxtyping import Array, PyTree

from cat_jax import numerics as nx

SCHEDULES = ("constant", "linear", "cosine")


# ----------------------------------------------------------------------------- state and optimizer


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


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation):
    """``train_step(state, batch) -> (state, metrics)`` for ``loss_fn(params, batch, rng) -> (loss, aux)``.

    Undecorated: jit it once at the boundary (``jax.jit(step, donate_argnums=0)``). When the loss or the
    gradient is not finite the returned state equals the input state (nothing is applied) and
    ``metrics["train/finite"]`` is 0, so the host loop can stop with the step number and the last good
    state intact even with donated buffers.
    """

    def train_step(state: TrainState, batch):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, state.step_key()
        )
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


# ----------------------------------------------------------------------------- checkpoints


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    """Create ``workdir`` and prove it is writable before any training starts."""
    path = pathlib.Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(
            f"workdir {str(path)!r} is not writable ({e.strerror}); choose another --workdir"
        ) from e
    return path


class Checkpointer:
    """Orbax checkpoints of a :class:`TrainState` in ``workdir/checkpoints``, written atomically.

    Keeps the newest ``keep`` checkpoints and, if ``best_metric`` is set, also the ``keep_best`` best by that
    metric (``best_mode`` "min" or "max"). :meth:`restore` returns the newest readable checkpoint and warns
    about every newer one it had to skip.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        keep: int = 2,
        best_metric: str | None = None,
        best_mode: str = "min",
        keep_best: int = 1,
    ):
        nx.check_int("keep", keep, minimum=1)
        nx.check_choice("best_mode", best_mode, ("min", "max"))
        self.directory = check_workdir(workdir) / "checkpoints"
        policies = [ocp.checkpoint_managers.LatestN(n=keep)]
        if best_metric is not None:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: float(m[best_metric]),
                    reverse=best_mode == "min",
                    n=keep_best,
                )
            )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            create=True,
        )
        self.best_metric = best_metric
        self.manager = ocp.CheckpointManager(self.directory.absolute(), options=options)

    def save(self, state: TrainState, metrics: Mapping[str, Any] | None = None) -> int:
        """Save ``state`` under its step (overwriting nothing) and wait until it is on disk."""
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return step
        metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics)
        self.manager.wait_until_finished()
        return step

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, template: TrainState) -> TrainState | None:
        """The newest readable checkpoint shaped like ``template`` (placed on its shardings), or None."""
        self.manager.reload()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in reversed(self.steps()):
            try:
                return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # any unreadable checkpoint falls back to an older one
                warnings.warn(
                    f"checkpoint at step {step} in {self.directory} is unreadable "
                    f"({type(e).__name__}: {str(e)[:200]}); falling back to an earlier one",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return None

    def close(self):
        self.manager.close()


# ----------------------------------------------------------------------------- preemption and metrics


class PreemptionGuard:
    """Context manager: SIGTERM/SIGINT set :attr:`stop` instead of killing the process mid-write."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.stop = False
        self.received: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        self.stop, self.received = True, signum

    def __enter__(self):
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        return False


def _to_python(v):
    v = np.asarray(jax.device_get(v))
    return v.item() if v.ndim == 0 else v.tolist()


class MetricWriter:
    """``{"step": s, **metrics}`` JSON lines in ``workdir/metrics.jsonl``; TensorBoard scalars if available.

    TensorBoard: when ``tensorboardX`` is importable (it needs no TensorFlow; it is in the ``dev`` extra) and
    ``tensorboard`` is true, every scalar metric also goes to an event file ``workdir/events.out.tfevents.*``
    (view with ``tensorboard --logdir workdir``); otherwise only the JSON lines are written, silently.
    Non-scalar metrics are JSON-only. Both logs are written synchronously and flushed at every :meth:`write`,
    so an interrupted run loses nothing it logged and needs no ``close``.

    Resume without duplicates: records at steps >= :attr:`purge_step` (``resume_step + 1``, or 0 for a fresh
    run, which logs an evaluation at step 0 again) will be written again, so the JSON log drops them here and
    this writer's event file starts with ``SessionLog.START`` at that step, the marker (``SummaryWriter``'s
    ``purge_step``) on which TensorBoard drops the older files' events at that step or later.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        resume_step: int = 0,
        filename: str = "metrics.jsonl",
        tensorboard: bool = True,
    ):
        nx.check_int("resume_step", resume_step, minimum=0)
        self.purge_step = resume_step + 1 if resume_step > 0 else 0
        self.directory = check_workdir(workdir)
        self.path = self.directory / filename
        if self.path.exists():  # drop lines a resumed run will write again, so the log has no duplicates
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] < self.purge_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._tbx = _import_tensorboardx() if tensorboard else None
        self._events = None  # opened on the first write: a writer used only to read() leaves no event file

    @property
    def tensorboard(self) -> bool:
        """Whether scalars also go to TensorBoard event files (requested and tensorboardX importable)."""
        return self._tbx is not None

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tbx is not None:
            self._write_events(record)

    def _write_events(self, record: dict) -> None:
        summary, events_writer, event_pb2, summary_pb2 = self._tbx
        if self._events is None:
            # tensorboardX names event files by the second and opens them with "wb": a resume within the same
            # second would overwrite the earlier file. The nanosecond suffix keeps names unique and in the
            # order TensorBoard reads them (lexicographic).
            prefix = str(self.directory / "events")
            self._events = events_writer(prefix, filename_suffix=f".{time.time_ns()}")
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._events.write_event(
                event_pb2.Event(wall_time=time.time(), step=self.purge_step, session_log=start)
            )
        values = [
            summary.scalar(k, float(v)).value[0]
            for k, v in record.items()
            if k != "step" and isinstance(v, int | float)  # bools are ints; lists and strings stay JSON-only
        ]
        if values:
            event = event_pb2.Event(
                wall_time=time.time(), step=record["step"], summary=summary_pb2.Summary(value=values)
            )
            self._events.write_event(event)
        self._events.flush()

    def close(self) -> None:
        """Close the event file (the JSON log is closed after every write)."""
        if self._events is not None:
            self._events.close()
            self._events = None

    def read(self) -> list[dict]:
        return read_metrics(self.directory, self.path.name)


def read_metrics(workdir: str | os.PathLike, filename: str = "metrics.jsonl") -> list[dict]:
    """The JSON-lines log of a run, without side effects (a new :class:`MetricWriter` truncates it)."""
    path = pathlib.Path(workdir) / filename
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _import_tensorboardx():
    """tensorboardX's synchronous pieces, or None when it is not installed (TensorBoard is optional)."""
    try:
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
    except ImportError:
        return None
    return summary, EventsWriter, event_pb2, summary_pb2


@dataclasses.dataclass
class LoopResult:
    state: TrainState
    metrics: dict[str, float]
    preempted: bool
    resumed_from: int


def train_loop(
    state: TrainState,
    train_step: Callable,
    batches: Callable[[int], Any] | Iterator,
    *,
    num_steps: int,
    workdir: str | os.PathLike,
    checkpoint_every: int = 100,
    log_every: int = 1,
    checkpointer: Checkpointer | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    eval_every: int = 0,
    eval_fn: Callable[[TrainState], Mapping[str, Any]] | None = None,
) -> LoopResult:
    """Run ``train_step`` until ``state.step == num_steps`` with auto-resume, checkpoints and metrics.

    ``batches(step) -> batch`` must be a function of the step (so a resumed run sees the same data); an
    iterator is accepted for runs that never resume. ``train_step`` should already be jitted. On SIGTERM or
    SIGINT the current state is saved and the loop returns with ``preempted=True``; a non-finite loss raises
    ``FloatingPointError`` naming the step, after which the last checkpoint is still the last good state.
    With ``eval_fn`` and ``eval_every > 0``, ``eval_fn(state)`` runs at step 0, every ``eval_every`` steps
    and at the end; its metrics go to the log as ``eval/<name>`` records (a learning curve on held-out data).
    """
    nx.check_int("num_steps", num_steps, minimum=0)
    nx.check_int("checkpoint_every", checkpoint_every, minimum=1)
    nx.check_int("eval_every", eval_every, minimum=0)
    if eval_every and eval_fn is None:
        raise ValueError("eval_every > 0 needs an eval_fn(state) -> metrics")
    own_checkpointer = checkpointer is None
    checkpointer = checkpointer or Checkpointer(workdir)
    restored = checkpointer.restore(state)
    if restored is not None:
        state = restored
    start = int(jax.device_get(state.step))
    writer = MetricWriter(workdir, resume_step=start)
    last: dict[str, float] = {}
    preempted = False
    bar = tqdm.tqdm(total=num_steps, initial=start, disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()

    def run_eval(step: int):
        if eval_every and (step % eval_every == 0 or step == num_steps):
            writer.write(step, {f"eval/{k}": v for k, v in eval_fn(state).items()})

    try:
        with PreemptionGuard() as guard:
            step = start
            if start == 0:
                run_eval(0)
            while step < num_steps:
                batch = batches(step) if callable(batches) else next(batches)
                state, metrics = train_step(state, batch)
                if not bool(jax.device_get(metrics["train/finite"])):
                    raise FloatingPointError(
                        f"non-finite loss or gradient at step {step} (loss={float(metrics['loss/total'])}); "
                        f"the state was not updated and the last checkpoint is intact"
                    )
                step += 1  # a non-finite step raised above, so the state advanced by exactly one
                if step % log_every == 0 or step == num_steps:
                    last = {k: _to_python(v) for k, v in metrics.items() if k != "train/finite"}
                    writer.write(step, last)
                    if on_step is not None:
                        on_step(step, last)
                    bar.set_postfix(
                        loss=f"{last['loss/total']:.4g}",
                        sps=f"{(step - start) / (time.perf_counter() - t0):.2g}",
                    )
                bar.update(1)
                run_eval(step)
                if step % checkpoint_every == 0 or step == num_steps:
                    checkpointer.save(state, _best_metrics(checkpointer, last))
                if guard.stop:
                    checkpointer.save(state, _best_metrics(checkpointer, last))
                    preempted = True
                    break
    finally:
        bar.close()
        if own_checkpointer:
            checkpointer.close()
    return LoopResult(state=state, metrics=last, preempted=preempted, resumed_from=start)


def _best_metrics(checkpointer: Checkpointer, metrics: Mapping[str, Any]):
    if checkpointer.best_metric is None or checkpointer.best_metric not in metrics:
        return None
    return {checkpointer.best_metric: metrics[checkpointer.best_metric]}
