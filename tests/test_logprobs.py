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
