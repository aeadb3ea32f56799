"""Evaluation pipeline: chunked generation, exact curves from scored [B, N] arrays, tables; the exact
teacher-forced pass@k / maj@k against sequence log-probs and against Monte Carlo votes."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import evaluation as ev
from cat_jax import operators, reporting, rl, sampling
from cat_jax.models import llama
from cat_jax.tasks import arithmetic, tokenizers
from cat_jax.testing import tiny_model

# One layer at width 32: what is tested is chunking and the exact curves, not the model (1/4 the compile).
SMALL = dict(vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)


def test_generate_chunks_and_pads():
    m = tiny_model(**SMALL)
    prompts = np.array([[1, 5, 6, 0], [1, 7, 0, 0], [1, 8, 9, 10]], np.int32)
    lengths = np.array([3, 2, 4], np.int32)
    cfg = sampling.SampleConfig(num_samples=4, max_new_tokens=3, chunk=2)
    make_cache = functools.partial(llama.init_cache, m.config)
    tokens, mask = ev.generate(m.apply, m.params, make_cache, prompts, lengths, jax.random.key(0), cfg)
    assert tokens.shape == (3, 4, 3) and mask.shape == (3, 4, 3)
    again = ev.generate(m.apply, m.params, make_cache, prompts, lengths, jax.random.key(0), cfg)
    np.testing.assert_array_equal(tokens, again[0])
    # The first chunk does not depend on what the (padded) second chunk holds.
    solo = ev.generate(m.apply, m.params, make_cache, prompts[:2], lengths[:2], jax.random.key(0), cfg)
    np.testing.assert_array_equal(tokens[:2], solo[0])
    # Two samples of each prompt per call: call j of chunk c draws with fold_in(fold_in(key, c), j).
    split = dataclasses.replace(cfg, samples_per_call=2)
    halves, _ = ev.generate(m.apply, m.params, make_cache, prompts, lengths, jax.random.key(0), split)
    assert halves.shape == (3, 4, 3)
    one = dataclasses.replace(cfg, num_samples=2)
    key01 = jax.random.fold_in(jax.random.key(0), 0)
    first, _ = ev.generate(m.apply, m.params, make_cache, prompts[:2], lengths[:2], key01, one)
    np.testing.assert_array_equal(halves[:2, :2], first)  # chunk 0, call 0 (one chunk: fold_in(key01, 0))


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


def test_exact_pass_at_k_matches_sequence_log_probs():
    m = tiny_model(**SMALL)
    prompts = np.array([[1, 5, 6, 0], [1, 7, 0, 0], [1, 8, 9, 10]], np.int32)
    lengths = np.array([3, 2, 4], np.int32)
    targets = np.array([[3, 4, 2], [5, 2, 0], [2, 0, 0]], np.int32)  # answer + stop token 2, padded
    target_lengths = np.array([3, 2, 1], np.int32)
    got = ev.exact_pass_at_k(
        m.apply,
        m.params,
        prompts,
        lengths,
        targets,
        target_lengths,
        temperatures=[1.0, 2.0],
        ks=[1, 4],
        pad_id=0,
    )
    tokens, mask = sampling.join(
        jnp.asarray(prompts),
        jnp.asarray(lengths),
        jnp.asarray(targets)[:, None],
        jnp.arange(targets.shape[1])[None, None, :] < target_lengths[:, None, None],
        pad_id=0,
    )
    log_p = np.asarray(sampling.sequence_log_probs(m.apply, m.params, tokens, mask).sum(-1))[:, 0]
    np.testing.assert_allclose(got["T1/log_p"], log_p.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got["T1/pass@4"], np.mean(-np.expm1(4 * np.log1p(-np.exp(log_p.astype(np.float64))))), rtol=1e-4
    )
    assert got["T2/log_p"] != got["T1/log_p"]


def _modular_chain_prompts():
    """Held-out prompts of the modular-chain smoke task (configs/sft/modchain.py:smoke): one-digit answers."""
    pool = arithmetic.sample_modular_chains(72, steps=2, modulus=10, max_operand=99, seed=0)
    train, held = arithmetic.split_problems(pool, 64, 8, seed=0)
    tok = tokenizers.CharTokenizer(arithmetic.ALPHABETS["modular_chain"])
    rows = [tok.encode(p.prompt, bos=True) for p in (*train, *held)]
    prompts = np.full((len(rows), max(map(len, rows))), tok.pad_id, np.int32)
    for i, r in enumerate(rows):
        prompts[i, : len(r)] = r
    lengths = np.array([len(r) for r in rows], np.int32)
    return tok, prompts[len(train) :], lengths[len(train) :]


@pytest.mark.slow  # a Monte Carlo cross-check of 4,096 samples per problem: make test-slow
def test_exact_majority_at_k_is_the_sampled_estimators_expectation():
    tok, prompts, lengths = _modular_chain_prompts()
    model_cfg = llama.LlamaConfig.tiny(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=4,
        num_kv_heads=4,
    )
    graphdef, params = llama.init(model_cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)
    (b, p), length, stop = prompts.shape, 2, tok.eos_id  # one digit + EOS

    def draw(n, seed):
        cache = llama.init_cache(model_cfg, b, p + length)
        out = sampling.sample(
            apply, params, cache, jnp.asarray(prompts), jnp.asarray(lengths), jax.random.key(seed),
            num_samples=n, max_new_tokens=length, stop_tokens=(stop,), pad_id=tok.pad_id,
        )  # fmt: skip
        return np.asarray(out.tokens), np.asarray(out.mask)

    # An untrained model rarely says the true answer; make "correct" a stopped string it does say (often
    # not a residue: junk rivals and invalid mass both matter), so the comparison can fail.
    tokens, mask = draw(64, 1)
    stopped = (mask.sum(-1) > 0) & (
        np.take_along_axis(tokens, mask.sum(-1, keepdims=True) - 1, -1)[..., 0] == stop
    )
    first = np.argmax(stopped, axis=1)
    assert stopped.any(axis=1).all()
    tl = mask[np.arange(b), first].sum(-1).astype(np.int32)
    targets = np.where(np.arange(length)[None] < tl[:, None], tokens[np.arange(b), first], 0).astype(np.int32)
    held_out = (prompts, lengths, targets, tl)
    answers = {"vocab_size": tok.vocab_size, "stop_tokens": (stop,), "max_new_tokens": length}

    maj = ev.exact_majority_at_k(
        apply, params, *held_out, temperatures=[1.0, 0.5], ks=[1, 4, 16], pad_id=tok.pad_id, **answers
    )
    exact = ev.exact_pass_at_k(apply, params, *held_out, temperatures=[1.0, 0.5], ks=[1], pad_id=tok.pad_id)
    for t in ("T0.5", "T1"):  # one vote: the plurality is the sample itself
        np.testing.assert_allclose(maj[f"{t}/maj@1"], exact[f"{t}/pass@1"], rtol=1e-4)
    tokens, mask = draw(4096, 2)
    batch = {"targets": targets, "target_lengths": tl, "stop_token": np.full((b,), stop, np.int32)}
    scored = rl.exact_match_scores(
        jnp.asarray(tokens), jnp.asarray(mask, bool), jax.tree.map(jnp.asarray, batch)
    )
    ids, ok, correct = (np.asarray(x) for x in (scored.answer_ids, scored.valid, scored.rewards > 0))
    right = np.where(correct.any(1), ids[np.arange(b), np.argmax(correct, 1)], -2)  # the correct cluster
    for k in (4, 16):  # plain Monte Carlo: disjoint k-sample plurality votes (4096 / k per problem)
        g = ids.shape[1] // k
        winner, has = operators.majority_vote(ids.reshape(b * g, k), valid=ok.reshape(b * g, k))
        won = (np.asarray(winner).reshape(b, g) == right[:, None]) & np.asarray(has).reshape(b, g)
        np.testing.assert_allclose(won.mean(), maj[f"T1/maj@{k}"], atol=0.03)
    assert 0.05 < maj["T1/maj@4"] < 0.95  # a comparison with room to fail
    with pytest.raises(ValueError, match="exceed max_candidates=4096"):  # multiplication: 5-token answers
        ev.exact_majority_at_k(
            apply, params, *held_out, temperatures=[1.0], ks=[1], pad_id=tok.pad_id,
            **{**answers, "vocab_size": 15, "max_new_tokens": 5},
        )  # fmt: skip
    with pytest.raises(ValueError, match="exactly one stop token"):
        ev.exact_majority_at_k(
            apply, params, *held_out, temperatures=[1.0], ks=[1], pad_id=tok.pad_id,
            **{**answers, "stop_tokens": (stop, 0)},
        )  # fmt: skip
