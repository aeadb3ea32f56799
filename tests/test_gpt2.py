"""GPT-2 family: logits and greedy parity with transformers' GPT2LMHeadModel, cache, positions, conversion."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import models as models_lib
from cat_jax import sampling
from cat_jax.models import convert, gpt2, llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

VOCAB, POSITIONS, T, NEW = 64, 48, 12, 16


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=48,  # not 4 * n_embd: exercises n_inner
        n_positions=POSITIONS,
        initializer_range=0.1,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and LayerNorm affine parameters start at 0 / 1; random ones test loading
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name:
                p.normal_(0.5 if name.endswith(".weight") else 0.0, 0.3)
        # Tied embeddings make small random models repeat one token greedily; large position embeddings
        # give non-degenerate greedy paths.
        model.transformer.wpe.weight.normal_(0.0, 1.0)
    path = str(tmp_path_factory.mktemp("gpt2"))
    model.save_pretrained(path)
    return model, path, convert.load(path)


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens))).logits.numpy()


def test_config_read_from_config_json(hf_pair):
    model, _, ckpt = hf_pair
    assert ckpt.config == gpt2.GPT2Config(VOCAB, 32, 2, 4, 48, POSITIONS, 1e-5)
    assert (
        ckpt.config.num_params()
        == model.num_parameters()
        == sum(x.size for x in jax.tree.leaves(ckpt.params))
    )
    assert ckpt.eos_token_ids == () and ckpt.tokenizer is None


def test_logits_match_at_every_position(hf_pair):
    model, _, ckpt = hf_pair
    tokens = np.random.default_rng(0).integers(0, VOCAB, (2, T))
    pos = jnp.broadcast_to(jnp.arange(T)[None], (2, T))
    ours, _ = jax.jit(ckpt.apply)(ckpt.params, jnp.asarray(tokens), pos)
    np.testing.assert_allclose(ours, _hf_logits(model, tokens), atol=1e-4, rtol=0)


def test_greedy_generation_is_identical(hf_pair):
    model, _, ckpt = hf_pair
    prompts = np.random.default_rng(1).integers(0, VOCAB, (2, 6))
    with torch.no_grad():
        ref = model.generate(
            torch.tensor(prompts), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0
        )[:, 6:].numpy()
    out = sampling.sample(
        ckpt.apply,
        ckpt.params,
        models_lib.init_cache(ckpt.config, 2, 6 + NEW),
        jnp.asarray(prompts),
        jnp.full((2,), 6),
        jax.random.key(0),
        num_samples=1,
        max_new_tokens=NEW,
        strategy=sampling.Greedy(),
    )
    assert len(set(ref[0].tolist())) > 3  # a non-degenerate path
    np.testing.assert_array_equal(out.tokens[:, 0], ref)


def test_sampler_log_probs_equal_uncached_scoring(hf_pair):
    """Cached decoding (the sampler) against one uncached teacher-forced forward of its samples."""
    _, _, ckpt = hf_pair
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, VOCAB, (2, T)))
    # Temperature sampling runs, and the sampler's log-probs equal teacher-forced scoring of its samples.
    prompts, lengths = tokens[:, :6], jnp.array([6, 3])
    out = sampling.sample(
        ckpt.apply,
        ckpt.params,
        gpt2.init_cache(ckpt.config, 2, 6 + NEW),
        prompts,
        lengths,
        jax.random.key(3),
        num_samples=2,
        max_new_tokens=NEW,
    )
    assert out.tokens.shape == (2, 2, NEW)
    seq, mask = sampling.join(prompts, lengths, out.tokens, out.mask)
    scored = sampling.sequence_log_probs(ckpt.apply, ckpt.params, seq, mask)
    np.testing.assert_allclose(scored.sum(-1), out.logp_model.sum(-1), atol=1e-4)


def test_old_style_checkpoint_names_and_buffers(hf_pair, tmp_path):
    """The official gpt2 files: no ``transformer.`` prefix, mask buffers, a stored tied lm_head."""
    _, path, ckpt = hf_pair
    tensors = safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))
    old = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    for i in range(2):
        old[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, POSITIONS, POSITIONS), np.float32))
        old[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    old["lm_head.weight"] = tensors["transformer.wte.weight"]
    safetensors_numpy.save_file(old, str(tmp_path / "model.safetensors"))
    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    hf |= {
        "n_ctx": POSITIONS,
        "attn_pdrop": 0.1,
        "summary_type": "cls_index",
        "gradient_checkpointing": False,
    }
    with open(tmp_path / "config.json", "w") as f:
        json.dump(hf, f)
    back = convert.load(str(tmp_path))
    assert back.config == ckpt.config
    jax.tree.map(np.testing.assert_array_equal, back.params, ckpt.params)


def test_our_save_loads_in_transformers_and_bfloat16_round_trip(hf_pair, tmp_path):
    model, _, ckpt = hf_pair
    convert.save(str(tmp_path / "f32"), ckpt.config, ckpt.params)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "f32")).eval()
    tokens = np.arange(10)[None]
    np.testing.assert_allclose(_hf_logits(hf, tokens), _hf_logits(model, tokens), atol=1e-6, rtol=0)
    back = convert.load(str(tmp_path / "f32"))
    assert back.config == ckpt.config
    jax.tree.map(np.testing.assert_array_equal, back.params, ckpt.params)
    bf = convert.load(str(tmp_path / "f32"), param_dtype="bfloat16")
    assert bf.params["wte"][...].dtype == jnp.bfloat16
    ours, _ = jax.jit(bf.apply)(bf.params, jnp.asarray(tokens), jnp.arange(10)[None])
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, _hf_logits(model, tokens), atol=0.15, rtol=0)  # bf16 weights
    convert.save(str(tmp_path / "bf16"), bf.config, bf.params)
    again = convert.load(str(tmp_path / "bf16"), param_dtype="bfloat16")
    jax.tree.map(np.testing.assert_array_equal, again.params, bf.params)


def _write(path, **changes):
    hf = convert.config_to_hf(gpt2.GPT2Config.tiny(num_layers=1)) | changes
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf, f)
    return str(path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"activation_function": "relu"}, "activation_function='relu'"),
        ({"scale_attn_weights": False}, "scale_attn_weights"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"n_ctx": 512}, "n_ctx=512 != n_positions=1024"),
        ({"some_new_knob": 3}, "unsupported config.json field some_new_knob=3 for GPT2LMHeadModel"),
    ],
)
def test_unsupported_config_raises(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        convert.load(_write(tmp_path, **changes))


def test_missing_required_field_names_the_architecture():
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel lacks the field\(s\) \['n_embd'"):
        convert.config_from_hf({"architectures": ["GPT2LMHeadModel"], "vocab_size": 8})


def test_positions_beyond_n_positions():
    config = gpt2.GPT2Config.tiny(vocab_size=VOCAB, hidden_size=32, num_layers=1, max_position_embeddings=8)
    graphdef, params = models_lib.init(config, jax.random.key(0))
    apply = models_lib.decoder(graphdef)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        gpt2.init_cache(config, 1, 9)
    with pytest.raises(ValueError, match="9 tokens per row exceed"):
        apply(params, jnp.zeros((1, 9), jnp.int32), jnp.arange(9)[None])
    with pytest.raises(
        ValueError, match=r"positions must lie in \[0, 8\) \(max_position_embeddings\), got \[3, 8\]"
    ):
        apply(params, jnp.zeros((1, 6), jnp.int32), jnp.arange(3, 9)[None])
    # Traced positions cannot raise: a row with an out-of-range position gets NaN logits, other rows do not.
    logits, _ = jax.jit(apply)(params, jnp.zeros((2, 2), jnp.int32), jnp.array([[6, 7], [7, 8]]))
    assert np.isfinite(logits[0]).all() and np.isnan(logits[1]).all()


def test_config_validation_and_generic_helpers():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        gpt2.GPT2Config.tiny(hidden_size=30)
    with pytest.raises(ValueError, match=r"compute_dtype must be one of \(None, 'float32', 'bfloat16'\)"):
        gpt2.GPT2Config.tiny(compute_dtype="float16")
    with pytest.raises(ValueError, match=r"GPT2Config\.num_layers must be a positive int"):
        gpt2.GPT2Config.tiny(num_layers=0)
    config = gpt2.GPT2Config.tiny()
    assert config.intermediate_size == 4 * config.hidden_size and config.num_kv_heads == config.num_heads
    assert models_lib.preset("protgpt2").num_params() == 774_030_080  # GPT2-large: transformers' count
    assert models_lib.preset("gpt2").num_params() == 124_439_808
    assert models_lib.family(config) is gpt2 and models_lib.family(models_lib.LlamaConfig.tiny()) is llama
    cache = models_lib.init_cache(config, 3, 10)
    assert len(cache) == 4 and cache[0]["k"].shape == (3, 4, 10, 32)
    with pytest.raises(ValueError, match="unknown model preset"):
        models_lib.preset("gpt3")


def test_compute_dtype():
    """bfloat16 matmuls over float32 parameters (llama's compute-dtype policy, through llama.Linear)."""
    config = gpt2.GPT2Config.tiny(vocab_size=VOCAB, hidden_size=32, num_layers=2, max_position_embeddings=16)
    bf = dataclasses.replace(config, compute_dtype="bfloat16")
    graphdef, params = gpt2.init(config, jax.random.key(0))
    graphdef_bf, params_bf = gpt2.init(bf, jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, params_bf, params)  # float32 master weights either way
    assert gpt2.init_cache(bf, 1, 4)[0]["k"].dtype == jnp.bfloat16
    tokens, pos = jnp.arange(10)[None], jnp.arange(10)[None]
    ref, _ = gpt2.decoder(graphdef)(params, tokens, pos)
    out, _ = gpt2.decoder(graphdef_bf)(params, tokens, pos)
    assert out.dtype == jnp.float32 and 0 < float(jnp.abs(out - ref).max()) < 0.05


def test_remat_block_gives_the_same_gradients():
    config = gpt2.GPT2Config.tiny(vocab_size=VOCAB, hidden_size=32, num_layers=2, max_position_embeddings=16)
    graphdef, params = gpt2.init(config, jax.random.key(0))
    graphdef_r, _ = gpt2.init(dataclasses.replace(config, remat="block"), jax.random.key(0))
    tokens = jnp.arange(8)[None] % VOCAB
    pos = jnp.arange(8)[None]

    def loss(apply):
        return jax.jit(jax.grad(lambda p: jnp.mean(apply(p, tokens, pos)[0] ** 2)))(params)

    ref, remat = loss(gpt2.decoder(graphdef)), loss(gpt2.decoder(graphdef_r))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), remat, ref)
    with pytest.raises(ValueError, match=r"remat must be one of \['none', 'block', 'dots'\]"):
        dataclasses.replace(config, remat="all")
