"""Bad inputs of cat_jax.sharding: rows of docs/errors.md (see tests/errors/__init__.py)."""

import numpy as np

from cat_jax import sharding as shd

from . import SHAPE, STATIC, raises

# fmt: off
CASES = [
    raises("sharding.make_mesh", STATIC, "fsdp=3 with 8 devices", lambda: shd.make_mesh(8, fsdp=3),
           r"fsdp=3 must divide the number of devices \(8\)"),
    raises("sharding.make_mesh", STATIC, "num_devices=64 with 8 visible", lambda: shd.make_mesh(64),
           r"num_devices=64 but only 8 devices are visible"),
    raises("sharding.make_mesh", STATIC, "num_devices=0", lambda: shd.make_mesh(0),
           r"num_devices must be an integer in >= 1, got 0"),
    raises("sharding.shard_batch", SHAPE, "a batch of 6 rows on 8 devices",
           lambda: shd.shard_batch({"x": np.zeros((6, 2))}, shd.make_mesh(8)),
           r"divisible by the 8 devices"),
]
# fmt: on
