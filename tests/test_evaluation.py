"""Evaluation pipeline: chunked generation, exact curves from scored [B, N] arrays, tables."""

import functools

import jax
import numpy as np

from cat_jax import evaluation as ev
from cat_jax import operators, reporting
from cat_jax.models import llama
from cat_jax.testing import tiny_model


def test_generate_chunks_and_pads():
    m = tiny_model()
    prompts = np.array([[1, 5, 6, 0], [1, 7, 0, 0], [1, 8, 9, 10]], np.int32)
    lengths = np.array([3, 2, 4], np.int32)
    cfg = ev.SampleConfig(num_samples=4, max_new_tokens=3, chunk=2)
    make_cache = functools.partial(llama.init_cache, m.config)
    tokens, mask = ev.generate(m.apply, m.params, make_cache, prompts, lengths, jax.random.key(0), cfg)
    assert tokens.shape == (3, 4, 3) and mask.shape == (3, 4, 3)
    again = ev.generate(m.apply, m.params, make_cache, prompts, lengths, jax.random.key(0), cfg)
    np.testing.assert_array_equal(tokens, again[0])
    # The first chunk does not depend on what the (padded) second chunk holds.
    solo = ev.generate(m.apply, m.params, make_cache, prompts[:2], lengths[:2], jax.random.key(0), cfg)
    np.testing.assert_array_equal(tokens[:2], solo[0])


def test_curves_match_operators_and_table():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, size=(5, 8))
    correct = ids == 0
    rewards = rng.normal(size=(5, 8))
    scored = ev.Scored(correct=correct, answer_ids=ids, valid=np.ones_like(correct), rewards=rewards)
    out = ev.curves(scored, ks=[1, 2, 4, 8])
    assert set(out) == {"pass@k", "maj@k", "best@k"}
    np.testing.assert_allclose(out["pass@k"].values[:, 1], operators.pass_at_k(correct, k=2), rtol=1e-6)
    np.testing.assert_allclose(out["pass@k"].mean[0], correct.mean(), rtol=1e-6)
    table = reporting.markdown_table({"ce": out["pass@k"], "cat": out["maj@k"]}, [1, 8])
    assert table.splitlines()[0] == "| model | @1 | @8 |" and table.count("±") == 4
    rec = ev.curve_record(out["best@k"])
    assert rec["k"] == [1, 2, 4, 8] and len(rec["mean"]) == 4
