"""What every experiment program runs around absl: config-override checks before flag parsing, and
:func:`setup` (multi-process start-up, topology log) as the first line of ``main``.

The flags defined here (``--coordinator_address``, ``--num_processes``, ``--process_id``) exist in every
program that imports this module, i.e. every experiment.
"""

from __future__ import annotations

import logging as std_logging
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from cat_jax import reporting, sharding
from experiments import common

_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 in a multi-process run (or set JAX_COORDINATOR_ADDRESS). Not needed on one "
    "host, nor where JAX detects the cluster (multi-host Cloud TPU, SLURM or Open MPI with several tasks).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes",
    None,
    "Processes in a multi-process run (or JAX_NUM_PROCESSES); see --coordinator_address.",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 .. num_processes - 1 (or JAX_PROCESS_ID)."
)
_PLAN = flags.DEFINE_boolean(
    "plan",
    False,
    "Dry run: print the memory plan (parameters, trainable parameters, bytes per device of parameters, "
    "optimizer, activations and KV cache, tokens per step) for the config and the visible devices, then "
    "exit without loading weights or training. Runs themselves refuse a plan that exceeds device memory.",
)
_PLAN_DEVICES = flags.DEFINE_integer(
    "plan_devices", None, "With --plan: plan for this many devices instead of the visible ones."
)
_PLAN_MEMORY_GIB = flags.DEFINE_float(
    "plan_memory_gib", None, "With --plan: memory per device in GiB (e.g. 80 for an H100, 16 for TPU v5e)."
)


def setup() -> dict[str, int | bool]:
    """The first line of every experiment's ``main``: start ``jax.distributed`` when the flags or the
    environment ask for it (:func:`cat_jax.sharding.initialize_distributed`; a no-op on a single process),
    then log and return this process's topology: ``process_index``, ``process_count``, ``local_devices``,
    ``global_devices`` and ``distributed`` (whether ``jax.distributed`` was initialised).

    Must run before anything touches a device. Outside ``app.run`` (flags not parsed) only the environment
    can ask for a multi-process start. In a multi-process run every log line then carries ``[process i/n]``
    (:func:`tag_logs`); metrics, progress bars, reports and plots come from process 0 alone.
    """
    parsed = flags.FLAGS.is_parsed()
    distributed = sharding.initialize_distributed(
        coordinator_address=_COORDINATOR_ADDRESS.value if parsed else None,
        num_processes=_NUM_PROCESSES.value if parsed else None,
        process_id=_PROCESS_ID.value if parsed else None,
    )
    topology = {**sharding.topology(), "distributed": distributed}
    if topology["process_count"] > 1:
        tag_logs(topology["process_index"], topology["process_count"])
    logging.info(
        "process %d of %d: %d local devices, %d global devices (%s); jax.distributed %s",
        topology["process_index"],
        topology["process_count"],
        topology["local_devices"],
        topology["global_devices"],
        jax.default_backend(),
        "initialised" if distributed else "not used (single process)",
    )
    return topology


class _ProcessTag(std_logging.Filter):
    """Prefixes every log record with ``[process i/n]`` (the processes of a run share one terminal or one
    SLURM output file)."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag

    def filter(self, record):
        if not getattr(record, "_process_tagged", False):
            record.msg, record._process_tagged = f"{self.tag} {record.msg}", True
        return True


def tag_logs(process_index: int, process_count: int) -> None:
    """Tag this process's absl / Python log lines with its index (once; :func:`setup` does it in a
    multi-process run)."""
    handler = logging.get_absl_handler().python_handler
    if not any(isinstance(f, _ProcessTag) for f in handler.filters):
        handler.addFilter(_ProcessTag(f"[process {process_index}/{process_count}]"))


def say(*args, **kwargs) -> None:
    """``print`` on the writing process only (process 0; every process of a single-process run)."""
    if reporting.is_writer():
        print(*args, **kwargs)


def command(module: str) -> str:
    """The command line that reran this program (``python -m <module> <its arguments>``), for report files."""
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def without_curves(config: ml_collections.ConfigDict, workdir: str, report: dict) -> dict:
    """A run's printed summary: its results without the (long) curves."""
    return {k: v for k, v in report.items() if k != "eval"}


def program(
    run: Callable[[ml_collections.ConfigDict, str], Any],
    summary: Callable[[ml_collections.ConfigDict, str, Any], Any] = without_curves,
    *,
    workdir_help: str = "Where checkpoints, metrics and results go.",
) -> None:
    """Run ``run(config, workdir)`` as a program: required ``--config`` / ``--workdir`` flags (a mistyped
    ``--config.field`` exits naming the valid fields), then :func:`main_for` under ``absl.app``.

    Flags are defined only here, when a module runs as a program, so experiment modules import together.
    """
    config = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
    workdir = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
    check_config_overrides()
    app.run(main_for(run, summary, lambda: (config.value, workdir.value)))


def main_for(run, summary, arguments: Callable[[], tuple[ml_collections.ConfigDict, str]]):
    """The absl ``main`` of a program: :func:`setup` first, Orbax's per-step INFO logs off, ``run``, then
    print ``summary(config, workdir, result)``."""

    def main(argv):
        del argv
        setup()
        logging.set_verbosity(logging.WARNING)
        config, workdir = arguments()
        if flags.FLAGS.is_parsed() and _PLAN.value:
            say(plan_report(config, _PLAN_DEVICES.value, _PLAN_MEMORY_GIB.value))
            return
        result = run(config, workdir)
        if reporting.is_writer():  # the summary may read report files, which process 0 alone writes
            print(summary(config, workdir, result))

    return main


def plan_report(config: ml_collections.ConfigDict, devices: int | None, memory_gib: float | None) -> str:
    """What ``--plan`` prints: the config's memory plan (``experiments.common.plan_for``) as a table."""
    capacity = None if memory_gib is None else int(memory_gib * 2**30)
    planned = common.plan_for(config, devices=devices, capacity_bytes=capacity)
    return planned.format()


def check_config_overrides(argv: Sequence[str] | None = None) -> None:
    """Exit naming the valid fields when a ``--config.a.b=value`` flag names a field the config lacks.

    ml_collections would otherwise stop flag parsing with a bare ``AttributeError: "'b'"`` and a traceback.
    A config file that cannot be loaded is left to absl, which reports it itself.
    """
    argv = list(sys.argv if argv is None else argv)
    spec = next((a.partition("=")[2] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    keys = [a[len("--config.") :].partition("=")[0] for a in argv if a.startswith("--config.")]
    if not spec or not keys:
        return
    try:
        config = common.load_config(spec)
    except Exception:
        return
    for key in keys:
        node, path = config, []
        for part in key.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = f" of {'.'.join(path)!r}" if path else ""
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise SystemExit(f"--config.{key}: config has no field {key!r}; valid fields{where}: {valid}")
            node, path = node[part], [*path, part]
