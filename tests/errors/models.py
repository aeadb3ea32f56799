"""Bad inputs of cat_jax.models (llama, convert, lora): rows of docs/errors.md (see tests/errors/)."""

from cat_jax.models import convert, llama, lora

from . import DOMAIN, MISSING, STATIC, TYPO, UNKNOWN, raises


def _hf_config(**extra) -> dict:
    """A minimal valid Llama config.json, plus ``extra`` fields."""
    base = {
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 16,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    return base | extra


def _limited_call():
    import jax
    import jax.numpy as jnp

    graphdef, params = llama.init(llama.LlamaConfig.tiny(num_layers=1), jax.random.key(0))
    tokens = jnp.zeros((1, 2), jnp.int32)
    return llama.limit_vocab(llama.decoder(graphdef), 300)(params, tokens, tokens)


# fmt: off
CASES = [
    raises("models.LlamaConfig", STATIC, "hidden_size=0", lambda: llama.LlamaConfig.tiny(hidden_size=0),
           r"LlamaConfig\.hidden_size must be a positive int, got 0"),
    raises("models.LlamaConfig", STATIC, "num_heads=4, num_kv_heads=3",
           lambda: llama.LlamaConfig.tiny(num_heads=4, num_kv_heads=3),
           r"num_heads=4 must be a multiple of num_kv_heads=3 \(GQA\)"),
    raises("models.LlamaConfig", UNKNOWN, 'param_dtype="float8"',
           lambda: llama.LlamaConfig.tiny(param_dtype="float8"),
           r"param_dtype must be one of"),
    raises("models.preset", UNKNOWN, '"llama-7b"', lambda: llama.preset("llama-7b"),
           r"unknown model preset 'llama-7b'; valid names:"),
    raises("models.preset", TYPO, 'preset("tiny", hidden_sizes=64)',
           lambda: llama.preset("tiny", hidden_sizes=64),
           r"unexpected keyword argument 'hidden_sizes'", exc=TypeError),
    raises("models.convert.load", MISSING, '"no/such/checkpoint"', lambda: convert.load("no/such/checkpoint"),
           r"No such file or directory: 'no/such/checkpoint/config\.json'", exc=FileNotFoundError),
    raises("models.convert.config_from_hf", UNKNOWN, 'architectures=["FalconForCausalLM"]',
           lambda: convert.config_from_hf({"architectures": ["FalconForCausalLM"]}),
           r"FalconForCausalLM"),
    raises("models.convert.config_from_hf", TYPO, "an unknown config.json field foo=1",
           lambda: convert.config_from_hf(_hf_config(foo=1)),
           r"unsupported config\.json field foo=1; cat_jax would ignore it, so it refuses"),
    raises("models.convert.config_from_hf", DOMAIN, 'rope_scaling={"rope_type": "yarn"}',
           lambda: convert.config_from_hf(_hf_config(rope_scaling={"rope_type": "yarn"})),
           r"RoPE type 'yarn' is not supported \(only 'default' and 'llama3'\)"),
    raises("models.convert.config_from_hf", MISSING, "config.json without num_attention_heads",
           lambda: convert.config_from_hf({k: v for k, v in _hf_config().items()
                                           if k != "num_attention_heads"}),
           r"num_attention_heads", exc=KeyError),
    raises("models.lora.LoRAConfig", STATIC, "rank=0", lambda: lora.LoRAConfig(rank=0),
           r"rank must be an integer in >= 1, got 0"),
    raises("models.lora.LoRAConfig", UNKNOWN, 'targets=("qkv",)', lambda: lora.LoRAConfig(targets=("qkv",)),
           r"LoRA targets must be a non-empty subset of"),
    raises("models.lora.LoRAConfig", DOMAIN, "alpha=0", lambda: lora.LoRAConfig(alpha=0),
           r"alpha must be a number > 0, got 0"),
    raises("models.LlamaConfig", UNKNOWN, 'compute_dtype="float16"',
           lambda: llama.LlamaConfig.tiny(compute_dtype="float16"),
           r"compute_dtype must be None \(= param_dtype\) or one of \['bfloat16', 'float32'\], "
           r"got 'float16'"),
    raises("models.LlamaConfig", UNKNOWN, 'remat="full"', lambda: llama.LlamaConfig.tiny(remat="full"),
           r"remat must be one of \['none', 'block', 'dots'\], got 'full'"),
    raises("models.limit_vocab", STATIC, "num_ids=0", lambda: llama.limit_vocab(llama.decoder(None), 0),
           r"num_ids must be a positive int \(the tokenizer's vocabulary size\), got 0"),
    raises("models.limit_vocab", DOMAIN, "num_ids=300 on a 256-id model", _limited_call,
           r"num_ids=300 exceeds the model's vocabulary of 256 logits"),
]
# fmt: on
