"""Llama-family decoder (Llama 2/3, Mistral, Qwen2) as a Flax NNX module behind a functional boundary.

Architecture: token embedding -> ``num_layers`` x [RMSNorm -> grouped-query attention with RoPE -> residual,
RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> LM head (optionally tied to the embedding). Qwen2 adds
biases on the q/k/v projections (``qkv_bias=True``); Llama 3 rescales the RoPE frequencies (``rope_scaling``).

Functional use (DESIGN.md §3)::

    graphdef, params = init(LlamaConfig.tiny(), jax.random.key(0))
    apply = decoder(graphdef)                     # hashable: a static argument of jit
    cache = init_cache(config, batch=4, size=64)  # explicit pytree, preallocated
    logits, cache = apply(params, tokens, positions, cache)   # [b, t, vocab] float32

**Compute policy.** Parameters are stored in ``param_dtype`` (float32 or bfloat16). Matmul inputs are cast
to the parameter dtype and accumulate in float32 (``preferred_element_type``); the residual stream, RMSNorm,
RoPE, attention (scores, softmax and the weighted sum, with cached keys/values upcast) and the output logits
are float32; the KV cache is stored in the parameter dtype. With float32 parameters every step is float32
(the HF parity tests, 1e-4).

**KV cache.** A tuple with one ``{"k", "v"}`` dict per layer, each ``[batch, kv_heads, size, head_dim]``:
batch on axis 0 and cache slot on axis -2 for every leaf (the sampler relies on this). A token at position
``p`` is written to slot ``p`` and attends to slots ``<= p``. With right-padded prompts this is exact: slots
past a row's length hold padding only until the generated token at that position overwrites them, and
causality hides them before that.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int, PyTree

Cache = tuple[dict[str, Array], ...]
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Static hyper-parameters of a Llama-family decoder; validated on construction."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # None: hidden_size // num_heads
    rope_theta: float = 10000.0
    # Llama 3 frequency scaling: (factor, low_freq_factor, high_freq_factor, original_max_position), or None.
    rope_scaling: tuple[float, float, float, int] | None = None
    rms_norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = False
    max_position_embeddings: int = 2048
    param_dtype: str = "float32"

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads} (GQA)"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} not divisible by num_heads={self.num_heads}; set head_dim"
            )
        if self.dim_head % 2:
            raise ValueError(f"head_dim={self.dim_head} must be even for RoPE")
        if self.param_dtype not in DTYPES:
            raise ValueError(f"param_dtype must be one of {sorted(DTYPES)}, got {self.param_dtype!r}")
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")

    @property
    def dim_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def dtype(self):
        return DTYPES[self.param_dtype]

    def num_params(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        d, h, kv, hd, f = (
            self.hidden_size,
            self.num_heads,
            self.num_kv_heads,
            self.dim_head,
            self.intermediate_size,
        )
        attn = d * hd * (2 * h + 2 * kv) + (hd * (h + 2 * kv) if self.qkv_bias else 0)
        layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_embeddings else self.vocab_size * d
        return self.vocab_size * d + self.num_layers * layer + d + head

    @classmethod
    def tiny(cls, **overrides) -> LlamaConfig:
        """~0.85M parameters: tests and CPU experiments that train from scratch."""
        base = dict(
            vocab_size=256,
            hidden_size=128,
            intermediate_size=384,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            max_position_embeddings=1024,
        )
        return cls(**{**base, **overrides})


# Real sizes, for reference and for checkpoints converted with cat_jax.models.convert (which reads the exact
# values from config.json; these presets document the shapes and initialise from scratch at that size).
PRESETS: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig.tiny(),
    # Qwen2.5-0.5B: tied embeddings, q/k/v bias, 14 q heads over 2 kv heads.
    "qwen2.5-0.5b": LlamaConfig(151936, 896, 4864, 24, 14, 2, None, 1e6, None, 1e-6, True, True, 32768),
    # Qwen2.5-1.5B.
    "qwen2.5-1.5b": LlamaConfig(151936, 1536, 8960, 28, 12, 2, None, 1e6, None, 1e-6, True, True, 32768),
    # Llama-3.2-1B: Llama 3 RoPE scaling, tied embeddings.
    "llama3.2-1b": LlamaConfig(
        128256, 2048, 8192, 16, 32, 8, 64, 5e5, (32.0, 1.0, 4.0, 8192), 1e-5, False, True, 131072
    ),
    # Llama-2-7B: multi-head attention (kv heads = heads).
    "llama2-7b": LlamaConfig(32000, 4096, 11008, 32, 32, 32, None, 1e4, None, 1e-5, False, False, 4096),
    # Mistral-7B-Instruct-v0.2 (the paper's MATH model): GQA 32/8, theta 1e6, no sliding window.
    "mistral-7b": LlamaConfig(32000, 4096, 14336, 32, 32, 8, None, 1e6, None, 1e-5, False, False, 32768),
}


def preset(name: str, **overrides) -> LlamaConfig:
    """A named preset, optionally with fields replaced (``param_dtype="bfloat16"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid names: {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def _dot(x: Array, w: Array) -> Array:
    """Matmul in the parameter dtype with float32 accumulation and output."""
    return jnp.einsum("...i,io->...o", x.astype(w.dtype), w, preferred_element_type=jnp.float32)


class LoRA(nnx.Module):
    """Low-rank update ``x @ a @ b * scale``; ``b`` starts at zero so a fresh adapter is an exact no-op."""

    def __init__(self, din: int, dout: int, rank: int, scale: float, dtype, rngs: nnx.Rngs):
        init = nnx.initializers.he_uniform()
        self.a = nnx.LoRAParam(init(rngs.params(), (din, rank), dtype))
        self.b = nnx.LoRAParam(jnp.zeros((rank, dout), dtype))
        self.scale = scale

    def __call__(self, x: Array) -> Array:
        return _dot(_dot(x, self.a[...]), self.b[...]) * self.scale


class Linear(nnx.Module):
    """``x @ kernel (+ bias)``, kernel ``[in, out]``, with an optional adapter (cat_jax.models.lora)."""

    def __init__(self, din: int, dout: int, *, bias: bool, dtype, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.kernel = nnx.Param(init(rngs.params(), (din, dout), dtype))
        self.bias = nnx.Param(jnp.zeros((dout,), dtype)) if bias else nnx.data(None)
        self.lora = nnx.data(None)

    def __call__(self, x: Array) -> Array:
        y = _dot(x, self.kernel[...])
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32).reshape((1,) * (y.ndim - 1) + (-1,))
        if self.lora is not None:
            y = y + self.lora(x)
        return y


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.scale = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return x * self.scale[...].astype(jnp.float32).reshape((1,) * (x.ndim - 1) + (-1,))


def rope_frequencies(config: LlamaConfig) -> np.ndarray:
    """Inverse frequencies ``theta^(-2i/d)``, i < d/2, with the Llama 3 rescaling when configured."""
    d = config.dim_head
    inv = 1.0 / (config.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
    if config.rope_scaling is None:
        return inv.astype(np.float32)
    factor, low, high, old_len = config.rope_scaling
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: Float[Array, "b t h d"], positions: Int[Array, "b t"], inv_freq: np.ndarray) -> Array:
    """Rotate-half RoPE (the Hugging Face convention: pairs (i, i + d/2)), in float32."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]  # [b, t, d/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return x.astype(jnp.float32) * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


class Attention(nnx.Module):
    def __init__(self, config: LlamaConfig, rngs: nnx.Rngs):
        c, dt, hd = config, config.dtype, config.dim_head
        self.q = Linear(c.hidden_size, c.num_heads * hd, bias=c.qkv_bias, dtype=dt, rngs=rngs)
        self.k = Linear(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias, dtype=dt, rngs=rngs)
        self.v = Linear(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias, dtype=dt, rngs=rngs)
        self.o = Linear(c.num_heads * hd, c.hidden_size, bias=False, dtype=dt, rngs=rngs)
        self.config = config

    def __call__(self, x, positions, layer_cache, inv_freq):
        c = self.config
        b, t, _ = x.shape
        hd, kvh, g = c.dim_head, c.num_kv_heads, c.num_heads // c.num_kv_heads
        q = apply_rope(self.q(x).reshape(b, t, c.num_heads, hd), positions, inv_freq)
        k = apply_rope(self.k(x).reshape(b, t, kvh, hd), positions, inv_freq).astype(c.dtype)
        v = self.v(x).reshape(b, t, kvh, hd).astype(c.dtype)
        if layer_cache is None:
            keys, values, key_pos = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), positions
        else:
            rows = jnp.arange(b)[:, None]
            # Out-of-range slots are dropped, never clamped onto the last slot.
            # Advanced indices around a slice: the update is laid out [b, t, kv_heads, d], as k and v are.
            keys = layer_cache["k"].at[rows, :, positions].set(k, mode="drop")
            values = layer_cache["v"].at[rows, :, positions].set(v, mode="drop")
            layer_cache = {"k": keys, "v": values}
            key_pos = jnp.broadcast_to(jnp.arange(keys.shape[2])[None, :], (b, keys.shape[2]))
        # Attention in float32: XLA:CPU lacks a batched bf16 x bf16 -> f32 dot; long contexts want f32 scores.
        q = q.reshape(b, t, kvh, g, hd)
        keys32, values32 = keys.astype(jnp.float32), values.astype(jnp.float32)
        scale = 1.0 / math.sqrt(hd)
        if t == 1:  # decoding: [b*k] matmuls of [g, d] x [d, s] (no [t, g] transposes)
            scores = jnp.einsum("bkgd,bksd->bkgs", q[:, 0], keys32)[:, :, :, None] * scale
        else:
            scores = jnp.einsum("btkgd,bksd->bkgts", q, keys32) * scale
        visible = key_pos[:, None, :] <= positions[:, :, None]  # [b, t, s]; every query sees itself
        scores = jnp.where(visible[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1)
        if t == 1:
            out = jnp.einsum("bkgs,bksd->bkgd", probs[:, :, :, 0], values32)[:, None]
        else:
            out = jnp.einsum("bkgts,bksd->btkgd", probs, values32)
        return self.o(out.reshape(b, t, c.num_heads * hd)), layer_cache


class MLP(nnx.Module):
    def __init__(self, config: LlamaConfig, rngs: nnx.Rngs):
        d, f, dt = config.hidden_size, config.intermediate_size, config.dtype
        self.gate = Linear(d, f, bias=False, dtype=dt, rngs=rngs)
        self.up = Linear(d, f, bias=False, dtype=dt, rngs=rngs)
        self.down = Linear(f, d, bias=False, dtype=dt, rngs=rngs)

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    def __init__(self, config: LlamaConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.dtype)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.dtype)
        self.mlp = MLP(config, rngs)

    def __call__(self, x, positions, layer_cache, inv_freq):
        h, layer_cache = self.attn(self.attn_norm(x), positions, layer_cache, inv_freq)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), layer_cache


class Llama(nnx.Module):
    """The decoder. ``__call__(tokens, positions, cache) -> (logits float32, cache)``; cache may be None."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = nnx.Param(
            nnx.initializers.normal(0.02)(
                rngs.params(), (config.vocab_size, config.hidden_size), config.dtype
            )
        )
        self.layers = nnx.List([Block(config, rngs) for _ in range(config.num_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.dtype)
        self.lm_head = (
            nnx.data(None)
            if config.tie_embeddings
            else Linear(config.hidden_size, config.vocab_size, bias=False, dtype=config.dtype, rngs=rngs)
        )

    def __call__(self, tokens, positions, cache=None):
        inv_freq = rope_frequencies(self.config)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(jnp.float32)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, positions, None if cache is None else cache[i], inv_freq)
            new_cache.append(layer_cache)
        x = self.norm(x)
        if self.lm_head is None:
            logits = jnp.einsum(
                "btd,vd->btv",
                x.astype(self.config.dtype),
                self.embed[...],
                preferred_element_type=jnp.float32,
            )
        else:
            logits = self.lm_head(x)
        return logits, (None if cache is None else tuple(new_cache))


@functools.partial(jax.jit, static_argnames=("config",))
def _init_params(config: LlamaConfig, key: Array) -> nnx.State:
    return nnx.split(Llama(config, rngs=nnx.Rngs(params=key)))[1]


def init(config: LlamaConfig, key: Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Random initialisation (jitted, fast on any size) -> ``(graphdef, params)``."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0))))
    return graphdef, _init_params(config, key)


def abstract(config: LlamaConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """Shapes and dtypes only (``jax.ShapeDtypeStruct`` leaves): the target of checkpoint conversion."""
    return nnx.split(nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0))))


def init_cache(config: LlamaConfig, batch: int, size: int) -> Cache:
    """Zero KV cache with ``size`` slots per row (prompt length plus new tokens)."""
    shape = (batch, config.num_kv_heads, size, config.dim_head)
    return tuple(
        {"k": jnp.zeros(shape, config.dtype), "v": jnp.zeros(shape, config.dtype)}
        for _ in range(config.num_layers)
    )


@dataclasses.dataclass(frozen=True)
class Decoder:
    """The logits function of DESIGN.md §3, hashable by its graphdef so it can be a static jit argument.

    ``params`` is one ``nnx.State`` or a tuple of them (e.g. LoRA adapters and frozen base), merged in order.
    """

    graphdef: Any

    def __call__(
        self, params: PyTree, tokens: Int[Array, "b t"], positions: Int[Array, "b t"], cache: PyTree = None
    ) -> tuple[Float[Array, "b t v"], PyTree]:
        states = params if isinstance(params, tuple) else (params,)
        return nnx.merge(self.graphdef, *states)(tokens, positions, cache)


def decoder(graphdef: nnx.GraphDef) -> Decoder:
    """``apply(params, tokens, positions, cache) -> (logits, cache)`` for a split model."""
    return Decoder(graphdef)
