"""Compute-dtype policy, gradient checkpointing and the vocabulary limit of cat_jax.models.llama."""

import contextlib
import dataclasses
import io
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cat_jax import logprobs, sampling
from cat_jax.models import llama, lora
from cat_jax.testing import tiny_model

B, T = 2, 10


@pytest.fixture(scope="module")
def f32():
    return tiny_model(num_layers=1, hidden_size=64, intermediate_size=128, tie_embeddings=True)


@pytest.fixture(scope="module")
def tokens(f32):
    return jax.random.randint(jax.random.key(3), (B, T), 0, f32.config.vocab_size)


def _pos(b, t, start=0):
    return jnp.broadcast_to(jnp.arange(start, start + t, dtype=jnp.int32)[None], (b, t))


def _graphdef(config):
    return llama.abstract(config)[0]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("compute_dtype", "float16", "compute_dtype must be None"), ("remat", "full", "remat must be one of")],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        llama.LlamaConfig.tiny(**{field: value})


def test_default_compute_dtype_is_the_param_dtype():
    assert llama.LlamaConfig.tiny().matmul_dtype == jnp.float32
    assert llama.LlamaConfig.tiny(param_dtype="bfloat16").matmul_dtype == jnp.bfloat16
    assert llama.LlamaConfig.tiny(compute_dtype="bfloat16").matmul_dtype == jnp.bfloat16
    # Positional presets still construct (the new fields come last).
    assert llama.preset("mistral-7b").compute_dtype is None and llama.preset("mistral-7b").remat == "none"


def test_bf16_compute_over_f32_params(f32, tokens):
    """Runs on XLA:CPU (forward, cache, gradient); parameters and gradients stay float32; logits close."""
    cfg = dataclasses.replace(f32.config, compute_dtype="bfloat16")
    apply = llama.decoder(_graphdef(cfg))
    cache = llama.init_cache(cfg, B, T)
    assert cache[0]["k"].dtype == jnp.bfloat16
    logits, cache = jax.jit(apply)(f32.params, tokens, _pos(B, T), cache)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
    assert cache[0]["v"].dtype == jnp.bfloat16
    ref, _ = jax.jit(f32.apply)(f32.params, tokens, _pos(B, T))
    assert float(jnp.abs(jax.nn.softmax(logits) - jax.nn.softmax(ref)).max()) < 0.05
    assert not np.array_equal(np.asarray(logits), np.asarray(ref))  # bf16 really was used

    grads = jax.jit(jax.grad(lambda p: jnp.mean(logprobs.model_token_log_probs(apply, p, tokens, tokens))))(
        f32.params
    )
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(grads))


def test_matmul_inputs_are_cast(f32, tokens):
    """Every dot_general of the bf16-compute model takes bf16 projection inputs except attention (f32)."""
    cfg = dataclasses.replace(f32.config, compute_dtype="bfloat16")
    jaxpr = jax.make_jaxpr(llama.decoder(_graphdef(cfg)))(f32.params, tokens, _pos(B, T))
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    kinds = {tuple(str(v.aval.dtype) for v in e.invars) for e in dots}
    assert ("bfloat16", "bfloat16") in kinds and ("float32", "float32") in kinds  # projections; attention
    assert all(str(e.outvars[0].aval.dtype) == "float32" for e in dots)
    # 7 projections + the tied head in bf16, the 2 attention einsums in f32
    assert (
        sum(k == ("bfloat16", "bfloat16") for k in (tuple(str(v.aval.dtype) for v in e.invars) for e in dots))
        == 8
    )


def test_lora_computes_in_the_projection_compute_dtype():
    rngs = nnx.Rngs(params=0)
    lin = llama.Linear(8, 6, bias=True, dtype=jnp.float32, rngs=rngs, compute_dtype="bfloat16")
    lin.lora = llama.LoRA(8, 6, 2, 0.5, jnp.float32, rngs)  # float32 master adapter
    lin.lora.b = nnx.LoRAParam(jax.random.normal(jax.random.key(1), (2, 6)))
    x = jax.random.normal(jax.random.key(2), (3, 8))
    bf = lambda a: a.astype(jnp.bfloat16)
    dot = lambda a, b: jnp.dot(bf(a), bf(b), preferred_element_type=jnp.float32)
    want = dot(x, lin.kernel[...]) + lin.bias[...][None] + dot(dot(x, lin.lora.a[...]), lin.lora.b[...]) * 0.5
    np.testing.assert_array_equal(lin(x), want)
    # The old constructor and _dot(x, w) still work: compute in the weight's dtype.
    plain = llama.Linear(8, 6, bias=False, dtype=jnp.float32, rngs=rngs)
    np.testing.assert_array_equal(plain(x), llama._dot(x, plain.kernel[...]))
    assert llama.LoRA(8, 6, 2, 1.0, jnp.float32, rngs)(x).dtype == jnp.float32


def test_lora_model_with_bf16_compute_keeps_f32_adapters(f32, tokens):
    cfg = dataclasses.replace(f32.config, compute_dtype="bfloat16")
    graphdef, adapters = lora.init(_graphdef(cfg), f32.params, lora.LoRAConfig(rank=4), jax.random.key(0))
    apply = lora.decoder(graphdef)
    loss = lambda a: -jnp.mean(logprobs.model_token_log_probs(apply, (a, f32.params), tokens, tokens))
    # Shapes and dtypes only (no compile): float32 adapter gradients, bf16 matmuls inside.
    g = jax.eval_shape(jax.grad(loss), adapters)
    assert {x.dtype for x in jax.tree.leaves(g)} == {jnp.dtype(jnp.float32)}
    jaxpr = str(jax.make_jaxpr(loss)(adapters))
    assert "bf16[2,10,4]" in jaxpr  # the adapters: x @ a [b, t, rank] cast to bf16 for @ b


# ----------------------------------------------------------------------------- remat


@pytest.fixture(scope="module")
def remat_losses():
    base = tiny_model(num_layers=3, hidden_size=32, intermediate_size=64, vocab_size=32)
    toks = jax.random.randint(jax.random.key(5), (2, 16), 0, base.config.vocab_size)

    def for_mode(mode):
        apply = llama.decoder(_graphdef(dataclasses.replace(base.config, remat=mode)))
        return lambda p: -jnp.mean(logprobs.model_token_log_probs(apply, p, toks, toks))

    return base, {m: for_mode(m) for m in llama.REMAT_POLICIES}


_REFERENCE = {}


def _reference_grads(remat_losses):
    if "none" not in _REFERENCE:
        base, losses = remat_losses
        _REFERENCE["none"] = jax.jit(jax.value_and_grad(losses["none"]))(base.params)
    return _REFERENCE["none"]


@pytest.mark.parametrize("mode", ["block", "dots"])
def test_remat_same_loss_and_gradients(remat_losses, mode):
    base, losses = remat_losses
    v0, g0 = _reference_grads(remat_losses)
    v1, g1 = jax.jit(jax.value_and_grad(losses[mode]))(base.params)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


_ITEMSIZE = {"f32": 4, "bf16": 2, "f16": 2, "i32": 4, "u32": 4, "bool": 1, "f64": 8, "i64": 8}


def _residual_bytes(fn, *args) -> int:
    """Bytes of the non-argument residuals of the backward pass (from print_saved_residuals)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(fn, *args)
    total = 0
    for line in out.getvalue().splitlines():
        m = re.match(r"(\w+)\[([\d,]*)\]", line)
        if m and "from the argument" not in line:
            total += int(np.prod([int(d) for d in m.group(2).split(",") if d])) * _ITEMSIZE[m.group(1)]
    return total


def test_remat_saves_fewer_residuals(remat_losses):
    base, losses = remat_losses
    saved = {m: _residual_bytes(f, base.params) for m, f in losses.items()}
    assert saved["block"] < saved["dots"] < saved["none"], saved
    assert saved["block"] * 5 < saved["none"], saved


MEMORY_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, jax, jax.numpy as jnp
    from cat_jax import logprobs
    from cat_jax.models import llama
    out = {}
    for mode in llama.REMAT_POLICIES:
        cfg = llama.LlamaConfig.tiny(num_layers=4, hidden_size=64, intermediate_size=192, vocab_size=64,
                                     remat=mode)
        graphdef, params = llama.init(cfg, jax.random.key(0))
        apply = llama.decoder(graphdef)
        toks = jax.random.randint(jax.random.key(1), (8, 64), 0, 64)
        loss = lambda p: -jnp.mean(logprobs.model_token_log_probs(apply, p, toks, toks))
        compiled = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
        out[mode] = compiled.memory_analysis().temp_size_in_bytes
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_remat_lowers_compiled_temp_memory():
    """XLA's compiled temp memory drops with remat. XLA:CPU's default concurrency-optimised scheduler hoists
    the recomputation next to the forward pass (so remat saves little there); its memory-minimising
    scheduler, like the GPU and TPU ones, keeps it in the backward pass: the child process selects it."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    temp = {k: int(v) for k, v in __import__("json").loads(run.stdout.strip().splitlines()[-1]).items()}
    assert temp["block"] * 2 < temp["none"], temp
    assert temp["dots"] < temp["none"], temp


def test_remat_cached_decoding_unchanged(f32, tokens):
    cfg = dataclasses.replace(f32.config, remat="block")
    apply = llama.decoder(_graphdef(cfg))
    cache = llama.init_cache(cfg, B, T)
    got, _ = jax.jit(apply)(f32.params, tokens, _pos(B, T), cache)
    want, _ = jax.jit(f32.apply)(f32.params, tokens, _pos(B, T), llama.init_cache(f32.config, B, T))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- vocabulary limit


def test_limit_vocab_masks_padding_ids(f32, tokens):
    v = f32.config.vocab_size
    same = llama.limit_vocab(f32.apply, v)
    full, _ = jax.jit(f32.apply)(f32.params, tokens, _pos(B, T))
    np.testing.assert_array_equal(jax.jit(same)(f32.params, tokens, _pos(B, T))[0], full)
    lim = llama.limit_vocab(f32.apply, 200)
    assert lim == llama.limit_vocab(f32.apply, 200) and hash(lim) == hash(llama.limit_vocab(f32.apply, 200))
    logits, _ = jax.jit(lim)(f32.params, tokens, _pos(B, T))
    np.testing.assert_array_equal(logits[..., :200], full[..., :200])
    assert bool((logits[..., 200:] == llama.MASKED_LOGIT).all())
    logp = jax.nn.log_softmax(logits)
    assert bool(jnp.isfinite(logp).all()) and float(jnp.exp(logp[..., 200:]).max()) == 0.0


def test_sampler_never_draws_an_id_beyond_the_tokenizer(f32):
    num_ids = 7  # of 256: almost all the mass of the model sits on the masked ids
    lim = llama.limit_vocab(f32.apply, num_ids)
    prompts = jnp.asarray([[1, 2, 3], [4, 5, 0]], jnp.int32)
    for strategy in (sampling.Temperature(3.0),):
        out = sampling.sample(
            lim,
            f32.params,
            llama.init_cache(f32.config, 2, 3 + 12),
            prompts,
            jnp.asarray([3, 2]),
            jax.random.key(0),
            num_samples=16,
            max_new_tokens=12,
            strategy=strategy,
        )
        assert int(out.tokens.max()) < num_ids and bool(jnp.isfinite(out.logp_model).all())
    # Without the limit the model puts almost all its tempered mass on the masked ids.
    logits, _ = jax.jit(f32.apply)(f32.params, prompts, _pos(2, 3))
    assert float(jax.nn.softmax(logits / 3.0)[..., num_ids:].sum(-1).min()) > 0.9


@pytest.mark.parametrize(("num_ids", "match"), [(0, "positive int"), (True, "positive int")])
def test_limit_vocab_validation(f32, num_ids, match):
    with pytest.raises(ValueError, match=match):
        llama.limit_vocab(f32.apply, num_ids)


def test_limit_vocab_beyond_the_model(f32, tokens):
    with pytest.raises(ValueError, match="exceeds the model's vocabulary of 256"):
        jax.eval_shape(llama.limit_vocab(f32.apply, 300), f32.params, tokens, _pos(B, T))
