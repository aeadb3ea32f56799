"""The pure pieces of multi-process runs, on one process (the 2-process runs themselves:
tests/experiments/test_multihost.py, slow tier): process shards of the batcher, one process's block of a
mesh, global batches, the cross-process decisions, the writer gating and the per-process log tag."""

import logging as std_logging

import grain
import jax
import numpy as np
import pytest
from absl import logging

from cat_jax import data, sharding, train_lib
from experiments import cli, common


def _records(n: int = 24):
    return [{"x": np.full(3, i, np.int32), "y": np.int32(i)} for i in range(n)]


@pytest.mark.parametrize(("batch_size", "group_size", "count"), [(8, 1, 2), (12, 3, 4), (8, 2, 2)])
def test_process_shards_concatenate_to_the_whole_batch(batch_size, group_size, count):
    """Shard i of n reads its contiguous block of each step's prompts; in order they are the whole batch, and
    every group (a prompt's consecutive copies) stays whole within one shard."""
    whole = data.batches(_records(), None, None, 0, batch_size, group_size=group_size, seed=3)
    shards = [
        whole.sharded(grain.sharding.ShardOptions(shard_index=i, shard_count=count)) for i in range(count)
    ]
    for step in (0, 1, 5):  # across an epoch boundary too (3 batches of 8 prompts per epoch)
        parts = [s(step) for s in shards]
        for key in ("x", "y", "index"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole(step)[key])
        for p in parts:
            groups = p["index"].reshape(-1, group_size)
            assert (groups == groups[:, :1]).all()  # each group whole
    assert whole.sharded(None) == whole and shards[0].sharded(None).shard is None


def test_shard_reads_only_its_own_records():
    read = []

    class Source(list):
        def __getitem__(self, i):
            read.append(i)
            return super().__getitem__(i)

    rows = data.batches(Source(_records()), None, None, 0, 8, seed=0)
    mine = rows.sharded(grain.sharding.ShardOptions(shard_index=1, shard_count=2))
    read.clear()
    batch = mine(0)
    assert sorted(read) == sorted(batch["index"].tolist()) and len(read) == 4
    assert sorted(read) == sorted(rows.indices(0)[4:].tolist())


def test_single_process_helpers_reduce_to_the_plain_operations():
    mesh = sharding.make_mesh(4, fsdp=2)
    assert sharding.process_block(mesh) == (0, 1)
    assert common.data_shard(mesh) is None and common.data_shard(None) is None
    batch = {"t": np.arange(16).reshape(8, 2)}
    placed = sharding.global_batch(batch, mesh)["t"]
    assert placed.sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(sharding.to_host(placed), batch["t"])
    assert sharding.any_process(True) is True and sharding.any_process(False) is False
    assert sharding.writer_value(7) == 7
    with sharding.writer_first("nothing to wait for"):
        pass


def test_place_state_puts_every_leaf_on_the_mesh():
    mesh = sharding.make_mesh(4, fsdp=4)
    params = {"w": jax.numpy.ones((128, 128)), "b": jax.numpy.ones(3)}
    params = sharding.place(params, sharding.param_shardings(params, mesh, fsdp=True))
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig())
    state = common.place_state(train_lib.TrainState.create(params, tx, seed=0), mesh)
    for leaf in jax.tree.leaves(state):
        assert leaf.sharding.mesh == mesh
    assert state.params["w"].sharding.spec == jax.sharding.PartitionSpec("fsdp", None)  # kept as it was
    assert state.step.sharding.is_fully_replicated
    assert common.place_state(state, None) is state


def test_metric_writer_writes_from_the_active_process_only(tmp_path):
    idle = train_lib.MetricWriter(tmp_path / "run", active=False)
    idle.write(1, {"loss": 1.0})
    assert not (tmp_path / "run").exists()
    train_lib.MetricWriter(tmp_path / "run", active=True, tensorboard=False).write(1, {"loss": 2.0})
    assert idle.read() == [{"step": 1, "loss": 2.0}]


def test_log_lines_carry_the_process_index():
    handler = logging.get_absl_handler().python_handler
    before = list(handler.filters)
    try:
        cli.tag_logs(1, 2)
        cli.tag_logs(1, 2)  # once
        tags = [f for f in handler.filters if f not in before]
        assert len(tags) == 1
        record = std_logging.LogRecord("x", std_logging.INFO, "f.py", 1, "step %d", (3,), None)
        tags[0].filter(record)
        tags[0].filter(record)
        assert record.getMessage() == "[process 1/2] step 3"
    finally:
        for f in [f for f in handler.filters if f not in before]:
            handler.removeFilter(f)
