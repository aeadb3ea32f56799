r"""Memory plan of a run before it starts: parameters, trainable parameters and bytes per device.

``plan(model_cfg, trainable=..., batch=..., seq_len=..., ...)`` estimates, per device, what one training step
and the sampler hold, and whether it fits a capacity (the ``--plan`` dry run of the experiments). Any model
config exposing ``vocab_size``, ``hidden_size``, ``num_layers``, ``num_heads``, ``intermediate_size``,
``param_dtype`` and ``num_params()`` works (``num_kv_heads``, ``dim_head`` / ``head_dim``, ``compute_dtype``
and ``remat`` are read when present; defaults: ``num_heads``, ``hidden_size // num_heads``, the parameter
dtype, ``"none"``).

Per device, with ``P`` parameters, ``R`` trainable ones, ``F`` the FSDP degree (parameter-shaped state is
split over ``F`` devices; the batch over all devices), ``T = batch * seq_len`` tokens per device-step:

* params: ``P * bytes(param_dtype) / F``;
* master weights: ``4 R / F`` when what is trained is not already float32 parameters (LoRA adapters, or
  full training of bfloat16 parameters), else 0;
* optimizer: ``4 R * moments / F`` (AdamW: 2 float32 moments); gradients: ``4 R / F`` (float32);
* activations (float32 residual stream and matmul outputs), ``4 T`` bytes times floats per token:
  ``none``: ``L * a`` with ``a = 4d + 2(h + 2 kv) hd + h hd + 4f + 2 h S`` per layer (norm inputs and
  outputs, q/k/v before and after RoPE, the attention output, the SwiGLU's four ``f``-wide tensors, the
  attention scores and probabilities over ``S = seq_len`` keys);
  ``dots``: ``L (3d + (h + 2kv) hd + 2f) + a`` (the projections' outputs and the block input, plus one
  block recomputed at a time); ``block``: ``L d + a`` (block inputs only, plus one block recomputed);
* logits: ``2 * batch * seq_len * vocab * 4`` (float32 logits and their gradient: at a 150k vocabulary
  often the largest term);
* KV cache: ``L * 2 * kv * hd * kv_len * kv_batch * bytes(compute_dtype)`` (``kv_batch`` sequences per
  device sampled at once: prompts times samples per prompt).

``total = params + master + optimizer + gradients + max(activations + logits, KV cache)``: the training
step's working set and the sampler's cache are not live at once (RL samples, then updates). It is an
estimate: XLA's buffer assignment, fusion and scheduling move the real peak (tests/test_plan.py checks the
CPU compile of a small training step against it), so keep a margin below ``capacity_bytes``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cat_jax import numerics as nx

TRAINABLE = ("full", "lora")
REMAT = ("none", "block", "dots")
OPTIMIZERS = {"adamw": 2, "sgd": 0}  # float32 moments per trainable parameter
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LOGIT_COPIES = 2  # float32 logits and their gradient
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class Shape:
    """The model sizes a plan reads (from any config object, see the module docstring)."""

    vocab: int
    d: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    param_dtype: str
    compute_dtype: str
    remat: str

    @classmethod
    def of(cls, cfg: Any) -> Shape:
        heads = int(cfg.num_heads)
        head_dim = (
            getattr(cfg, "dim_head", None) or getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        )
        param_dtype = str(getattr(cfg, "param_dtype", "float32"))
        return cls(
            vocab=int(cfg.vocab_size),
            d=int(cfg.hidden_size),
            layers=int(cfg.num_layers),
            heads=heads,
            kv_heads=int(getattr(cfg, "num_kv_heads", None) or heads),
            head_dim=int(head_dim),
            ffn=int(cfg.intermediate_size),
            param_dtype=param_dtype,
            compute_dtype=str(getattr(cfg, "compute_dtype", None) or param_dtype),
            remat=str(getattr(cfg, "remat", "none")),
        )

    def lora_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in, out)`` of every projection LoRA can target."""
        q, kv, d, f = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.d, self.ffn
        return {
            "q": (d, q),
            "k": (d, kv),
            "v": (d, kv),
            "o": (q, d),
            "gate": (d, f),
            "up": (d, f),
            "down": (f, d),
        }


def lora_params(shape: Shape, rank: int, targets: tuple[str, ...]) -> int:
    """Adapter parameters: ``rank * (in + out)`` per targeted projection per layer."""
    shapes = shape.lora_shapes()
    return shape.layers * sum(rank * sum(shapes[t]) for t in targets)


def activation_floats_per_token(shape: Shape, seq_len: int, remat: str) -> int:
    """Floats per token the backward pass keeps (module docstring's formula)."""
    d, h, kv, hd, f, L = shape.d, shape.heads, shape.kv_heads, shape.head_dim, shape.ffn, shape.layers
    block = 4 * d + 2 * (h + 2 * kv) * hd + h * hd + 4 * f + 2 * h * seq_len
    if remat == "none":
        return L * block
    if remat == "dots":
        return L * (3 * d + (h + 2 * kv) * hd + 2 * f) + block
    return L * d + block


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def human_bytes(n: int | float) -> str:
    """``1.5 GiB`` style (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def human_count(n: int | float) -> str:
    """``7.24 B`` / ``13.6 M`` style."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(int(n))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Counts and bytes per device of one configuration (see the module docstring for every formula)."""

    num_params: int
    trainable_params: int
    trainable: str
    param_dtype: str
    compute_dtype: str
    remat: str
    optimizer: str
    devices: int
    fsdp: int
    tokens_per_step: int  # batch * seq_len over all devices
    params_bytes: int
    master_bytes: int
    optimizer_bytes: int
    grads_bytes: int
    activations_bytes: int
    logits_bytes: int
    kv_cache_bytes: int
    capacity_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        state = self.params_bytes + self.master_bytes + self.optimizer_bytes + self.grads_bytes
        return state + max(self.activations_bytes + self.logits_bytes, self.kv_cache_bytes)

    @property
    def fits(self) -> bool | None:
        """``total_bytes <= capacity_bytes``; None without a capacity."""
        return None if self.capacity_bytes is None else self.total_bytes <= self.capacity_bytes

    def format(self) -> str:
        """A human-readable table (binary units), one component per line."""
        rows = [
            ("parameters", human_count(self.num_params)),
            (f"trainable ({self.trainable})", human_count(self.trainable_params)),
            ("tokens per step", f"{self.tokens_per_step:,}"),
            ("devices (FSDP)", f"{self.devices} ({self.fsdp})"),
            (f"params ({self.param_dtype})", human_bytes(self.params_bytes)),
            ("master weights (f32)", human_bytes(self.master_bytes)),
            (f"optimizer ({self.optimizer})", human_bytes(self.optimizer_bytes)),
            ("gradients (f32)", human_bytes(self.grads_bytes)),
            (f"activations (remat={self.remat})", human_bytes(self.activations_bytes)),
            ("logits (f32, + grad)", human_bytes(self.logits_bytes)),
            (f"KV cache ({self.compute_dtype})", human_bytes(self.kv_cache_bytes)),
            ("total per device", human_bytes(self.total_bytes)),
        ]
        if self.capacity_bytes is not None:
            verdict = "fits" if self.fits else "DOES NOT FIT"
            rows.append(("capacity", f"{human_bytes(self.capacity_bytes)}: {verdict}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v:>18}" for k, v in rows)


def plan(
    model_cfg: Any,
    *,
    trainable: str = "full",
    lora_rank: int = 16,
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o"),
    batch: int,
    seq_len: int,
    kv_batch: int = 0,
    kv_len: int = 0,
    devices: int = 1,
    fsdp: int = 1,
    remat: str | None = None,
    optimizer: str = "adamw",
    capacity_bytes: int | None = None,
) -> Plan:
    """The memory :class:`Plan` of training ``model_cfg`` (and sampling with it) on ``devices`` devices.

    ``trainable``: ``"full"`` or ``"lora"`` (``lora_rank`` on ``lora_targets``); ``batch``: sequences per
    device per step (micro-batch; 0 = no training step, e.g. evaluation only) of ``seq_len`` tokens;
    ``kv_batch`` sequences per device sampled at once with ``kv_len`` cache slots (0 = no sampling);
    ``fsdp`` shards parameter-shaped state over that many of the ``devices`` (must divide it); ``remat``:
    ``none | block | dots`` (None: the config's ``remat``, else ``"none"``); ``optimizer``: ``adamw`` or
    ``sgd``; ``capacity_bytes``: bytes per device, to set :attr:`Plan.fits`.
    """
    nx.check_choice("trainable", trainable, TRAINABLE)
    nx.check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    for name, value in (("batch", batch), ("seq_len", seq_len), ("kv_batch", kv_batch), ("kv_len", kv_len)):
        nx.check_int(name, value, minimum=0)
    nx.check_int("devices", devices, minimum=1)
    nx.check_int("fsdp", fsdp, minimum=1)
    if devices % fsdp:
        raise ValueError(f"fsdp={fsdp} must divide devices={devices}")
    if capacity_bytes is not None and not capacity_bytes > 0:
        raise ValueError(f"capacity_bytes must be > 0 or None, got {capacity_bytes!r}")
    shape = Shape.of(model_cfg)
    remat = shape.remat if remat is None else remat
    nx.check_choice("remat", remat, REMAT)
    for name, dt in (("param_dtype", shape.param_dtype), ("compute_dtype", shape.compute_dtype)):
        if dt not in DTYPE_BYTES:
            raise ValueError(f"model {name} must be one of {sorted(DTYPE_BYTES)}, got {dt!r}")
    num_params = int(model_cfg.num_params())
    if trainable == "lora":
        nx.check_int("lora_rank", lora_rank, minimum=1)
        bad = [t for t in lora_targets if t not in LORA_TARGETS]
        if bad or not lora_targets:
            raise ValueError(
                f"lora_targets must be a non-empty subset of {LORA_TARGETS}, got {lora_targets!r}"
            )
        trained = lora_params(shape, lora_rank, tuple(lora_targets))
    else:
        trained = num_params
    training = batch > 0 and seq_len > 0
    r = trained if training else 0
    has_master = trainable == "lora" or shape.param_dtype != "float32"
    tokens = batch * seq_len
    acts = 4 * tokens * activation_floats_per_token(shape, seq_len, remat) if training else 0
    kv = shape.layers * 2 * shape.kv_heads * shape.head_dim * kv_len * kv_batch
    return Plan(
        num_params=num_params,
        trainable_params=trained,
        trainable=trainable,
        param_dtype=shape.param_dtype,
        compute_dtype=shape.compute_dtype,
        remat=remat,
        optimizer=optimizer,
        devices=devices,
        fsdp=fsdp,
        tokens_per_step=tokens * devices,
        params_bytes=_ceil_div(num_params * DTYPE_BYTES[shape.param_dtype], fsdp),
        master_bytes=_ceil_div(4 * r, fsdp) if has_master else 0,
        optimizer_bytes=_ceil_div(4 * r * OPTIMIZERS[optimizer], fsdp),
        grads_bytes=_ceil_div(4 * r, fsdp),
        activations_bytes=acts,
        logits_bytes=LOGIT_COPIES * tokens * shape.vocab * 4 if training else 0,
        kv_cache_bytes=kv * DTYPE_BYTES[shape.compute_dtype],
        capacity_bytes=capacity_bytes,
    )


__all__ = ["Plan", "human_bytes", "human_count", "lora_params", "plan"]
