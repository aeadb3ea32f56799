"""Orbax checkpoints of a :class:`~cat_jax.train_lib.state.TrainState` and clean exits on preemption.

* :func:`check_workdir`: create the run folder and prove it is writable before any training starts;
* :class:`Checkpointer`: Orbax ``CheckpointManager`` with auto-resume, keep-last-k plus keep-best-by-metric,
  and fallback to the previous checkpoint when the newest cannot be read. Every process calls ``save`` and
  ``restore``: Orbax coordinates the processes of a multi-host run itself;
* :class:`PreemptionGuard`: SIGTERM/SIGINT set a flag; the loop saves and exits cleanly.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from cat_jax import numerics as nx
from cat_jax.train_lib.state import TrainState


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    """Create ``workdir`` and prove it is writable before any training starts.

    The probe file is named after the host and process (:func:`write_probe_name`), so the processes of a
    multi-host run sharing one workdir never remove each other's probe.
    """
    path = pathlib.Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / write_probe_name()
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(
            f"workdir {str(path)!r} is not writable ({e.strerror}); choose another --workdir"
        ) from e
    return path


def write_probe_name() -> str:
    """The name of :func:`check_workdir`'s probe file in this process."""
    return f".write_probe.{socket.gethostname()}.{os.getpid()}"


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
