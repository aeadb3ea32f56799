"""Bad inputs of cat_jax.models.gpt2 and the GPT-2 / LoRA / export parts of convert and lora: rows of
docs/errors.md (see tests/errors/__init__.py)."""

import contextlib
import functools
import os
import tempfile

import jax
import jax.numpy as jnp

from cat_jax.models import convert, gpt2, lora

from . import DOMAIN, MISSING, SHAPE, STATIC, UNKNOWN, all_nan, raises, returns


@functools.cache
def _tiny():
    """A one-layer GPT-2 with 8 positions and its logits function."""
    config = gpt2.GPT2Config.tiny(
        vocab_size=16, hidden_size=8, num_layers=1, num_heads=2, max_position_embeddings=8
    )
    graphdef, params = gpt2.init(config, jax.random.key(0))
    return config, graphdef, params, gpt2.decoder(graphdef)


def _hf_config(**extra) -> dict:
    """A minimal valid GPT-2 config.json, plus ``extra`` fields."""
    base = {"architectures": ["GPT2LMHeadModel"], "vocab_size": 16, "n_embd": 8, "n_layer": 1, "n_head": 2}
    return base | extra


def _export_into_non_empty():
    config, _, params, _ = _tiny()
    # A relative path inside a fresh directory, so the message (and docs/errors.md) is the same everywhere.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        os.makedirs("policy")
        open(os.path.join("policy", "notes.txt"), "w").close()
        convert.export("policy", config, params)


# fmt: off
CASES = [
    raises("models.gpt2.GPT2Config", STATIC, "hidden_size=30, num_heads=4",
           lambda: gpt2.GPT2Config.tiny(hidden_size=30),
           r"hidden_size=30 not divisible by num_heads=4"),
    raises("models.gpt2.GPT2Config", UNKNOWN, 'compute_dtype="float16"',
           lambda: gpt2.GPT2Config.tiny(compute_dtype="float16"),
           r"compute_dtype must be one of \(None, 'float32', 'bfloat16'\), got 'float16'"),
    raises("models.gpt2.init_cache", SHAPE, "size=9 > max_position_embeddings=8",
           lambda: gpt2.init_cache(_tiny()[0], 1, 9),
           r"a cache of 9 slots needs positions up to 8, but the model has max_position_embeddings=8"),
    raises("models.gpt2 apply", SHAPE, "positions 3..8 with max_position_embeddings=8",
           lambda: _tiny()[3](_tiny()[2], jnp.zeros((1, 6), jnp.int32), jnp.arange(3, 9)[None]),
           r"positions must lie in \[0, 8\) \(max_position_embeddings\), got \[3, 8\]"),
    returns("models.gpt2 apply", SHAPE, "a traced (jit) position 8 with max_position_embeddings=8",
            lambda: jax.jit(_tiny()[3])(_tiny()[2], jnp.zeros((1, 2), jnp.int32), jnp.array([[7, 8]]))[0],
            "NaN logits for that batch row (cannot raise under jit)", all_nan),
    raises("models.convert.config_from_hf", DOMAIN, "GPT-2 reorder_and_upcast_attn=true",
           lambda: convert.config_from_hf(_hf_config(reorder_and_upcast_attn=True)),
           r"config\.json field reorder_and_upcast_attn=True is not supported by cat_jax's GPT-2"),
    raises("models.convert.config_from_hf", MISSING, "GPT-2 config.json without n_embd",
           lambda: convert.config_from_hf({k: v for k, v in _hf_config().items() if k != "n_embd"}),
           r"config\.json of a GPT2LMHeadModel lacks the field\(s\) \['n_embd'\]"),
    raises("models.convert.export", DOMAIN, "a non-empty target directory", _export_into_non_empty,
           r"export target policy is not empty; pass overwrite=True or choose a new directory"),
    raises("models.lora.LoRAConfig", STATIC, "dropout=0.1", lambda: lora.LoRAConfig(dropout=0.1),
           r"LoRA dropout=0\.1 is not implemented; only dropout=0 is supported"),
    raises("models.lora.init", UNKNOWN, 'targets=("q", "v") on a GPT-2 model',
           lambda: lora.init(_tiny()[1], _tiny()[2], lora.RL_PRESET, jax.random.key(0)),
           r"LoRA targets \['q', 'v'\] do not exist in a gpt2 model; its valid targets are"),
]
# fmt: on
