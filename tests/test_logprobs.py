"""The one scorer: token and completion log-probs with one causal shift, -100 labels, a temperature."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import logprobs as lp_
from cat_jax.testing import ragged_sequences

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

V = 11


_sequences = ragged_sequences  # four prompt + completion rows of unequal lengths


def test_completion_log_probs_equal_manual_causal_shift_and_mask_gradients():
    tokens, labels = _sequences()
    logits = jax.random.normal(jax.random.key(1), (*tokens.shape, V))
    lp_.check_supervision(labels, tokens > 0, vocab_size=V)
    value_and_grad = jit(
        jax.value_and_grad(lambda z: jnp.sum(lp_.completion_log_probs(z, labels)[0]), has_aux=False)
    )
    lp, t = jit(lp_.completion_log_probs)(logits, labels)
    _, g = value_and_grad(logits)
    g = np.asarray(g)
    ls = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    want = [
        sum(ls[i, s - 1, labels[i, s]] for s in range(tokens.shape[1]) if labels[i, s] != -100)
        for i in range(4)
    ]
    np.testing.assert_allclose(np.asarray(lp), want, rtol=1e-5)
    assert t.tolist() == [3, 2, 4, 1]
    scored = np.zeros(tokens.shape, bool)
    scored[:, :-1] = labels[:, 1:] != -100
    assert np.all(g[~scored] == 0) and np.all(np.abs(g[scored]).sum(-1) > 0)


def test_half_precision_logits_are_computed_in_float32():
    tokens, labels = _sequences()
    logits = np.random.default_rng(2).normal(size=(*tokens.shape, V)).astype(jnp.bfloat16)
    lp, _ = jit(lp_.completion_log_probs)(logits, labels)
    assert lp.dtype == jnp.float32


@pytest.mark.parametrize(
    ("labels", "mask", "match"),
    [
        ([[5, 1, -100]], None, "position 0"),
        ([[-100, -100, -100], [-100, 1, 2]], None, "every row"),
        ([[-100, 1, 2]], [[1, 1, 0]], "padding"),
        ([[-100, -100, 2]], [[1, 0, 1]], "predicted from a padding"),
        ([[-100, 1, 2]], [[1, 2, 1]], "mask"),
        ([[-100, 11, 2]], None, "labels"),
        ([[-100, -7, 2]], None, "labels"),
    ],
)
def test_bad_supervision_raises_naming_the_argument(labels, mask, match):
    with pytest.raises(ValueError, match=match):
        lp_.completion_log_probs(
            jnp.zeros((len(labels), 3, V)),
            jnp.asarray(labels, jnp.int32),
            None if mask is None else jnp.asarray(mask, bool) if match != "mask" else np.asarray(mask),
            validate=True,
        )


def test_temperature_scores_tempered_softmax_one_is_exact_and_traced_works():
    tokens, labels = _sequences()
    logits = jax.random.normal(jax.random.key(4), (*tokens.shape, V)) * 3
    plain = lp_.token_log_probs(logits, labels)
    np.testing.assert_array_equal(lp_.token_log_probs(logits, labels, temperature=1.0), plain)
    np.testing.assert_array_equal(lp_.token_log_probs(logits, labels, temperature=1), plain)
    hot = lp_.token_log_probs(logits, labels, temperature=2.0)
    np.testing.assert_allclose(hot, lp_.token_log_probs(logits / 2.0, labels), rtol=1e-6)
    temps = jnp.array([0.5, 1.0, 2.0])
    seq = jax.vmap(lambda t: lp_.completion_log_probs(logits, labels, temperature=t)[0])(temps)
    for i, t in enumerate([0.5, 1.0, 2.0]):
        np.testing.assert_allclose(seq[i], lp_.completion_log_probs(logits / t, labels)[0], rtol=1e-5)
    for bad in (0.0, -1.0, True):
        with pytest.raises(ValueError, match="temperature must be a number > 0"):
            lp_.token_log_probs(logits, labels, temperature=bad)


def test_model_token_log_probs_flattens_leading_axes_and_defaults_positions():
    tokens, labels = _sequences()
    emb = jax.random.normal(jax.random.key(5), (V, V))

    def apply(params, toks, pos, cache):
        return params[toks] + pos[..., None].astype(jnp.float32) * 0.1, cache

    flat = lp_.model_token_log_probs(apply, emb, tokens, labels)
    np.testing.assert_array_equal(lp_.positions_for(tokens)[1], np.arange(tokens.shape[1]))
    want = lp_.token_log_probs(apply(emb, tokens, lp_.positions_for(tokens), None)[0], labels)
    np.testing.assert_array_equal(flat, want)
    two = lp_.model_token_log_probs(apply, emb, tokens.reshape(2, 2, -1), labels.reshape(2, 2, -1))
    np.testing.assert_array_equal(two.reshape(flat.shape), flat)


def _shared_prompt_case():
    """Ragged prompts (lengths 1 .. P) and ragged completions (an empty one too), M = 3 per prompt."""
    prompts = jnp.array([[1, 5, 6, 0], [1, 7, 8, 9], [3, 0, 0, 0]], jnp.int32)
    lengths = jnp.array([3, 4, 1], jnp.int32)
    rng = np.random.default_rng(0)
    completions = jnp.asarray(rng.integers(0, 16, (3, 3, 5)), jnp.int32)
    counts = np.array([[5, 2, 1], [3, 5, 4], [0, 1, 5]])
    mask = jnp.arange(5)[None, None, :] < counts[..., None]
    return prompts, lengths, completions, mask


# The other family's cache (learned positions) in the slow tier: each case compiles four programs.
@pytest.mark.parametrize("family", ["llama", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_shared_prompt_log_probs_equal_the_joined_rows_values_and_gradients(family):
    from cat_jax import sampling
    from cat_jax.models import gpt2, llama
    from cat_jax.testing import tiny_model

    if family == "llama":
        m = tiny_model(
            vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
        )
        apply, params, make_cache = m.apply, m.params, functools.partial(llama.init_cache, m.config)
    else:
        config = gpt2.GPT2Config.tiny(vocab_size=16, hidden_size=32, num_layers=1, num_heads=2)
        graphdef, params = gpt2.init(config, jax.random.key(0))
        apply, make_cache = gpt2.decoder(graphdef), functools.partial(gpt2.init_cache, config)
    prompts, lengths, completions, mask = _shared_prompt_case()
    weights = jax.random.normal(jax.random.key(3), (3, 3))

    def shared(p):
        return lp_.shared_prompt_log_probs(apply, p, make_cache, prompts, lengths, completions, mask)

    def joined(p):
        tokens, tmask = sampling.join(prompts, lengths, completions, mask)
        return sampling.sequence_log_probs(apply, p, tokens, tmask)

    @jit
    def run(p):
        value = lambda f: lambda q: jnp.sum(weights * jnp.sum(f(q), axis=-1))
        return shared(p), joined(p), jax.grad(value(shared))(p), jax.grad(value(joined))(p)

    tok_s, tok_j, g_s, g_j = run(params)
    assert tok_s.shape == (3, 3, 5)
    np.testing.assert_array_equal(np.asarray(tok_s)[~np.asarray(mask)], 0.0)
    # The same per-token numbers: completion token j of prompt b sits at joined position lengths[b] + j.
    at = jnp.minimum(lengths[:, None, None] + jnp.arange(5)[None, None, :], tok_j.shape[-1] - 1)
    want = jnp.where(mask, jnp.take_along_axis(tok_j, jnp.broadcast_to(at, mask.shape), axis=-1), 0.0)
    np.testing.assert_allclose(tok_s, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(tok_s, -1), jnp.sum(tok_j, -1), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g_j), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))
