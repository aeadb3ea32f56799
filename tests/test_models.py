"""Llama decoder: configs, shapes, cached = uncached forward, padding, dtypes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax.models import llama
from cat_jax.testing import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(num_layers=2)


@pytest.fixture(scope="module")
def fwd(model):
    return jax.jit(model.apply)


def _positions(b, t, start=0):
    return jnp.broadcast_to(jnp.arange(start, start + t, dtype=jnp.int32)[None], (b, t))


def test_tiny_size_and_param_count():
    config = llama.LlamaConfig.tiny()
    assert 4e5 <= config.num_params() <= 5e6
    for overrides in ({}, {"tie_embeddings": True, "qkv_bias": True}):
        m = tiny_model(num_layers=2, **overrides)
        assert sum(x.size for x in jax.tree.leaves(m.params)) == m.config.num_params()


def test_presets_document_real_sizes():
    assert 0.4e9 < llama.preset("qwen2.5-0.5b").num_params() < 0.6e9
    assert 6.5e9 < llama.preset("llama2-7b").num_params() < 7e9
    assert 7e9 < llama.preset("mistral-7b").num_params() < 7.5e9
    assert llama.preset("tiny", param_dtype="bfloat16").dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="valid names"):
        llama.preset("gpt2")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_kv_heads", 3, "multiple of num_kv_heads"),
        ("param_dtype", "float16", "param_dtype"),
        ("num_layers", 0, "positive"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(llama.LlamaConfig.tiny(), **{field: value})


def test_cached_decoding_equals_uncached_forward_at_every_step(model, fwd):
    b, t, prefill = 2, 12, 5
    tokens = jax.random.randint(jax.random.key(1), (b, t), 0, model.config.vocab_size)
    full, none = fwd(model.params, tokens, _positions(b, t), None)
    assert none is None and full.dtype == jnp.float32 and full.shape == (b, t, model.config.vocab_size)
    cache = llama.init_cache(model.config, b, t)
    logits, cache = fwd(model.params, tokens[:, :prefill], _positions(b, prefill), cache)
    np.testing.assert_allclose(logits, full[:, :prefill], atol=1e-5, rtol=1e-5)
    for i in range(prefill, t):
        step, cache = fwd(model.params, tokens[:, i : i + 1], _positions(b, 1, i), cache)
        np.testing.assert_allclose(step[:, 0], full[:, i], atol=1e-5, rtol=1e-5)


def test_right_padding_does_not_leak(model, fwd):
    tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, model.config.vocab_size)
    padded = tokens.at[1, 6:].set(0)
    a, _ = fwd(model.params, tokens, _positions(2, 12), None)
    c, _ = fwd(model.params, padded, _positions(2, 12), None)
    np.testing.assert_allclose(a[1, :6], c[1, :6], atol=1e-6)
    np.testing.assert_allclose(a[0], c[0], atol=1e-6)


def test_bfloat16_params_compute_policy():
    m = tiny_model(num_layers=2, param_dtype="bfloat16", tie_embeddings=True)
    assert {x.dtype for x in jax.tree.leaves(m.params)} == {jnp.dtype(jnp.bfloat16)}
    tokens = jax.random.randint(jax.random.key(4), (2, 8), 0, m.config.vocab_size)
    cache = llama.init_cache(m.config, 2, 8)
    logits, cache = jax.jit(m.apply)(m.params, tokens, _positions(2, 8), cache)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
    assert cache[0]["k"].dtype == jnp.bfloat16
    # Same weights in float32 agree to bfloat16 precision.
    f32 = jax.tree.map(lambda x: x.astype(jnp.float32), m.params)
    ref, _ = jax.jit(m.apply)(f32, tokens, _positions(2, 8))
    p, q = jax.nn.softmax(logits), jax.nn.softmax(ref)
    assert float(jnp.abs(p - q).max()) < 0.05


def test_decoder_is_hashable_by_graphdef(model):
    assert llama.decoder(model.graphdef) == model.apply
    assert hash(llama.decoder(model.graphdef)) == hash(model.apply)
