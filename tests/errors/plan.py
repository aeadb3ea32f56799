"""Bad inputs of cat_jax.plan: rows of docs/errors.md (see tests/errors/__init__.py)."""

from cat_jax import plan
from cat_jax.models import llama

from . import DOMAIN, STATIC, UNKNOWN, raises


def _plan(**kwargs):
    return plan.plan(llama.LlamaConfig.tiny(), **{"batch": 1, "seq_len": 8, **kwargs})


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
# fmt: on
