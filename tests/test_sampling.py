"""Sampler: exactness vs uncached scoring, strategy identities, stopping, independence, sharding, compiles."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cat_jax import sampling
from cat_jax.models import llama
from cat_jax.testing import tiny_model

B, P, N, L = 3, 6, 2, 8


@pytest.fixture(scope="module")
def model():
    return tiny_model(num_layers=2)


@pytest.fixture(scope="module")
def prompts(model):
    tokens = jax.random.randint(jax.random.key(5), (B, P), 0, model.config.vocab_size)
    lengths = jnp.array([6, 3, 1], jnp.int32)
    return tokens, lengths


def run(model, prompts, strategy, key=0, *, n=N, steps=L, stop=(), apply=None, cache=None):
    tokens, lengths = prompts
    return sampling.sample(
        apply or model.apply,
        model.params,
        cache if cache is not None else llama.init_cache(model.config, tokens.shape[0], P + steps),
        tokens,
        lengths,
        jax.random.key(key),
        num_samples=n,
        max_new_tokens=steps,
        strategy=strategy,
        stop_tokens=stop,
    )


@pytest.fixture(scope="module")
def greedy(model, prompts):
    return run(model, prompts, sampling.Greedy())


@pytest.fixture(scope="module")
def tempered(model, prompts):
    return run(model, prompts, sampling.Temperature(0.8))


def score(model, prompts, out):
    seqs, mask = sampling.join(*prompts, out.tokens, out.mask)
    return (
        jax.jit(sampling.sequence_log_probs, static_argnums=0)(model.apply, model.params, seqs, mask),
        seqs,
        mask,
    )


def test_greedy_equals_argmax_of_uncached_forward(model, prompts, greedy):
    """Cached = uncached forward at every step: each greedy token is the argmax of the full pass."""
    seqs, mask = sampling.join(*prompts, greedy.tokens, greedy.mask)
    t = seqs.shape[-1]
    logits, _ = jax.jit(model.apply)(
        model.params, seqs.reshape(-1, t), jnp.broadcast_to(jnp.arange(t)[None], (B * N, t))
    )
    pred = jnp.argmax(logits, -1).reshape(B, N, t)
    np.testing.assert_array_equal(
        np.where(mask[..., 1:], pred[..., :-1], -1), np.where(mask[..., 1:], seqs[..., 1:], -1)
    )
    assert bool(greedy.mask.all()) and bool((greedy.logp_sample == 0).all())
    # Greedy samples of one prompt are identical.
    np.testing.assert_array_equal(greedy.tokens[:, 0], greedy.tokens[:, 1])


def test_logprobs_equal_sequence_log_probs_at_temperature_one(model, prompts):
    out = run(model, prompts, sampling.Temperature(1.0), key=3)
    scored, _, _ = score(model, prompts, out)
    t_idx = jnp.arange(L)[None, None, :] + prompts[1][:, None, None]  # completion token positions
    picked = jnp.take_along_axis(scored, t_idx, axis=-1)
    np.testing.assert_allclose(out.logp_sample, out.logp_model, atol=1e-6)
    np.testing.assert_allclose(picked, out.logp_model, atol=2e-5)
    np.testing.assert_allclose(scored.sum(-1), out.logp_model.sum(-1), atol=1e-4)


def test_tempered_logprobs(model, prompts, tempered):
    scored, _, _ = score(model, prompts, tempered)
    np.testing.assert_allclose(scored.sum(-1), tempered.logp_model.sum(-1), atol=1e-4)
    assert bool((tempered.logp_sample <= 0).all())
    assert not np.array_equal(tempered.logp_sample, tempered.logp_model)


def test_top1_equals_greedy(model, prompts, greedy):
    out = run(model, prompts, sampling.TopK(1, temperature=0.7), key=9)
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    np.testing.assert_allclose(out.logp_sample, 0.0, atol=1e-6)
    np.testing.assert_allclose(out.logp_model, greedy.logp_model, atol=1e-6)


def test_disabled_filters_equal_plain_temperature(model, prompts, tempered):
    for strategy in (sampling.TopP(1.0, temperature=0.8), sampling.TopK(0, temperature=0.8)):
        out = run(model, prompts, strategy)
        chex.assert_trees_all_equal(tuple(out), tuple(tempered))


def test_top_p_and_top_k_restrict_support(model, prompts, tempered):
    out = run(model, prompts, sampling.TopP(0.5, temperature=0.8, k=4))
    # Renormalising over a smaller support raises the sampling log-prob above the tempered one.
    assert bool((out.logp_sample >= out.logp_model - 10).all())
    logits = jnp.array([[3.0, 2.0, 1.0, 0.0, -1.0]])
    kept = jnp.isfinite(sampling.TopP(0.7).scores(logits))
    np.testing.assert_array_equal(kept, [[True, True, False, False, False]])
    np.testing.assert_array_equal(
        jnp.isfinite(sampling.TopK(3).scores(logits)), [[True, True, True, False, False]]
    )


def test_deterministic_for_a_key_and_samples_differ(model, prompts, tempered):
    again = run(model, prompts, sampling.Temperature(0.8))
    chex.assert_trees_all_equal(tuple(again), tuple(tempered))
    assert not np.array_equal(tempered.tokens[:, 0], tempered.tokens[:, 1])
    other = run(model, prompts, sampling.Temperature(0.8), key=1)
    assert not np.array_equal(other.tokens, tempered.tokens)


def test_stop_tokens_mask_and_pad(model, prompts, tempered):
    stop = int(tempered.tokens[0, 0, 3])
    out = run(model, prompts, sampling.Temperature(0.8), stop=(stop, 10**6 % 256))
    for b in range(B):
        for n in range(N):
            ref, tok, mask = (
                np.asarray(tempered.tokens[b, n]),
                np.asarray(out.tokens[b, n]),
                np.asarray(out.mask[b, n]),
            )
            hits = np.flatnonzero(np.isin(ref, [stop, 10**6 % 256]))
            end = hits[0] + 1 if hits.size else L
            np.testing.assert_array_equal(tok[:end], ref[:end])
            assert mask[:end].all() and not mask[end:].any() and (tok[end:] == 0).all()
            assert int(out.lengths[b, n]) == end
            assert (np.asarray(out.logp_model[b, n, end:]) == 0).all()
    assert int(out.lengths[0, 0]) <= 4


def test_early_exit_when_every_sequence_stops(model, prompts):
    out = run(model, prompts, sampling.Temperature(0.8), stop=tuple(range(model.config.vocab_size)))
    np.testing.assert_array_equal(out.lengths, 1)
    assert not bool(out.mask[..., 1:].any())


def test_batch_rows_are_independent(model, prompts, tempered):
    tokens, lengths = prompts
    changed = (tokens.at[1].set(jnp.arange(P)), lengths.at[1].set(P))
    out = run(model, changed, sampling.Temperature(0.8))
    for field in ("tokens", "logp_model", "mask"):
        np.testing.assert_array_equal(getattr(out, field)[0::2], getattr(tempered, field)[0::2])
    assert not np.array_equal(out.tokens[1], tempered.tokens[1])


def test_same_tokens_on_a_mesh_of_8_devices(model):
    b = 8
    tokens = jax.random.randint(jax.random.key(7), (b, P), 0, model.config.vocab_size)
    lengths = jnp.arange(b, dtype=jnp.int32) % P + 1
    ref = run(model, (tokens, lengths), sampling.TopP(0.9, temperature=0.8))
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data"))
    params = jax.device_put(model.params, NamedSharding(mesh, PartitionSpec()))
    cache = jax.device_put(llama.init_cache(model.config, b, P + L), rows)
    out = sampling.sample(
        model.apply,
        params,
        cache,
        jax.device_put(tokens, rows),
        jax.device_put(lengths, rows),
        jax.random.key(0),
        num_samples=N,
        max_new_tokens=L,
        strategy=sampling.TopP(0.9, temperature=0.8),
    )
    assert len(out.tokens.sharding.device_set) == 8
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logp_model, ref.logp_model, atol=1e-5)


def test_one_compile_per_shape(model, prompts):
    # apply is traced twice per compilation (prefill + loop body); a retrace would exceed that.
    counted = chex.assert_max_traces(llama.Decoder(model.graphdef).__call__, n=2)
    for key in range(3):
        run(model, prompts, sampling.TopK(5), key=key, apply=_Counted(counted))


class _Counted:
    """A hashable logits function around one chex-counted callable."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __hash__(self):
        return hash(id(self.fn))

    def __eq__(self, other):
        return isinstance(other, _Counted) and other.fn is self.fn


def test_prefill_in_row_groups_equals_one_pass(model, prompts, tempered, monkeypatch):
    """The CPU prefill in groups of rows (here one row per pass) samples what one pass samples."""
    monkeypatch.setattr(sampling, "CPU_PREFILL_TOKENS", P)
    # The largest divisor of the batch whose rows fit the token budget (a prime batch: one row at a time).
    assert (sampling._prefill_rows(B, P), sampling._prefill_rows(8, 2), sampling._prefill_rows(7, 2)) == (
        1,
        2,
        1,
    )
    out = run(model, prompts, sampling.Temperature(0.8), apply=_Counted(model.apply))  # a fresh compile
    np.testing.assert_array_equal(out.tokens, tempered.tokens)
    np.testing.assert_array_equal(out.mask, tempered.mask)
    np.testing.assert_allclose(out.logp_model, tempered.logp_model, atol=1e-6)


def test_cpu_float32_cache_carrier_keeps_bf16_results(model, prompts, monkeypatch):
    """On CPU the loop carries a bf16 cache in float32 (writing a bf16 cache converted it whole every step):
    the samples and log-probs are bitwise those of carrying it in bf16."""
    cfg = dataclasses.replace(model.config, compute_dtype="bfloat16")
    apply = llama.decoder(llama.abstract(cfg)[0])
    cache = llama.init_cache(cfg, B, P + L)
    assert cache[0]["k"].dtype == jnp.bfloat16 and sampling._carried(jnp.bfloat16) == jnp.float32
    fast = run(model, prompts, sampling.Temperature(0.8), apply=_Counted(apply), cache=cache)
    monkeypatch.setattr(sampling, "CPU_CACHE_DTYPE", None)
    assert sampling._carried(jnp.bfloat16) == jnp.bfloat16
    slow = run(model, prompts, sampling.Temperature(0.8), apply=_Counted(apply), cache=cache)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sequence_log_probs_shift_and_first_position(model):
    tokens = jax.random.randint(jax.random.key(3), (2, 3, 7), 0, model.config.vocab_size)
    mask = jnp.ones((2, 3, 7), bool)
    lp = jax.jit(sampling.sequence_log_probs, static_argnums=0)(model.apply, model.params, tokens, mask)
    assert lp.shape == (2, 3, 7) and bool((lp[..., 0] == 0).all()) and bool((lp[..., 1:] < 0).all())
    logits, _ = jax.jit(model.apply)(model.params, tokens[0, :1], jnp.arange(7)[None])
    ref = jax.nn.log_softmax(logits[0, 2])[tokens[0, 0, 3]]
    np.testing.assert_allclose(lp[0, 0, 3], ref, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sampling.Temperature(0.0), "Greedy"),
        (lambda: sampling.TopK(3, temperature=-1.0), "temperature"),
        (lambda: sampling.TopP(0.0), r"\(0, 1\]"),
        (lambda: sampling.TopP(1.5), r"\(0, 1\]"),
        (lambda: sampling.TopK(-1), "k"),
    ],
)
def test_bad_strategy(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_prompt_longer_than_cache(model, prompts):
    with pytest.raises(ValueError, match="init_cache"):
        run(model, prompts, sampling.Greedy(), cache=llama.init_cache(model.config, B, P + L - 1))
    with pytest.raises(ValueError, match="lengths"):
        run(model, (prompts[0], jnp.array([0, 3, 7])), sampling.Greedy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be"),
        ({"top_p": 1.5}, "top-p"),
        ({"num_samples": 0}, "num_samples"),
    ],
)
def test_sample_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.SampleConfig(**kwargs)
    assert sampling.SampleConfig(top_k=3, temperature=0.5).strategy() == sampling.TopK(3, temperature=0.5)
