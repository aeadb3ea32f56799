"""The metric log of a run: JSON lines, and TensorBoard event files when tensorboardX is installed.

Written by process 0 only (:func:`is_writer`): in a multi-process run every process computes the same
replicated metrics, and one log per run is what readers (:func:`read_metrics`, TensorBoard) expect.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Mapping
from typing import Any

from cat_jax import numerics as nx
from cat_jax.sharding import is_writer, to_host
from cat_jax.train_lib.checkpoints import check_workdir


def to_python(v):
    """A metric value as a JSON-ready Python scalar or nested list (gathered if sharded across processes)."""
    v = to_host(v)
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

    One writer per run: ``active`` (default :func:`is_writer`, i.e. process 0) decides whether this process
    writes; an inactive writer creates, truncates and writes nothing, and its :meth:`read` reads what the
    active one wrote.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        resume_step: int = 0,
        filename: str = "metrics.jsonl",
        tensorboard: bool = True,
        active: bool | None = None,
    ):
        nx.check_int("resume_step", resume_step, minimum=0)
        self.purge_step = resume_step + 1 if resume_step > 0 else 0
        self.active = is_writer() if active is None else bool(active)
        self.directory = check_workdir(workdir) if self.active else pathlib.Path(workdir)
        self.path = self.directory / filename
        self._tbx = _import_tensorboardx() if tensorboard and self.active else None
        self._events = None  # opened on the first write: a writer used only to read() leaves no event file
        # Drop the lines a resumed run will write again, so the log has no duplicates.
        if self.active and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] < self.purge_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))

    @property
    def tensorboard(self) -> bool:
        """Whether scalars also go to TensorBoard event files (requested and tensorboardX importable)."""
        return self._tbx is not None

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one record (and its scalars to TensorBoard); a no-op on an inactive writer."""
        if not self.active:
            return
        record = {"step": int(step), **{k: to_python(v) for k, v in metrics.items()}}
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
    # Importing any part of tensorboardX runs its package __init__, whose writer module imports torch when
    # torch is installed, only to accept torch tensors (never passed here): seconds of start-up in every
    # run. A torch not imported yet is hidden for the duration (and importable again afterwards).
    hide_torch = "torch" not in sys.modules
    if hide_torch:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
    except ImportError:
        return None
    finally:
        if hide_torch and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return summary, EventsWriter, event_pb2, summary_pb2
