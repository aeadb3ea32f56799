"""LoRA: exact no-op at init, gradients only into adapters, merge equals unmerged."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cat_jax import sampling
from cat_jax.models import llama, lora
from cat_jax.testing import tiny_model

CFG = lora.LoRAConfig(rank=4, alpha=8.0, targets=("q", "v", "o", "down"))


@pytest.fixture(scope="module")
def setup():
    m = tiny_model(num_layers=2)
    graphdef, adapters = lora.init(m.graphdef, m.params, CFG, jax.random.key(1))
    return m, graphdef, adapters


def _batch(m):
    tokens = jax.random.randint(jax.random.key(2), (2, 10), 0, m.config.vocab_size)
    return tokens, jnp.ones((2, 10), bool)


def _loss(apply, params, tokens, mask):
    return -sampling.sequence_log_probs(apply, params, tokens, mask).sum()


def test_adapter_shapes_and_count(setup):
    m, _, adapters = setup
    leaves = jax.tree.leaves(adapters)
    assert len(leaves) == 2 * len(CFG.targets) * m.config.num_layers
    assert all(4 in x.shape for x in leaves)


def test_fresh_adapters_are_an_exact_noop(setup):
    m, graphdef, adapters = setup
    tokens, _ = _batch(m)
    pos = jnp.broadcast_to(jnp.arange(10)[None], (2, 10))
    base, _ = jax.jit(m.apply)(m.params, tokens, pos)
    adapted, _ = jax.jit(lora.decoder(graphdef))((adapters, m.params), tokens, pos)
    np.testing.assert_array_equal(adapted, base)


def test_gradients_reach_only_adapters_and_training_moves_them(setup):
    m, graphdef, adapters = setup
    apply = lora.decoder(graphdef)
    tokens, mask = _batch(m)
    grad_both = jax.jit(jax.grad(lambda p: _loss(apply, p, tokens, mask)))((adapters, m.params))
    g_adapters, g_base = grad_both
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_base))
    g_pure = jax.tree.leaves_with_path(g_adapters)
    assert all(float(jnp.abs(g).max()) > 0 for path, g in g_pure if "'b'" in jax.tree_util.keystr(path))

    opt = optax.adam(1e-2)

    @jax.jit
    def step(a, state):
        loss, g = jax.value_and_grad(lambda a: _loss(apply, (a, m.params), tokens, mask))(a)
        updates, state = opt.update(g, state)
        return optax.apply_updates(a, updates), state, loss

    a, state = adapters, opt.init(adapters)
    losses = []
    for _ in range(3):
        a, state, loss = step(a, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    # Merging the trained adapters gives a plain model with the same logits.
    graphdef0, merged = lora.merge(graphdef, a, m.params)
    assert graphdef0 == m.graphdef
    pos = jnp.broadcast_to(jnp.arange(10)[None], (2, 10))
    unmerged, _ = jax.jit(apply)((a, m.params), tokens, pos)
    plain, _ = jax.jit(m.apply)(merged, tokens, pos)
    np.testing.assert_allclose(plain, unmerged, atol=2e-4, rtol=1e-5)
    assert float(jnp.abs(plain - jax.jit(m.apply)(m.params, tokens, pos)[0]).max()) > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank"),
        ({"alpha": 0.0}, "alpha"),
        ({"targets": ("qkv",)}, "subset"),
        ({"targets": ()}, "subset"),
    ],
)
def test_bad_lora_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lora.LoRAConfig(**kwargs)


def test_sampling_through_adapters_equals_merged_model(setup):
    m, graphdef, adapters = setup
    # Non-zero adapters, so the check is not trivially the base model.
    adapters = jax.tree.map(
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape, x.dtype), adapters
    )
    graphdef0, merged = lora.merge(graphdef, adapters, m.params)
    prompts, lengths = jnp.arange(12).reshape(2, 6), jnp.array([6, 4])

    def greedy(apply, params):
        cache = llama.init_cache(m.config, 2, 14)
        args = (apply, params, cache, prompts, lengths, jax.random.key(0))
        return sampling.sample(*args, num_samples=1, max_new_tokens=8, strategy=sampling.Greedy())

    adapted = greedy(lora.decoder(graphdef), (adapters, m.params))
    plain = greedy(llama.decoder(graphdef0), merged)
    base = greedy(m.apply, m.params)
    np.testing.assert_array_equal(adapted.tokens, plain.tokens)
    np.testing.assert_allclose(adapted.logp_model, plain.logp_model, atol=1e-4)
    assert not np.array_equal(adapted.logp_model, base.logp_model)
