r"""LoRA adapters on chosen projections, as a separate parameter collection; merge for inference.

A targeted projection ``y = x W`` becomes :math:`y = xW + \frac{\alpha}{r}\,x A B` with ``A [in, r]``
(He-uniform) and ``B [r, out]`` (zeros), so a fresh adapter is an exact no-op. ``A`` and ``B`` are
``nnx.LoRAParam`` variables, split from the base ``nnx.Param`` state::

    graphdef, adapters = lora.init(base_graphdef, base_params, LoRAConfig(rank=16, alpha=32), key)
    apply = lora.decoder(graphdef)       # apply((adapters, base_params), tokens, positions, cache)
    grads = jax.grad(loss)(adapters)     # only adapters are differentiated and updated
    graphdef0, merged = lora.merge(graphdef, adapters, base_params)  # plain model: W + alpha/r A B

:func:`decoder` stops gradients into the base parameters, so even differentiating with respect to both
collections leaves the base frozen. Adapters are float32 master weights whatever the base ``param_dtype``
(SPEC keeps what is trained in fp32); :func:`merge` adds ``alpha/r A B`` in float32 and stores the sum in
the kernel's dtype.

Targets per model family (:data:`FAMILY_TARGETS`): Llama attention ``q, k, v, o`` and MLP ``gate, up,
down``; GPT-2 ``c_attn`` (the fused q|k|v projection), ``attn_proj`` (``attn.c_proj``), ``c_fc`` and
``mlp_proj`` (``mlp.c_proj``). SPEC's presets: :data:`SFT_PRESET` (``r=16, alpha=16`` on q, k, v, o) and
:data:`RL_PRESET` (``r=16, alpha=32`` on q, v); both name Llama projections (a GPT-2 model states its own
targets, e.g. ``dataclasses.replace(SFT_PRESET, targets=("c_attn", "attn_proj"))``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int, PyTree

from cat_jax import numerics as nx
from cat_jax.models import gpt2, llama

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # Llama family
GPT2_TARGETS = ("c_attn", "attn_proj", "c_fc", "mlp_proj")
FAMILY_TARGETS = {"llama": TARGETS, "gpt2": GPT2_TARGETS}
ALL_TARGETS = TARGETS + GPT2_TARGETS
# GPT-2 target name -> (block attribute, projection attribute) inside a gpt2.Block.
_GPT2_PATHS = {
    "c_attn": ("attn", "c_attn"),
    "attn_proj": ("attn", "c_proj"),
    "c_fc": ("mlp", "c_fc"),
    "mlp_proj": ("mlp", "c_proj"),
}


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Rank ``r``, scale ``alpha`` (the update is multiplied by ``alpha / r``), projections to adapt.

    ``targets`` are checked against every family's names here and against the model's own family in
    :func:`init`. ``dropout`` exists so configs can state SPEC's value; only 0 is implemented.
    """

    rank: int = 16
    alpha: float = 32.0
    targets: Sequence[str] = ("q", "v")  # stored as a tuple (a list from a config file is accepted)
    dropout: float = 0.0

    def __post_init__(self):
        nx.check_int("rank", self.rank, minimum=1)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or self.alpha <= 0:
            raise ValueError(f"alpha must be a number > 0, got {self.alpha!r}")
        if isinstance(self.targets, str):
            raise ValueError(f"LoRA targets must be a tuple of names, got the string {self.targets!r}")
        object.__setattr__(self, "targets", tuple(self.targets))  # a list from a config file -> hashable
        bad = [t for t in self.targets if t not in ALL_TARGETS]
        if bad or not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(
                f"LoRA targets must be a non-empty subset of {TARGETS} (Llama) or {GPT2_TARGETS} (GPT-2), "
                f"without repeats, got {self.targets!r}"
            )
        if self.dropout != 0:
            raise ValueError(f"LoRA dropout={self.dropout!r} is not implemented; only dropout=0 is supported")

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank


SFT_PRESET = LoRAConfig(rank=16, alpha=16.0, targets=("q", "k", "v", "o"))  # SPEC's SFT adapters
RL_PRESET = LoRAConfig(rank=16, alpha=32.0, targets=("q", "v"))  # SPEC's RL adapters


def family(model: nnx.Module) -> str:
    """``"llama"`` or ``"gpt2"``: the key of :data:`FAMILY_TARGETS` for a model."""
    if isinstance(model, gpt2.GPT2):
        return "gpt2"
    if isinstance(model, llama.Llama):
        return "llama"
    raise ValueError(f"LoRA supports Llama and GPT-2 models, got {type(model).__name__}")


def _targets(model: llama.Llama | gpt2.GPT2, targets: tuple[str, ...]):
    kind = family(model)
    valid = FAMILY_TARGETS[kind]
    bad = [t for t in targets if t not in valid]
    if bad:
        raise ValueError(f"LoRA targets {bad} do not exist in a {kind} model; its valid targets are {valid}")
    if kind == "gpt2":
        for layer in model.h:
            for name in targets:
                block, proj = _GPT2_PATHS[name]
                yield getattr(getattr(layer, block), proj)
        return
    for layer in model.layers:
        for name in targets:
            yield getattr(layer.attn if name in ("q", "k", "v", "o") else layer.mlp, name)


def add_adapters(model: llama.Llama | gpt2.GPT2, config: LoRAConfig, key: Array) -> llama.Llama | gpt2.GPT2:
    """Attach fresh float32 adapters to ``model`` in place (NNX modules are mutable) and return it."""
    rngs = nnx.Rngs(params=key)
    for lin in list(_targets(model, config.targets)):
        if lin.lora is not None:
            raise ValueError("the model already has LoRA adapters; merge them first")
        din, dout = lin.kernel[...].shape
        lin.lora = llama.LoRA(din, dout, config.rank, config.scale, jnp.float32, rngs)
    return model


def init(
    graphdef: nnx.GraphDef, params: nnx.State, config: LoRAConfig, key: Array
) -> tuple[nnx.GraphDef, nnx.State]:
    """Adapters for a split base model -> ``(graphdef with adapters, adapter params)``; base unchanged."""
    model = add_adapters(nnx.merge(graphdef, params), config, key)
    new_graphdef, adapters, _ = nnx.split(model, nnx.LoRAParam, ...)
    return new_graphdef, adapters


@dataclasses.dataclass(frozen=True)
class LoRADecoder:
    """``apply((adapters, base), tokens, positions, cache)``; gradients never flow into ``base``."""

    graphdef: nnx.GraphDef

    def __call__(
        self, params: PyTree, tokens: Int[Array, "b t"], positions: Int[Array, "b t"], cache: PyTree = None
    ) -> tuple[Float[Array, "b t v"], PyTree]:
        adapters, base = params
        model = nnx.merge(self.graphdef, adapters, jax.lax.stop_gradient(base))
        return model(tokens, positions, cache)


def decoder(graphdef: nnx.GraphDef) -> LoRADecoder:
    return LoRADecoder(graphdef)


def merge(graphdef: nnx.GraphDef, adapters: nnx.State, base: nnx.State) -> tuple[nnx.GraphDef, nnx.State]:
    """Fold adapters into the base kernels, ``W + alpha/r A B`` (float32 sum, stored in the kernel dtype).

    Returns the plain model's ``(graphdef, params)``: the same structure as before :func:`init`.
    """
    model = nnx.merge(graphdef, adapters, base)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, llama.Linear) and module.lora is not None:
            lo, kernel = module.lora, module.kernel[...]
            delta = jnp.dot(lo.a[...].astype(jnp.float32), lo.b[...].astype(jnp.float32)) * lo.scale
            module.kernel = nnx.Param((kernel.astype(jnp.float32) + delta).astype(kernel.dtype))
            module.lora = nnx.data(None)
    return nnx.split(model)
