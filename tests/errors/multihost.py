"""Bad inputs of the multi-process pieces (cat_jax.data's process shards, cat_jax.sharding's global batches):
rows of docs/errors.md (see tests/errors/__init__.py)."""

import grain
import numpy as np

from cat_jax import data
from cat_jax import sharding as shd

from . import SHAPE, STATIC, raises


def _rows(batch_size: int):
    return data.batches([{"x": np.zeros(2)}] * 12, None, None, 0, batch_size)


# fmt: off
CASES = [
    raises("data.Batches.sharded", STATIC, "6 prompts per batch over 4 process shards",
           lambda: _rows(6).sharded(grain.sharding.ShardOptions(shard_index=0, shard_count=4)),
           r"6 prompts per batch do not split into 4 equal process shards"),
    raises("sharding.global_batch", SHAPE, "a process-local batch of 6 rows on 8 devices",
           lambda: shd.global_batch({"x": np.zeros((6, 2))}, shd.make_mesh(8)),
           r"divisible by the 8 devices"),
]
# fmt: on
