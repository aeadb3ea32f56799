"""cat_jax.plan: parameter counts against real models, bytes against XLA's compiled memory, the 7B figures."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from cat_jax import logprobs, plan, train_lib
from cat_jax.models import llama, lora

GiB = 1024**3


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": True, "qkv_bias": True, "num_kv_heads": 4}])
def test_parameter_counts_equal_the_initialised_model(overrides):
    cfg = llama.LlamaConfig.tiny(num_layers=2, hidden_size=64, intermediate_size=96, **overrides)
    graphdef, params = llama.init(cfg, jax.random.key(0))
    p = plan.plan(cfg, trainable="full", batch=2, seq_len=8)
    assert p.num_params == p.trainable_params == sum(x.size for x in jax.tree.leaves(params))
    targets = ("q", "k", "v", "o", "gate", "up", "down")
    _, adapters = lora.init(graphdef, params, lora.LoRAConfig(rank=3, targets=targets), jax.random.key(1))
    q = plan.plan(cfg, trainable="lora", lora_rank=3, lora_targets=targets, batch=2, seq_len=8)
    assert q.trainable_params == sum(x.size for x in jax.tree.leaves(adapters))
    assert q.num_params == p.num_params


def test_estimate_within_a_factor_of_the_compiled_training_step():
    """A full-training AdamW step of a small model: XLA:CPU's argument + temp bytes within 2x of the plan."""
    cfg = llama.LlamaConfig.tiny(num_layers=2, hidden_size=64, intermediate_size=192, vocab_size=512)
    batch, seq = 8, 64
    graphdef, params = llama.init(cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)

    def loss_fn(p, batch_, rng):
        return -jnp.mean(logprobs.model_token_log_probs(apply, p, batch_, batch_)), {}

    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-3))
    state = train_lib.TrainState.create(params, tx, seed=0)
    tokens = jnp.zeros((batch, seq), jnp.int32)
    step = jax.jit(train_lib.make_train_step(loss_fn, tx), donate_argnums=0)
    mem = step.lower(state, tokens).compile().memory_analysis()
    measured = mem.argument_size_in_bytes + mem.temp_size_in_bytes
    estimate = plan.plan(cfg, trainable="full", batch=batch, seq_len=seq).total_bytes
    print(f"plan {estimate:,} B, XLA:CPU argument + temp {measured:,} B, ratio {estimate / measured:.2f}")
    assert measured / 2 <= estimate <= measured * 2


def test_mistral_7b_lora_figures():
    cfg = llama.preset("mistral-7b", param_dtype="bfloat16", compute_dtype="bfloat16", remat="block")
    p = plan.plan(cfg, trainable="lora", lora_rank=16, batch=1, seq_len=1024, capacity_bytes=80 * 10**9)
    print(
        "\nMistral-7B, LoRA r=16 on q,k,v,o, SFT at 1 x 1024 tokens, remat=block, one 80 GB GPU:\n"
        + p.format()
    )
    assert round(p.num_params / 1e7) == 724  # 7.24e9
    assert p.trainable_params == 13_631_488  # 32 layers x 16 x (2 x (4096 + 4096) + 2 x (4096 + 1024))
    assert p.params_bytes == 2 * p.num_params and p.master_bytes == 4 * p.trainable_params
    assert p.fits and "total per device" in p.format() and "GiB" in p.format()
    rl = plan.plan(
        cfg, trainable="lora", lora_targets=("q", "v"), batch=8, seq_len=812, kv_batch=64, kv_len=812
    )
    print(rl.format())
    assert rl.kv_cache_bytes == 32 * 2 * 8 * 128 * 812 * 64 * 2
    full = plan.plan(
        dataclasses.replace(cfg, param_dtype="float32"), batch=1, seq_len=1024, capacity_bytes=80 * 10**9
    )
    assert not full.fits and "DOES NOT FIT" in full.format()  # full fine-tuning: 16 bytes per parameter


def test_remat_and_fsdp_lower_the_estimate():
    cfg = llama.preset("qwen2.5-0.5b")
    kw = dict(batch=4, seq_len=512)
    none, dots, block = (plan.plan(cfg, remat=m, **kw).activations_bytes for m in ("none", "dots", "block"))
    assert block < dots < none
    one, four = plan.plan(cfg, **kw), plan.plan(cfg, devices=4, fsdp=4, **kw)
    assert four.params_bytes * 4 == one.params_bytes and four.tokens_per_step == 4 * one.tokens_per_step
    assert plan.plan(cfg, batch=0, seq_len=0).grads_bytes == 0  # evaluation only


@dataclasses.dataclass(frozen=True)
class GPT2Like:
    """A config with the GPT-2 field names: no num_kv_heads, head_dim or compute_dtype."""

    vocab_size: int = 100
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 64
    param_dtype: str = "float32"

    def num_params(self) -> int:
        return 12345


def test_any_config_with_the_fields():
    p = plan.plan(GPT2Like(), trainable="lora", lora_rank=2, lora_targets=("q", "v"), batch=1, seq_len=16)
    assert p.num_params == 12345 and p.trainable_params == 2 * 2 * 2 * (32 + 32)
    assert p.remat == "none" and p.compute_dtype == "float32"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trainable": "half"}, "trainable must be one of"),
        ({"remat": "all"}, "remat must be one of"),
        ({"devices": 4, "fsdp": 3}, "fsdp=3 must divide devices=4"),
        ({"trainable": "lora", "lora_targets": ("qkv",)}, "lora_targets must be a non-empty subset"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"batch": -1}, "batch must be"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan.plan(llama.LlamaConfig.tiny(), **{"batch": 1, "seq_len": 8, **kwargs})
