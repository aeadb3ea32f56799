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

In such a run every array of the mesh is global: each process holds the shards of its own devices. The
helpers below are what a multi-controller program needs around that, and reduce to the plain single-process
operations on one process: :func:`process_block` (which contiguous block of every batch this process feeds),
:func:`global_batch` (process-local rows -> one global array), :func:`shard_batch` / :func:`place` (a value
every process holds whole -> its shards), :func:`to_host` (a global array -> the same numpy array on every
process), :func:`any_process` and :func:`writer_value` (one decision for all processes).
"""

from __future__ import annotations

import contextlib
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
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
    """Place a host batch on the mesh, split along axis 0; the batch size must divide evenly.

    Every process passes the whole batch (the same on each) and puts only its own devices' rows; for a
    batch each process builds only its part of, see :func:`global_batch`.
    """
    size = mesh.devices.size
    put = lambda x: _put(_rows(x, size, "batch arrays", "devices of the mesh"), batch_sharding(mesh))
    return jax.tree.map(put, batch)


def _rows(x, size: int, what: str, devices: str) -> np.ndarray:
    """``x`` as numpy, its leading axis checked to split evenly over ``size`` devices."""
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % size:
        raise ValueError(
            f"{what} need a leading axis divisible by the {size} {devices}, got shape {x.shape}; change the "
            "batch size"
        )
    return x


def _put(x, sharding: jax.sharding.Sharding) -> jax.Array:
    """``device_put`` of a value every process holds whole; across processes each puts only its shards
    (``device_put`` would first compare the value across processes, a collective per array)."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def process_block(mesh: Mesh) -> tuple[int, int]:
    """``(index, count)``: this process feeds block ``index`` of ``count`` equal, contiguous blocks of every
    batch split over ``mesh`` (:func:`batch_sharding`); ``(0, 1)`` on a single process.

    The mesh must hold every process's devices, as many of each, each process's contiguous in the mesh's
    order (a mesh over ``jax.devices()``, as :func:`make_mesh` builds, is).
    """
    flat = list(mesh.devices.flat)
    mine = [i for i, d in enumerate(flat) if d.process_index == jax.process_index()]
    processes = {d.process_index for d in flat}
    if len(processes) != jax.process_count() or not mine:
        raise ValueError(
            f"the mesh spans processes {sorted(processes)} of {jax.process_count()}: a multi-process run "
            "needs a mesh over every process's devices (mesh.devices = 0, all of them)"
        )
    per = len(mine)
    if mine != list(range(mine[0], mine[0] + per)) or mine[0] % per or len(flat) != per * len(processes):
        raise ValueError(
            "every process must hold an equal, contiguous block of the mesh's devices (build it over "
            "jax.devices() in order: sharding.make_mesh)"
        )
    return mine[0] // per, len(flat) // per


def global_batch(local: PyTree, mesh: Mesh) -> PyTree:
    """One global array per leaf from each process's block of the batch (:func:`process_block`), split
    along axis 0 over the mesh: ``jax.make_array_from_process_local_data``. On one process the local batch
    is the whole batch (:func:`shard_batch`)."""
    if jax.process_count() == 1:
        return shard_batch(local, mesh)
    _, count = process_block(mesh)
    size = mesh.devices.size // count  # this process's devices

    def put(x):
        x = _rows(x, size, "process-local batch arrays", "devices of this process")
        shape = (x.shape[0] * count, *x.shape[1:])
        return jax.make_array_from_process_local_data(batch_sharding(mesh), x, shape)

    return jax.tree.map(put, local)


def to_host(x) -> np.ndarray:
    """A (possibly global) array as numpy, the whole array on every process: sharded across processes,
    it is gathered (``process_allgather``); otherwise read as it is."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (a collective every process must call; on one process,
    ``flag``): e.g. a preemption signal that reached one process stops them all at the same step."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


@contextlib.contextmanager
def writer_first(name: str):
    """Run the block on process 0 first, then on the others (a barrier named ``name`` between; on one
    process, just the block): e.g. preparing a data set in a shared directory once, which the others then
    read."""
    if jax.process_count() == 1:
        yield
        return
    if not is_writer():
        multihost_utils.sync_global_devices(name)
    yield
    if is_writer():
        multihost_utils.sync_global_devices(name)


def writer_value(value):
    """Process 0's ``value`` on every process (a collective every process must call; on one process,
    ``value``): one answer to a question whose answer could race between processes, e.g. whether a file
    process 0 writes exists yet."""
    if jax.process_count() == 1:
        return value
    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(value))


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
    """``device_put`` every leaf onto its sharding. Across processes every process passes the same whole
    value and puts only its own shards (seeded inits and checkpoints read by every process are)."""

    def put(x, s):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, s)  # already global: a reshard
        return _put(x, s)

    return jax.tree.map(put, tree, shardings)
