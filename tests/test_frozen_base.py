"""Training with a frozen part (a LoRA base): only the trained part is in the state, updated and saved."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama, lora
from cat_jax.testing import ragged_sequences, tiny_model

MODEL = tiny_model(
    vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
)
GRAPHDEF, ADAPTERS = lora.init(
    MODEL.graphdef, MODEL.params, lora.LoRAConfig(rank=2, alpha=4.0), jax.random.key(1)
)
APPLY = lora.decoder(GRAPHDEF)
TX = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-2))


def test_sft_step_differentiates_the_adapters_only():
    tokens, labels = ragged_sequences()
    batch = {"tokens": jnp.asarray(tokens) % 16, "labels": jnp.where(labels < 0, labels, labels % 16)}
    loss_fn = losses.make_sft_loss_fn(APPLY, objective=losses.SFTObjective("passn", n=4))
    step = jax.jit(train_lib.make_train_step(loss_fn, TX))
    state = train_lib.TrainState.create(ADAPTERS, TX, seed=0)
    new, metrics = step(state, batch, MODEL.params)
    assert jax.tree.structure(new.params) == jax.tree.structure(ADAPTERS)  # the base is not in the state
    # The same gradient as differentiating the adapters of the (adapters, base) pair directly.
    grads = jax.jit(jax.grad(lambda a: loss_fn((a, MODEL.params), batch, state.step_key())[0]))(ADAPTERS)
    np.testing.assert_allclose(metrics["train/grad_norm"], float(optax.global_norm(grads)), rtol=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params, ADAPTERS)
    assert max(jax.tree.leaves(moved)) > 0


def test_rl_step_with_frozen_base_and_adapter_reference():
    step = rl.make_rl_step(
        APPLY,
        TX,
        functools.partial(llama.init_cache, MODEL.config),
        rollout=sampling.SampleConfig(num_samples=2, max_new_tokens=2),
        weights=wts.WeightConfig(strategy="passn", n=4, form="log", probability="empirical"),
        advantages=adv.AdvantageConfig(),
        loss=losses.PolicyLossConfig(kl_beta=0.1),
        stop_tokens=(2,),
    )
    batch = {
        "prompts": jnp.array([[1, 5, 6, 0], [1, 7, 8, 9]], jnp.int32),
        "lengths": jnp.array([3, 4], jnp.int32),
        "targets": jnp.array([[3, 2], [4, 2]], jnp.int32),
        "target_lengths": jnp.array([2, 2], jnp.int32),
        "stop_token": jnp.array([2, 2], jnp.int32),
    }
    reference = jax.tree.map(jnp.copy, ADAPTERS)  # the frozen warm-up adapter, over the same base
    state = train_lib.TrainState.create(ADAPTERS, TX, seed=0, extra={"reference": reference})
    new, metrics = jax.jit(step)(state, batch, MODEL.params)
    assert bool(metrics["train/finite"]) and int(new.step) == 1
    assert jax.tree.structure(new.params) == jax.tree.structure(ADAPTERS)
    # At step 0 the policy is its reference: the KL term is exactly 0.
    np.testing.assert_allclose(metrics["rl/kl"], 0.0, atol=1e-6)


def test_rl_update_in_micro_batches_is_the_whole_batch_gradient():
    loss_fn = losses.make_rl_loss_fn(APPLY, config=losses.PolicyLossConfig(kl_beta=0.0))
    grad_fn = jax.value_and_grad(lambda p, b, k: loss_fn((p, MODEL.params), b, k), has_aux=True)
    key = jax.random.key(0)
    tokens = jax.random.randint(key, (2, 4, 6), 0, 16)
    batch = {
        "tokens": tokens,
        "mask": jnp.broadcast_to(jnp.arange(6) >= 2, tokens.shape),
        "advantages": jnp.array([[1.0, -1.0, 0.5, -0.5], [0.2, 0.3, -0.1, -0.4]]),
        "weights": jnp.array([[1.0, 2.0, 1.0, 0.5], [1.0, 1.0, 3.0, 1.0]]),
        "num_completions": 8,
    }
    (value, _), grads = jax.jit(lambda p: rl._accumulate(grad_fn, p, batch, key, 1))(ADAPTERS)
    (value4, metrics4), grads4 = jax.jit(lambda p: rl._accumulate(grad_fn, p, batch, key, 4))(ADAPTERS)
    np.testing.assert_allclose(value4, value, rtol=1e-5)
    np.testing.assert_allclose(metrics4["loss/policy"], value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads4, grads)
    with pytest.raises(ValueError, match="micro_batches=3 must divide the 8 completions"):
        rl._accumulate(grad_fn, ADAPTERS, batch, key, 3)


def test_rl_update_in_micro_batches_of_prompt_groups_is_the_whole_batch_gradient():
    """The shared-prompt layout splits whole groups (micro_batches divides B); LoRA over a frozen base."""
    make_cache = functools.partial(llama.init_cache, MODEL.config)
    loss_fn = losses.make_rl_loss_fn(APPLY, config=losses.PolicyLossConfig(), make_cache=make_cache)
    grad_fn = jax.value_and_grad(lambda p, b, k: loss_fn((p, MODEL.params), b, k), has_aux=True)
    key = jax.random.key(0)
    batch = {
        "prompts": jnp.array([[1, 5, 6, 0], [1, 7, 8, 9]], jnp.int32),
        "lengths": jnp.array([3, 4], jnp.int32),
        "completions": jax.random.randint(key, (2, 4, 3), 0, 16),
        "mask": jnp.broadcast_to(jnp.arange(3) < 2, (2, 4, 3)),
        "advantages": jnp.array([[1.0, -1.0, 0.5, -0.5], [0.2, 0.3, -0.1, -0.4]]),
        "weights": jnp.array([[1.0, 2.0, 1.0, 0.5], [1.0, 1.0, 3.0, 1.0]]),
        "num_completions": 8,
    }
    (value, _), grads = jax.jit(lambda p: rl._accumulate(grad_fn, p, batch, key, 1))(ADAPTERS)
    (value2, _), grads2 = jax.jit(lambda p: rl._accumulate(grad_fn, p, batch, key, 2))(ADAPTERS)
    np.testing.assert_allclose(value2, value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads2, grads)
