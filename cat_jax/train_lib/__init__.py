"""Training infrastructure around a ``loss_fn(params, batch, rng) -> (loss, metrics)``, one module per job.

* :mod:`~cat_jax.train_lib.state`: :class:`TrainState` (a pytree: step, params, opt_state, rng key data,
  extra state such as a reward history), :class:`OptimizerConfig` / :func:`make_optimizer` (AdamW, global-norm
  clipping, schedules with warm-up, gradient accumulation) and :func:`make_train_step` /
  :func:`guarded_update` (``rng = fold_in(key, step)`` so resumes are exact; a non-finite guard keeps the
  state);
* :mod:`~cat_jax.train_lib.checkpoints`: :class:`Checkpointer` (Orbax, auto-resume, keep-last-k and
  keep-best, fallback past an unreadable checkpoint), :func:`check_workdir`, :class:`PreemptionGuard`
  (SIGTERM/SIGINT -> save and exit cleanly);
* :mod:`~cat_jax.train_lib.metrics`: :class:`MetricWriter` (JSON lines and TensorBoard event files, truncated
  to the restored step on resume, written by process 0 only), :func:`read_metrics`;
* :mod:`~cat_jax.train_lib.loop`: :func:`train_loop` ties them together with a progress bar.

Every public name is importable from here (``from cat_jax import train_lib; train_lib.TrainState``). Mesh
and sharding helpers, and multi-process start-up, live in :mod:`cat_jax.sharding`.
"""

from cat_jax.train_lib.checkpoints import Checkpointer, PreemptionGuard, check_workdir, write_probe_name
from cat_jax.train_lib.loop import LoopResult, train_loop
from cat_jax.train_lib.metrics import MetricWriter, is_writer, read_metrics, to_python
from cat_jax.train_lib.state import (
    SCHEDULES,
    LossFn,
    OptimizerConfig,
    TrainState,
    guarded_update,
    make_optimizer,
    make_schedule,
    make_train_step,
    with_frozen,
)

__all__ = [
    "SCHEDULES",
    "Checkpointer",
    "LoopResult",
    "LossFn",
    "MetricWriter",
    "OptimizerConfig",
    "PreemptionGuard",
    "TrainState",
    "check_workdir",
    "guarded_update",
    "is_writer",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "read_metrics",
    "to_python",
    "train_loop",
    "with_frozen",
    "write_probe_name",
]
