"""HF checkpoint conversion: logits and greedy parity with transformers (torch CPU), round trips, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import sampling
from cat_jax.models import convert, llama
from cat_jax.testing import tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, T, NEW = 128, 12, 32

HF_MODELS = {
    # GQA, untied head, Llama 3 RoPE scaling (exercises the rescaled frequencies).
    "llama": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-5,
            initializer_range=0.15,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 5e5,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        )
    ),
    # q/k/v bias, tied embeddings, theta 1e6.
    "qwen2": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            initializer_range=0.15,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            bos_token_id=None,
            eos_token_id=None,
        )
    ),
}


@pytest.fixture(scope="module", params=sorted(HF_MODELS))
def hf_pair(request, tmp_path_factory):
    torch.manual_seed(0)
    model = HF_MODELS[request.param]().eval()
    with torch.no_grad():  # q/k/v biases start at zero; random ones test that they are loaded
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.5)
    path = str(tmp_path_factory.mktemp(request.param))
    model.save_pretrained(path)
    return model, path, convert.load(path)


def test_logits_match_at_every_position(hf_pair):
    model, _, ckpt = hf_pair
    tokens = np.random.default_rng(0).integers(0, VOCAB, (2, T))
    with torch.no_grad():
        ref = model(torch.tensor(tokens)).logits.numpy()
    pos = jnp.broadcast_to(jnp.arange(T)[None], (2, T))
    ours, _ = jax.jit(ckpt.apply)(ckpt.params, jnp.asarray(tokens), pos)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


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
        llama.init_cache(ckpt.config, 2, 6 + NEW),
        jnp.asarray(prompts),
        jnp.full((2,), 6),
        jax.random.key(0),
        num_samples=1,
        max_new_tokens=NEW,
        strategy=sampling.Greedy(),
    )
    assert len(set(ref[0].tolist())) > 3  # a non-degenerate path
    np.testing.assert_array_equal(out.tokens[:, 0], ref)


def test_save_load_round_trip_sharded_and_bfloat16(tmp_path):
    m = tiny_model(num_layers=2, qkv_bias=True, tie_embeddings=True)
    convert.save(str(tmp_path / "one"), m.config, m.params)
    convert.save(str(tmp_path / "sharded"), m.config, m.params, max_shard_bytes=200_000)
    assert os.path.exists(tmp_path / "sharded" / "model.safetensors.index.json")
    for sub in ("one", "sharded"):
        back = convert.load(str(tmp_path / sub))
        assert back.config == m.config
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), back.params, m.params)
    bf = convert.load(str(tmp_path / "one"), param_dtype="bfloat16")
    convert.save(str(tmp_path / "bf16"), bf.config, bf.params)
    again = convert.load(str(tmp_path / "bf16"), param_dtype="bfloat16")
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), again.params, bf.params)
    assert again.params["embed"][...].dtype == jnp.bfloat16


def test_hf_loads_our_save(tmp_path):
    m = tiny_model(num_layers=2)
    convert.save(str(tmp_path), m.config, m.params)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    tokens = np.arange(10)[None]
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours, _ = jax.jit(m.apply)(m.params, jnp.asarray(tokens), jnp.arange(10)[None])
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def _write_config(path, **changes):
    hf = convert.config_to_hf(llama.LlamaConfig.tiny(num_layers=1))
    hf.update(changes)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf, f)
    return str(path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"architectures": ["FalconForCausalLM"]}, "unknown architecture"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"sliding_window": 4096}, "sliding_window"),
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "RoPE type"),
        ({"some_new_knob": 3}, "unsupported config.json field some_new_knob"),
    ],
)
def test_unsupported_config_raises(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        convert.load(_write_config(tmp_path, **changes))


def test_tokenizer_loaded_and_vocab_checked(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")

    def write(n):
        vocab = {f"w{i}": i for i in range(n)}
        tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
        tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
        tok.save(str(tmp_path / "tokenizer.json"))

    write(200)
    tok = convert.load_tokenizer(str(tmp_path), 256, eos_token=5)
    assert tok.encode("w3 w7", eos=True) == [3, 7, 5] and tok.pad_id == 5
    assert tok.backend.encode("w3 w7").ids == [3, 7]
    write(300)
    with pytest.raises(ValueError, match="vocab_size is 256"):
        convert.load_tokenizer(str(tmp_path), 256)
    assert convert.load_tokenizer(str(tmp_path / "nowhere")) is None


def test_missing_weights_raise(tmp_path):
    m = tiny_model(num_layers=2)
    convert.save(str(tmp_path), m.config, m.params)
    with open(tmp_path / "config.json") as f:
        hf = json.load(f)
    hf["num_hidden_layers"] = 3
    with open(tmp_path / "config.json", "w") as f:
        json.dump(hf, f)
    with pytest.raises(ValueError, match="missing tensors"):
        convert.load(str(tmp_path))


def _write_tokenizer(path, n):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {f"w{i}": i for i in range(n)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))


def test_export_copies_tokenizer_files_and_token_ids(tmp_path):
    m = tiny_model(num_layers=2)
    source = tmp_path / "source"
    convert.save(str(source), m.config, m.params)
    _write_tokenizer(str(source), 200)
    files = {"tokenizer_config.json": {"chat_template": "{{ messages }}", "eos_token": "w2"}}
    files |= {
        "special_tokens_map.json": {"eos_token": "w2"},
        "generation_config.json": {"eos_token_id": [2, 3]},
    }
    for name, content in files.items():
        with open(source / name, "w") as f:
            json.dump(content, f)
    with open(source / "config.json") as f:
        hf = json.load(f)
    with open(source / "config.json", "w") as f:
        json.dump(hf | {"bos_token_id": 1, "eos_token_id": 2}, f)

    out = str(tmp_path / "export")
    convert.export(out, m.config, m.params, tokenizer_from=str(source))
    for name in ("tokenizer.json", *files):
        with open(source / name) as a, open(os.path.join(out, name)) as b:
            assert a.read() == b.read()
    back = convert.load(out)
    assert back.eos_token_ids == (2, 3) and back.tokenizer.encode("w5", bos=True) == [1, 5]
    jax.tree.map(np.testing.assert_array_equal, back.params, m.params)

    with pytest.raises(ValueError, match="is not empty; pass overwrite=True"):
        convert.export(out, m.config, m.params)
    convert.save(out, m.config, m.params, max_shard_bytes=200_000)  # stale shards, then overwrite
    convert.export(out, m.config, m.params, overwrite=True)
    assert not os.path.exists(os.path.join(out, "model.safetensors.index.json"))
    jax.tree.map(np.testing.assert_array_equal, convert.load(out).params, m.params)

    _write_tokenizer(str(tmp_path / "big"), 300)
    with pytest.raises(ValueError, match="vocab_size is 256"):
        convert.export(str(tmp_path / "x"), m.config, m.params, tokenizer_from=str(tmp_path / "big"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="has none of the tokenizer files"):
        convert.export(str(tmp_path / "y"), m.config, m.params, tokenizer_from=str(tmp_path / "empty"))
