"""Device meshes and sharding rules: the same training code on 1 device, a host of 8, or a pod.

The mesh has two axes, ``("data", "fsdp")``. Batches are split along their leading axis over both axes
(every device sees a different slice of the batch); parameters are replicated, or with ``fsdp=True`` each
large array is split along its largest divisible axis over ``"fsdp"`` (ZeRO-3 / FSDP style: XLA all-gathers
them where needed). Computation stays written for automatic sharding: ``jax.jit`` on sharded inputs does
the rest.

Multi-process (TPU pod slices, GPU clusters): every process calls :func:`initialize_distributed` first,
before anything touches a device (the experiments do it in ``experiments.cli.setup``). On a multi-host Cloud
TPU slice, under SLURM or Open MPI with several tasks, JAX detects the cluster and it needs no arguments;
elsewhere pass ``coordinator_address="host0:1234"``, ``num_processes`` and ``process_id`` (or set
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``), then build the mesh over
``jax.devices()`` as usual. :func:`topology` says what this process sees.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from cat_jax import numerics as nx

DATA_AXES = ("data", "fsdp")


# Environment variables that ask for (JAX_*) or reveal (SLURM, Open MPI, Cloud TPU) a multi-process run.
CLUSTER_ENV_VARS = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
)


def is_writer() -> bool:
    """Whether this process writes logs, progress and reports: process 0 of a multi-process run (or the only
    one). Checkpoints are not concerned: every process takes part in Orbax's saves and restores."""
    return jax.process_index() == 0


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """``jax.distributed.initialize`` when asked or when JAX can detect a multi-process cluster; returns
    whether it ran (False: a single-process run, nothing done).

    Asked: any argument given, or ``JAX_COORDINATOR_ADDRESS`` set; missing ``num_processes`` /
    ``process_id`` are read from ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, then left to JAX's cluster
    detection. Detected: SLURM or Open MPI with more than one task, or a Cloud TPU slice with several
    workers. Must run before anything touches a device (JAX raises ``RuntimeError`` otherwise); a second
    call after a successful one is a no-op that returns True.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ
    num_processes = _int_or_env("num_processes", num_processes, "JAX_NUM_PROCESSES", minimum=1)
    process_id = _int_or_env("process_id", process_id, "JAX_PROCESS_ID", minimum=0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, got {process_id}")
    asked = coordinator_address or num_processes is not None or process_id is not None
    asked = asked or "JAX_COORDINATOR_ADDRESS" in env
    tasks = (env.get(k, "") for k in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
    detected = any(n.isdigit() and int(n) > 1 for n in tasks)
    detected = detected or env.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0
    if not (asked or detected):
        return False
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def _int_or_env(name: str, value: int | None, var: str, *, minimum: int) -> int | None:
    if value is None and os.environ.get(var):
        try:
            value = int(os.environ[var])
        except ValueError:
            raise ValueError(f"{var} must be an integer, got {os.environ[var]!r}") from None
    return None if value is None else nx.check_int(name, value, minimum=minimum)


def topology() -> dict[str, int]:
    """This process's place in the run: ``process_index``, ``process_count``, ``local_devices`` (its own)
    and ``global_devices`` (every process's). Touches the devices: call after
    :func:`initialize_distributed`."""
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
    }


def make_mesh(num_devices: int | None = None, *, fsdp: int = 1) -> Mesh:
    """A ``(data, fsdp)`` mesh over the first ``num_devices`` devices (default: all of them).

    Built with ``jax.sharding.Mesh`` (automatic axis types), not ``jax.make_mesh``, whose default explicit
    axes in jax 0.10 would change the semantics of code written for automatic sharding.
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else nx.check_int("num_devices", num_devices, minimum=1)
    if n > len(devices):
        raise ValueError(f"num_devices={n} but only {len(devices)} devices are visible")
    fsdp = nx.check_int("fsdp", fsdp, minimum=1)
    if n % fsdp:
        raise ValueError(f"fsdp={fsdp} must divide the number of devices ({n})")
    return Mesh(np.asarray(devices[:n]).reshape(n // fsdp, fsdp), DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Place a host batch on the mesh, split along axis 0; the batch size must divide evenly."""
    size = mesh.devices.size

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % size:
            raise ValueError(
                f"batch arrays need a leading axis divisible by the {size} devices of the mesh, got shape "
                f"{x.shape}; change the batch size"
            )
        return jax.device_put(x, batch_sharding(mesh))

    return jax.tree.map(put, batch)


def param_shardings(params: PyTree, mesh: Mesh, *, fsdp: bool = False, min_size: int = 2**14) -> PyTree:
    """Shardings for ``params``: replicated, or (``fsdp``) large arrays split over the ``fsdp`` axis.

    An array is split along its largest axis divisible by the fsdp axis size if it has at least ``min_size``
    elements; small arrays (norm scales, biases) stay replicated: gathering them costs more than it saves.
    """
    k = mesh.shape["fsdp"]

    def rule(x):
        shape = getattr(x, "shape", ())
        if not fsdp or k == 1 or math.prod(shape) < min_size:
            return replicated(mesh)
        axes = sorted(range(len(shape)), key=lambda i: -shape[i])
        for i in axes:
            if shape[i] % k == 0:
                spec = [None] * len(shape)
                spec[i] = "fsdp"
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated(mesh)

    return jax.tree.map(rule, params)


def place(tree: PyTree, shardings: PyTree) -> PyTree:
    """``device_put`` every leaf onto its sharding."""
    return jax.tree.map(jax.device_put, tree, shardings)
