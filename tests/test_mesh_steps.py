"""One SFT step and one RL step on a mesh of fake CPU devices give the single-device parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, sharding, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama
from cat_jax.testing import tiny_model

MODEL = tiny_model(
    vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
)
TX = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-2))
# XLA's lowest backend optimisation level halves the compile time that dominates these tests; the single- and
# multi-device programs are both built with it, and what is compared is the sharding, not the optimiser.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _compare(step, batch, mesh, fsdp):
    single = step(train_lib.TrainState.create(MODEL.params, TX, seed=0), batch)
    placed = sharding.place(
        MODEL.params, sharding.param_shardings(MODEL.params, mesh, fsdp=fsdp, min_size=64)
    )
    sharded = step(train_lib.TrainState.create(placed, TX, seed=0), sharding.shard_batch(batch, mesh))
    for a, b in zip(jax.tree.leaves(single[0].params), jax.tree.leaves(sharded[0].params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return single, sharded


def test_sft_step_on_mesh_equals_single_device():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 16, size=(8, 6)).astype(np.int32)
    labels = np.where(np.arange(6)[None, :] >= 3, tokens, -100).astype(np.int32)
    loss_fn = losses.make_sft_loss_fn(MODEL.apply, objective=losses.SFTObjective("passn", n=4))
    step = jit(train_lib.make_train_step(loss_fn, TX))
    _compare(step, {"tokens": tokens, "labels": labels}, sharding.make_mesh(8, fsdp=2), fsdp=True)


def test_rl_step_on_mesh_equals_single_device():
    eos = 2
    batch = {
        "prompts": np.array([[1, 5, 6, 0], [1, 7, 8, 9], [1, 4, 0, 0], [1, 9, 9, 0]], np.int32),
        "lengths": np.array([3, 4, 2, 3], np.int32),
        "targets": np.array([[3, eos]] * 4, np.int32),
        "target_lengths": np.full(4, 2, np.int32),
        "stop_token": np.full(4, eos, np.int32),
    }
    fn = rl.make_rl_step(
        MODEL.apply,
        TX,
        functools.partial(llama.init_cache, MODEL.config),
        rollout=sampling.SampleConfig(num_samples=4, max_new_tokens=3),
        weights=wts.WeightConfig(strategy="passn", n=4, form="log"),
        advantages=adv.AdvantageConfig(),
        loss=losses.PolicyLossConfig(),
        stop_tokens=(eos,),
    )
    single, sharded = _compare(jit(fn), batch, sharding.make_mesh(4), fsdp=False)
    assert float(single[1]["reward/mean"]) == float(sharded[1]["reward/mean"])
    assert jnp.isfinite(single[1]["loss/total"])
