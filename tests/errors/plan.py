"""Bad inputs of cat_jax.plan: rows of docs/errors.md (see tests/errors/__init__.py).

``MODELS_CASES``: rows of cat_jax.models.llama added with the compute-dtype policy, remat and the vocabulary
limit, for tests/errors/models.py's ``CASES`` (kept here while that file belongs to another branch).
"""

from cat_jax import plan
from cat_jax.models import llama

from . import DOMAIN, STATIC, UNKNOWN, raises


def _plan(**kwargs):
    return plan.plan(llama.LlamaConfig.tiny(), **{"batch": 1, "seq_len": 8, **kwargs})


def _limited_call():
    import jax
    import jax.numpy as jnp

    graphdef, params = llama.init(llama.LlamaConfig.tiny(num_layers=1), jax.random.key(0))
    tokens = jnp.zeros((1, 2), jnp.int32)
    return llama.limit_vocab(llama.decoder(graphdef), 300)(params, tokens, tokens)


# fmt: off
CASES = [
    raises("plan.plan", UNKNOWN, 'trainable="half"', lambda: _plan(trainable="half"),
           r"trainable must be one of \['full', 'lora'\], got 'half'"),
    raises("plan.plan", UNKNOWN, 'remat="all"', lambda: _plan(remat="all"),
           r"remat must be one of \['block', 'dots', 'none'\], got 'all'"),
    raises("plan.plan", UNKNOWN, 'optimizer="adam"', lambda: _plan(optimizer="adam"),
           r"optimizer must be one of \['adamw', 'sgd'\], got 'adam'"),
    raises("plan.plan", DOMAIN, "devices=4, fsdp=3", lambda: _plan(devices=4, fsdp=3),
           r"fsdp=3 must divide devices=4"),
    raises("plan.plan", UNKNOWN, 'trainable="lora", lora_targets=("qkv",)',
           lambda: _plan(trainable="lora", lora_targets=("qkv",)),
           r"lora_targets must be a non-empty subset of"),
    raises("plan.plan", STATIC, "batch=-1", lambda: _plan(batch=-1),
           r"batch must be an integer in >= 0, got -1"),
    raises("plan.plan", DOMAIN, "capacity_bytes=0", lambda: _plan(capacity_bytes=0),
           r"capacity_bytes must be > 0 or None, got 0"),
]

MODELS_CASES = [
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
