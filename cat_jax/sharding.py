"""Device meshes and sharding rules: the same training code on 1 device, a host of 8, or a pod.

The mesh has two axes, ``("data", "fsdp")``. Batches are split along their leading axis over both axes
(every device sees a different slice of the batch); parameters are replicated, or with ``fsdp=True`` each
large array is split along its largest divisible axis over ``"fsdp"`` (ZeRO-3 / FSDP style: XLA all-gathers
them where needed). Computation stays written for automatic sharding: ``jax.jit`` on sharded inputs does
the rest.

Multi-host (TPU pod slices, GPU clusters): call :func:`initialize_distributed` first on every host. On Cloud
TPU it needs no arguments; on GPU clusters set ``JAX_COORDINATOR_ADDRESS=host0:1234``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (or run under SLURM / Open MPI, which JAX detects), then build
the mesh over ``jax.devices()`` as usual.
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


def initialize_distributed() -> bool:
    """``jax.distributed.initialize()`` when running multi-process (env vars or a TPU pod); else a no-op."""
    multi = any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE"))
    if multi or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()
        return True
    return False


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
