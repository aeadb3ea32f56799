"""Llama-family decoder (Llama 2/3, Mistral, Qwen2) as a Flax NNX module behind a functional boundary.

Architecture: token embedding -> ``num_layers`` x [RMSNorm -> grouped-query attention with RoPE -> residual,
RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> LM head (optionally tied to the embedding). Qwen2 adds
biases on the q/k/v projections (``qkv_bias=True``); Llama 3 rescales the RoPE frequencies (``rope_scaling``).

Functional use (DESIGN.md §3)::

    graphdef, params = init(LlamaConfig.tiny(), jax.random.key(0))
    apply = decoder(graphdef)                     # hashable: a static argument of jit
    cache = init_cache(config, batch=4, size=64)  # explicit pytree, preallocated
    logits, cache = apply(params, tokens, positions, cache)   # [b, t, vocab] float32

**Compute policy.** Parameters are stored in ``param_dtype`` (float32 or bfloat16) and never change dtype.
Matmul inputs (the activation and the weight, LoRA adapters and the tied head included) are cast to
``compute_dtype`` (None: the parameter dtype) and accumulate in float32 with float32 output
(``preferred_element_type``); the residual stream, RMSNorm, RoPE, attention (scores, softmax and the weighted
sum, with cached keys/values upcast) and the output logits are float32; the KV cache is stored in the compute
dtype. With float32 parameters and the default compute dtype every step is float32 (the HF parity tests,
1e-4); ``compute_dtype="bfloat16"`` over float32 parameters keeps float32 master weights and gradients.

**Gradient checkpointing.** ``remat="block"`` recomputes each decoder block in the backward pass (only its
input is saved); ``remat="dots"`` saves the outputs of the matmuls without batch dimensions (the projections)
and recomputes the rest (norms, RoPE, attention scores and softmax, activations). Values and gradients
equal ``remat="none"``'s; only the memory / compute trade changes (``cat_jax.plan`` estimates it).

**Vocabulary limit.** :func:`limit_vocab` wraps a logits function so that ids at or beyond a tokenizer's
size (a checkpoint's padding rows) get a large negative logit: never sampled, never scored.

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
# remat name -> jax.checkpoint policy (what the backward pass may read instead of recomputing).
REMAT_POLICIES = {
    "none": None,
    "block": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


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
    compute_dtype: str | None = None  # matmul inputs and KV cache; None: param_dtype (see the module doc)
    remat: str = "none"  # gradient checkpointing of each block: none | block | dots (REMAT_POLICIES)

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
        if self.compute_dtype is not None and self.compute_dtype not in DTYPES:
            raise ValueError(
                f"compute_dtype must be None (= param_dtype) or one of {sorted(DTYPES)}, "
                f"got {self.compute_dtype!r}"
            )
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {list(REMAT_POLICIES)}, got {self.remat!r}")
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")

    @property
    def dim_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def dtype(self):
        """Storage dtype of the parameters."""
        return DTYPES[self.param_dtype]

    @property
    def matmul_dtype(self):
        """Dtype of matmul inputs and of the KV cache: ``compute_dtype``, else the parameter dtype."""
        return DTYPES[self.compute_dtype or self.param_dtype]

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


def _dtype_name(dtype) -> str | None:
    """A dtype as its name (a hashable, static module attribute), None kept."""
    return None if dtype is None else jnp.dtype(dtype).name


def _dot(x: Array, w: Array, compute_dtype=None) -> Array:
    """``x @ w`` with both inputs cast to ``compute_dtype`` (None: ``w``'s dtype), float32 accumulation and
    output. With the default the weight is used as stored (no cast at all)."""
    dt = w.dtype if compute_dtype is None else jnp.dtype(compute_dtype)
    # One 2-D product over the flattened leading axes: with [b, t, i] activations the weight gradient is
    # a dot contracting two axes, for which XLA:CPU first transposes the [b, t, o] cotangent into a copy
    # (fused with its producer, e.g. SwiGLU's backward: a strided loop that took 26% of an SFT step).
    flat = x.astype(dt).reshape(-1, x.shape[-1])
    y = jnp.einsum("ni,io->no", flat, w.astype(dt), preferred_element_type=jnp.float32)
    return y.reshape(*x.shape[:-1], w.shape[-1])


class LoRA(nnx.Module):
    """Low-rank update ``x @ a @ b * scale``; ``b`` starts at zero so a fresh adapter is an exact no-op.

    Matmuls in ``compute_dtype`` (None: the adapters' dtype); a :class:`Linear` passes its own compute dtype
    at call time, so float32 adapters (master weights) on a model computing in bfloat16 compute in bfloat16.
    """

    def __init__(
        self, din: int, dout: int, rank: int, scale: float, dtype, rngs: nnx.Rngs, *, compute_dtype=None
    ):
        init = nnx.initializers.he_uniform()
        self.a = nnx.LoRAParam(init(rngs.params(), (din, rank), dtype))
        self.b = nnx.LoRAParam(jnp.zeros((rank, dout), dtype))
        self.scale = scale
        self.compute_dtype = _dtype_name(compute_dtype)

    def __call__(self, x: Array, compute_dtype=None) -> Array:
        dt = compute_dtype if compute_dtype is not None else self.compute_dtype
        return _dot(_dot(x, self.a[...], dt), self.b[...], dt) * self.scale


class Linear(nnx.Module):
    """``x @ kernel (+ bias)``, kernel ``[in, out]``, with an optional adapter (cat_jax.models.lora).

    ``compute_dtype``: the matmul input dtype (None: ``dtype``, the storage dtype); output float32.
    """

    def __init__(self, din: int, dout: int, *, bias: bool, dtype, rngs: nnx.Rngs, compute_dtype=None):
        init = nnx.initializers.normal(0.02)
        self.kernel = nnx.Param(init(rngs.params(), (din, dout), dtype))
        self.bias = nnx.Param(jnp.zeros((dout,), dtype)) if bias else nnx.data(None)
        self.lora = nnx.data(None)
        self.compute_dtype = _dtype_name(compute_dtype)

    def __call__(self, x: Array) -> Array:
        y = _dot(x, self.kernel[...], self.compute_dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32).reshape((1,) * (y.ndim - 1) + (-1,))
        if self.lora is not None:
            # The adapter computes in this projection's compute dtype (its own dtype may be a float32 master).
            dt = self.compute_dtype if self.compute_dtype is not None else self.kernel[...].dtype
            y = y + self.lora(x, dt)
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
        c, hd = config, config.dim_head
        lin = functools.partial(Linear, dtype=c.dtype, rngs=rngs, compute_dtype=c.compute_dtype)
        self.q = lin(c.hidden_size, c.num_heads * hd, bias=c.qkv_bias)
        self.k = lin(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias)
        self.v = lin(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias)
        self.o = lin(c.num_heads * hd, c.hidden_size, bias=False)
        self.config = config

    def __call__(self, x, positions, layer_cache, inv_freq):
        c = self.config
        b, t, _ = x.shape
        hd, kvh, g = c.dim_head, c.num_kv_heads, c.num_heads // c.num_kv_heads
        q = apply_rope(self.q(x).reshape(b, t, c.num_heads, hd), positions, inv_freq)
        k = apply_rope(self.k(x).reshape(b, t, kvh, hd), positions, inv_freq).astype(c.matmul_dtype)
        v = self.v(x).reshape(b, t, kvh, hd).astype(c.matmul_dtype)
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
        d, f = config.hidden_size, config.intermediate_size
        lin = functools.partial(
            Linear, bias=False, dtype=config.dtype, rngs=rngs, compute_dtype=config.compute_dtype
        )
        self.gate = lin(d, f)
        self.up = lin(d, f)
        self.down = lin(f, d)

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
            else Linear(
                config.hidden_size,
                config.vocab_size,
                bias=False,
                dtype=config.dtype,
                rngs=rngs,
                compute_dtype=config.compute_dtype,
            )
        )

    def __call__(self, tokens, positions, cache=None):
        inv_freq = rope_frequencies(self.config)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(jnp.float32)
        new_cache = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache = run_block(layer, self.config.remat, x, positions, layer_cache, inv_freq=inv_freq)
            new_cache.append(layer_cache)
        x = self.norm(x)
        if self.lm_head is None:
            dt = self.config.matmul_dtype
            logits = jnp.einsum(
                "btd,vd->btv",
                x.astype(dt),
                self.embed[...].astype(dt),
                preferred_element_type=jnp.float32,
            )
        else:
            logits = self.lm_head(x)
        return logits, (None if cache is None else tuple(new_cache))


def run_block(layer: nnx.Module, remat: str, *arrays, **static):
    """``layer(*arrays, **static)`` (one decoder block of any family) under ``jax.checkpoint`` with
    ``REMAT_POLICIES[remat]`` unless ``remat="none"``; ``static``: non-array arguments (RoPE tables).

    The block is split into (graphdef, state) so the checkpointed function is pure in its array inputs.
    Without differentiation (sampling) ``jax.checkpoint`` lowers to the plain computation.
    """
    if remat == "none":
        return layer(*arrays, **static)
    graphdef, state = nnx.split(layer)

    def block(state, *arrays):
        return nnx.merge(graphdef, state)(*arrays, **static)

    return jax.checkpoint(block, policy=REMAT_POLICIES[remat], prevent_cse=True)(state, *arrays)


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
    """Zero KV cache with ``size`` slots per row (prompt length plus new tokens), in the compute dtype."""
    shape = (batch, config.num_kv_heads, size, config.dim_head)
    dt = config.matmul_dtype
    return tuple({"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt)} for _ in range(config.num_layers))


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


# Logit of an id beyond the tokenizer: float32 finfo.min / 2, not -inf, so log-softmax (and its gradient)
# stays finite, and min / 2 so that subtracting the row max or dividing by a temperature < 1 cannot overflow.
MASKED_LOGIT = float(np.finfo(np.float32).min) / 2


@dataclasses.dataclass(frozen=True)
class VocabLimited:
    """A logits function with every logit at an id ``>= num_ids`` set to :data:`MASKED_LOGIT`.

    Frozen and hashable by ``(apply, num_ids)``: a static argument of jit like the function it wraps.
    """

    apply: Any
    num_ids: int

    def __post_init__(self):
        if (
            isinstance(self.num_ids, bool)
            or not isinstance(self.num_ids, int | np.integer)
            or self.num_ids < 1
        ):
            raise ValueError(
                f"num_ids must be a positive int (the tokenizer's vocabulary size), got {self.num_ids!r}"
            )
        object.__setattr__(self, "num_ids", int(self.num_ids))

    def __call__(
        self, params: PyTree, tokens: Int[Array, "b t"], positions: Int[Array, "b t"], cache: PyTree = None
    ) -> tuple[Float[Array, "b t v"], PyTree]:
        logits, cache = self.apply(params, tokens, positions, cache)
        vocab = logits.shape[-1]
        if self.num_ids > vocab:
            raise ValueError(
                f"num_ids={self.num_ids} exceeds the model's vocabulary of {vocab} logits; the tokenizer has "
                "ids the model cannot produce (wrong tokenizer for this checkpoint?)"
            )
        if self.num_ids == vocab:
            return logits, cache
        keep = (jnp.arange(vocab) < self.num_ids).reshape((1,) * (logits.ndim - 1) + (vocab,))
        return jnp.where(keep, logits, jnp.asarray(MASKED_LOGIT, logits.dtype)), cache


def limit_vocab(apply: Any, num_ids: int) -> VocabLimited:
    """``apply`` with every logit at an id ``>= num_ids`` set to :data:`MASKED_LOGIT` (float32 min / 2).

    For a checkpoint whose embedding has padding rows beyond its tokenizer (``vocab_size > len(tokenizer)``):
    those ids get probability ``exp(MASKED_LOGIT - max) = 0`` in float32, so the sampler never draws them,
    teacher-forced log-probs are normalised over the tokenizer's ids only, and log-softmax stays finite.
    ``num_ids`` equal to the vocabulary returns ``apply``'s outputs unchanged.
    """
    return VocabLimited(apply, num_ids)
