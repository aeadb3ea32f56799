"""GPT-2 family decoder (GPT-2, DistilGPT-2, ProtGPT2): Flax NNX behind llama's functional boundary.

Architecture (Hugging Face ``GPT2LMHeadModel``): token embedding ``wte`` + learned position embedding ``wpe``
-> ``num_layers`` x [LayerNorm -> multi-head attention (fused ``c_attn`` q|k|v projection with bias, scores
scaled by ``1/sqrt(head_dim)``) -> ``c_proj`` -> residual, LayerNorm -> ``c_fc`` -> GELU (tanh approximation,
HF ``gelu_new``) -> ``c_proj`` -> residual] -> LayerNorm ``ln_f`` -> LM head tied to ``wte``. No dropout.

The contract is exactly :mod:`cat_jax.models.llama`'s, so the sampler, losses, evaluation and LoRA work
unchanged::

    graphdef, params = init(GPT2Config.tiny(), jax.random.key(0))
    apply = decoder(graphdef)                     # the same hashable llama.Decoder
    cache = init_cache(config, batch=4, size=64)  # tuple of {"k", "v"} [batch, heads, size, head_dim]
    logits, cache = apply(params, tokens, positions, cache)   # [b, t, vocab] float32

Compute policy and cache layout are llama's: projections are :class:`llama.Linear` (matmul inputs in
``compute_dtype``, default the parameter dtype, float32 accumulation), the residual stream, LayerNorm,
attention and logits are float32, the cache holds the compute dtype and a token at position ``p`` is written
to slot ``p``.

**Positions.** ``wpe`` has ``max_position_embeddings`` (HF ``n_positions``) rows, so positions must lie in
``[0, n_positions)``. What can be checked statically is: ``init_cache`` refuses more slots than positions (the
sampler writes position ``p`` to slot ``p``, so every sampled position then fits), a call with more than
``n_positions`` tokens raises, and concrete (non-traced) positions are range-checked. Traced positions inside
``jit`` cannot raise: an out-of-range position there reads a NaN embedding row (``mode="fill"``), so the
logits of its batch row are NaN (its key and value reach every query of the row through the masked
attention sum), never silently those of a clamped position; other rows are unaffected.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array

from cat_jax import numerics as nx
from cat_jax.models import llama
from cat_jax.models.llama import DTYPES, Cache, Decoder, Linear

# compute_dtype values GPT2Config accepts (None: the parameter dtype).
COMPUTE_DTYPES = (None, "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """Static hyper-parameters of a GPT-2-family decoder; validated on construction.

    ``intermediate_size`` None means ``4 * hidden_size`` (HF ``n_inner: null``) and is resolved here, so two
    configs of the same model compare equal. ``compute_dtype`` is the matmul input and KV cache dtype of
    llama's compute-dtype policy (None: the parameter dtype).
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int | None = None
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    param_dtype: str = "float32"
    compute_dtype: str | None = None
    remat: str = "none"  # gradient checkpointing of each block: none | block | dots (llama.REMAT_POLICIES)

    def __post_init__(self):
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GPT2Config.{name} must be a positive int, got {v!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} not divisible by num_heads={self.num_heads}")
        if self.param_dtype not in DTYPES:
            raise ValueError(f"param_dtype must be one of {sorted(DTYPES)}, got {self.param_dtype!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if self.remat not in llama.REMAT_POLICIES:
            raise ValueError(f"remat must be one of {list(llama.REMAT_POLICIES)}, got {self.remat!r}")
        if isinstance(self.layer_norm_eps, bool) or not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @property
    def dim_head(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads  # multi-head attention: one key/value head per query head

    @property
    def dtype(self):
        """Storage dtype of the parameters."""
        return DTYPES[self.param_dtype]

    @property
    def matmul_dtype(self):
        """Dtype of matmul inputs and of the KV cache: ``compute_dtype``, else the parameter dtype."""
        return DTYPES[self.compute_dtype or self.param_dtype]

    def num_params(self) -> int:
        """Parameter count (the LM head is tied to ``wte`` and counted once)."""
        d, f = self.hidden_size, self.intermediate_size
        layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return (self.vocab_size + self.max_position_embeddings) * d + self.num_layers * layer + 2 * d

    @classmethod
    def tiny(cls, **overrides) -> GPT2Config:
        """~0.96M parameters: tests and CPU experiments that train from scratch."""
        base = dict(vocab_size=256, hidden_size=128, num_layers=4, num_heads=4, max_position_embeddings=1024)
        return cls(**{**base, **overrides})


# Real sizes (from the published config.json files; convert.load reads the exact values of a checkpoint).
PRESETS: dict[str, GPT2Config] = {
    "gpt2-tiny": GPT2Config.tiny(),
    "gpt2": GPT2Config(50257, 768, 12, 12),  # 124M
    "gpt2-medium": GPT2Config(50257, 1024, 24, 16),  # 355M
    "gpt2-large": GPT2Config(50257, 1280, 36, 20),  # 774M
    # ProtGPT2 (nferruz/ProtGPT2, SPEC §3.4's Table 6 model): the GPT2-large shape, a protein BPE vocabulary.
    "protgpt2": GPT2Config(50257, 1280, 36, 20),
}


def preset(name: str, **overrides) -> GPT2Config:
    """A named preset, optionally with fields replaced (``param_dtype="bfloat16"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown GPT-2 preset {name!r}; valid names: {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


class LayerNorm(nnx.Module):
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis, in float32."""

    def __init__(self, dim: int, eps: float, dtype):
        self.scale = nnx.Param(jnp.ones((dim,), dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        x = (x - mean) * jax.lax.rsqrt(var + self.eps)
        shape = (1,) * (x.ndim - 1) + (-1,)
        return x * self.scale[...].astype(jnp.float32).reshape(shape) + self.bias[...].astype(
            jnp.float32
        ).reshape(shape)


def _linear(config: GPT2Config, din: int, dout: int, rngs: nnx.Rngs) -> Linear:
    # HF Conv1D stores [in, out] with a bias: exactly llama.Linear's kernel layout.
    return Linear(din, dout, bias=True, dtype=config.dtype, rngs=rngs, compute_dtype=config.compute_dtype)


class Attention(nnx.Module):
    def __init__(self, config: GPT2Config, rngs: nnx.Rngs):
        d = config.hidden_size
        self.c_attn = _linear(config, d, 3 * d, rngs)
        self.c_proj = _linear(config, d, d, rngs)
        self.config = config

    def __call__(self, x, positions, layer_cache):
        c = self.config
        b, t, d = x.shape
        h, hd = c.num_heads, c.dim_head
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # HF order: query | key | value
        q = q.reshape(b, t, h, hd)
        k = k.reshape(b, t, h, hd).astype(c.matmul_dtype)
        v = v.reshape(b, t, h, hd).astype(c.matmul_dtype)
        if layer_cache is None:
            keys, values, key_pos = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), positions
        else:
            rows = jnp.arange(b)[:, None]
            # As llama: out-of-range slots are dropped, never clamped onto the last slot.
            keys = layer_cache["k"].at[rows, :, positions].set(k, mode="drop")
            values = layer_cache["v"].at[rows, :, positions].set(v, mode="drop")
            layer_cache = {"k": keys, "v": values}
            key_pos = jnp.broadcast_to(jnp.arange(keys.shape[2])[None, :], (b, keys.shape[2]))
        keys32, values32 = keys.astype(jnp.float32), values.astype(jnp.float32)
        scores = jnp.einsum("bthd,bhsd->bhts", q, keys32) / math.sqrt(hd)
        visible = key_pos[:, None, :] <= positions[:, :, None]  # [b, t, s]; every query sees itself
        scores = jnp.where(visible[:, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1)
        out = jnp.einsum("bhts,bhsd->bthd", probs, values32)
        return self.c_proj(out.reshape(b, t, d)), layer_cache


class MLP(nnx.Module):
    def __init__(self, config: GPT2Config, rngs: nnx.Rngs):
        self.c_fc = _linear(config, config.hidden_size, config.intermediate_size, rngs)
        self.c_proj = _linear(config, config.intermediate_size, config.hidden_size, rngs)

    def __call__(self, x):
        return self.c_proj(jax.nn.gelu(self.c_fc(x), approximate=True))  # HF "gelu_new"


class Block(nnx.Module):
    def __init__(self, config: GPT2Config, rngs: nnx.Rngs):
        self.ln_1 = LayerNorm(config.hidden_size, config.layer_norm_eps, config.dtype)
        self.attn = Attention(config, rngs)
        self.ln_2 = LayerNorm(config.hidden_size, config.layer_norm_eps, config.dtype)
        self.mlp = MLP(config, rngs)

    def __call__(self, x, positions, layer_cache):
        h, layer_cache = self.attn(self.ln_1(x), positions, layer_cache)
        x = x + h
        return x + self.mlp(self.ln_2(x)), layer_cache


def _check_positions(config: GPT2Config, tokens, positions) -> None:
    n = config.max_position_embeddings
    if tokens.shape[-1] > n:
        raise ValueError(
            f"{tokens.shape[-1]} tokens per row exceed the model's max_position_embeddings={n} (n_positions)"
        )
    if nx.is_concrete(positions):
        pos = np.asarray(positions)
        if pos.size and (pos.min() < 0 or pos.max() >= n):
            raise ValueError(
                f"positions must lie in [0, {n}) (max_position_embeddings), got [{pos.min()}, {pos.max()}]"
            )


class GPT2(nnx.Module):
    """The decoder. ``__call__(tokens, positions, cache) -> (logits float32, cache)``; cache may be None."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        self.config = config
        init = nnx.initializers.normal(0.02)
        d = config.hidden_size
        self.wte = nnx.Param(init(rngs.params(), (config.vocab_size, d), config.dtype))
        self.wpe = nnx.Param(init(rngs.params(), (config.max_position_embeddings, d), config.dtype))
        self.h = nnx.List([Block(config, rngs) for _ in range(config.num_layers)])
        self.ln_f = LayerNorm(d, config.layer_norm_eps, config.dtype)

    def __call__(self, tokens, positions, cache=None):
        _check_positions(self.config, tokens, positions)
        x = jnp.take(self.wte[...], tokens, axis=0).astype(jnp.float32)
        # mode="fill": a traced out-of-range position reads NaN (see the module docstring), never a clamp.
        wpe = self.wpe[...].astype(jnp.float32)
        x = x + jnp.take(wpe, positions, axis=0, mode="fill", fill_value=jnp.nan)
        new_cache = []
        for i, layer in enumerate(self.h):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache = llama.run_block(layer, self.config.remat, x, positions, layer_cache)
            new_cache.append(layer_cache)
        x = self.ln_f(x)
        dt = self.config.matmul_dtype
        logits = jnp.einsum(
            "btd,vd->btv", x.astype(dt), self.wte[...].astype(dt), preferred_element_type=jnp.float32
        )
        return logits, (None if cache is None else tuple(new_cache))


@functools.partial(jax.jit, static_argnames=("config",))
def _init_params(config: GPT2Config, key: Array) -> nnx.State:
    return nnx.split(GPT2(config, rngs=nnx.Rngs(params=key)))[1]


def init(config: GPT2Config, key: Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Random initialisation (jitted) -> ``(graphdef, params)``."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0))))
    return graphdef, _init_params(config, key)


def abstract(config: GPT2Config) -> tuple[nnx.GraphDef, nnx.State]:
    """Shapes and dtypes only (``jax.ShapeDtypeStruct`` leaves): the target of checkpoint conversion."""
    return nnx.split(nnx.eval_shape(lambda: GPT2(config, rngs=nnx.Rngs(0))))


def init_cache(config: GPT2Config, batch: int, size: int) -> Cache:
    """Zero KV cache with ``size`` slots per row, at most ``max_position_embeddings`` (slot = position)."""
    if size > config.max_position_embeddings:
        raise ValueError(
            f"a cache of {size} slots needs positions up to {size - 1}, but the model has "
            f"max_position_embeddings={config.max_position_embeddings} (n_positions); shorten the prompts "
            "or max_new_tokens"
        )
    shape = (batch, config.num_heads, size, config.dim_head)
    return tuple(
        {"k": jnp.zeros(shape, config.matmul_dtype), "v": jnp.zeros(shape, config.matmul_dtype)}
        for _ in range(config.num_layers)
    )


def decoder(graphdef: nnx.GraphDef) -> Decoder:
    """``apply(params, tokens, positions, cache) -> (logits, cache)``: llama's :class:`~llama.Decoder`."""
    return llama.decoder(graphdef)
