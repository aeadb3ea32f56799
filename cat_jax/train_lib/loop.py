"""The host training loop: auto-resume, steps, metrics, evaluations, checkpoints, preemption."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import tqdm
from absl import logging

from cat_jax import numerics as nx
from cat_jax import sharding
from cat_jax.train_lib.checkpoints import Checkpointer, PreemptionGuard
from cat_jax.train_lib.metrics import MetricWriter, to_python
from cat_jax.train_lib.state import TrainState


@dataclasses.dataclass
class LoopResult:
    state: TrainState
    metrics: dict[str, float]
    preempted: bool
    resumed_from: int
    stopped_at: int | None = None  # the step where ``stop_fn`` ended the run early (None: it did not)


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
    stop_fn: Callable[[Mapping[str, Any]], bool] | None = None,
) -> LoopResult:
    """Run ``train_step`` until ``state.step == num_steps`` with auto-resume, checkpoints and metrics.

    ``batches(step) -> batch`` must be a function of the step (so a resumed run sees the same data); an
    iterator is accepted for runs that never resume. ``train_step`` should already be jitted. On SIGTERM or
    SIGINT the current state is saved and the loop returns with ``preempted=True``; a non-finite loss raises
    ``FloatingPointError`` naming the step, after which the last checkpoint is still the last good state.
    With ``eval_fn`` and ``eval_every > 0``, ``eval_fn(state)`` runs at step 0, every ``eval_every`` steps
    and at the end; its metrics go to the log as ``eval/<name>`` records (a learning curve on held-out data).
    ``stop_fn(eval_metrics) -> bool``: after an evaluation at a step > 0, True ends the run there (the state
    is checkpointed and ``stopped_at`` set): e.g. a warm-up trained until it reaches a target accuracy.

    Multi-process runs: every process runs the loop (steps, evaluations, checkpoints: all collective), and
    only process 0 writes the metric log and shows the progress bar (:func:`~.metrics.is_writer`). After
    every step the processes agree on the preemption flag (:func:`cat_jax.sharding.any_process`, one tiny
    all-gather), so a SIGTERM that reaches any one of them stops all of them after the same step, with one
    checkpoint of that step that every process took part in.
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
    bar = tqdm.tqdm(
        total=num_steps, initial=start, disable=not (progress and writer.active), dynamic_ncols=True
    )
    t0 = time.perf_counter()

    def run_eval(step: int) -> bool:
        """Evaluate when due; whether ``stop_fn`` asks to end the run here."""
        if eval_every and (step % eval_every == 0 or step == num_steps):
            measured = eval_fn(state)
            writer.write(step, {f"eval/{k}": v for k, v in measured.items()})
            return step > 0 and stop_fn is not None and bool(stop_fn(measured))
        return False

    stopped_at = None

    try:
        with PreemptionGuard() as guard:
            step = start
            if start == 0:
                run_eval(0)
            elif stop_fn is not None and eval_every and start % eval_every == 0 and start < num_steps:
                # A run stopped (and checkpointed) here but interrupted before its caller finished: the
                # stop stands (the evaluation is logged already).
                stopped_at = start if stop_fn(eval_fn(state)) else None
            while step < num_steps and stopped_at is None:
                batch = batches(step) if callable(batches) else next(batches)
                state, metrics = train_step(state, batch)
                if not bool(jax.device_get(metrics["train/finite"])):
                    raise FloatingPointError(
                        f"non-finite loss or gradient at step {step} (loss={float(metrics['loss/total'])}); "
                        f"the state was not updated and the last checkpoint is intact"
                    )
                step += 1  # a non-finite step raised above, so the state advanced by exactly one
                if step % log_every == 0 or step == num_steps:
                    last = {k: to_python(v) for k, v in metrics.items() if k != "train/finite"}
                    writer.write(step, last)
                    if on_step is not None:
                        on_step(step, last)
                    bar.set_postfix(
                        loss=f"{last['loss/total']:.4g}",
                        sps=f"{(step - start) / (time.perf_counter() - t0):.2g}",
                    )
                bar.update(1)
                stop = run_eval(step)
                if step % checkpoint_every == 0 or step == num_steps or stop:
                    checkpointer.save(state, _best_metrics(checkpointer, last))
                if stop:
                    stopped_at = step
                    break
                if sharding.any_process(guard.stop):
                    checkpointer.save(state, _best_metrics(checkpointer, last))
                    preempted = True
                    cause = f"signal {guard.received} here" if guard.stop else "a signal to another process"
                    logging.warning(
                        "process %d: preempted (%s) after step %d; checkpoint saved, exiting",
                        jax.process_index(),
                        cause,
                        step,
                    )
                    break
    finally:
        bar.close()
        if own_checkpointer:
            checkpointer.close()
    return LoopResult(
        state=state, metrics=last, preempted=preempted, resumed_from=start, stopped_at=stopped_at
    )


def _best_metrics(checkpointer: Checkpointer, metrics: Mapping[str, Any]):
    if checkpointer.best_metric is None or checkpointer.best_metric not in metrics:
        return None
    return {checkpointer.best_metric: metrics[checkpointer.best_metric]}
