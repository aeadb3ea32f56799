"""cat_jax.sharding's multi-process start-up: when it runs and what it refuses (meshes: test_train_lib.py,
test_mesh_steps.py; a real start through the experiments' entry point: tests/experiments/test_cli.py)."""

import jax
import pytest

from cat_jax import sharding

CLUSTER_VARS = sharding.CLUSTER_ENV_VARS  # cleared where a test needs a single-process environment


@pytest.fixture
def single_process_env(monkeypatch):
    for var in CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_initialize_distributed_is_a_no_op_when_not_asked(single_process_env):
    single_process_env.setenv("SLURM_NTASKS", "1")  # a one-task SLURM job is a single process
    single_process_env.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # a single-host TPU VM
    assert sharding.initialize_distributed() is False
    assert not jax.distributed.is_initialized()
    assert sharding.topology() == {
        "process_index": 0,
        "process_count": 1,
        "local_devices": 8,
        "global_devices": 8,
    }


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"num_processes": 2, "process_id": 2}, {}, r"process_id must be < num_processes=2, got 2"),
        ({"num_processes": 0}, {}, "num_processes must be an integer in >= 1"),
        ({"process_id": -1}, {}, "process_id must be an integer in >= 0"),
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer, got 'two'"),
        ({"process_id": 3}, {"JAX_NUM_PROCESSES": "2"}, r"process_id must be < num_processes=2, got 3"),
    ],
)
def test_initialize_distributed_checks_its_arguments_before_starting(
    single_process_env, kwargs, env, message
):
    for var, value in env.items():
        single_process_env.setenv(var, value)
    with pytest.raises(ValueError, match=message):
        sharding.initialize_distributed(**kwargs)
    assert not jax.distributed.is_initialized()
