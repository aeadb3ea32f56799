r"""LoRA adapters on chosen projections, as a separate parameter collection; merge for inference.

A targeted projection ``y = x W`` becomes :math:`y = xW + \frac{\alpha}{r}\,x A B` with ``A [in, r]``
(He-uniform) and ``B [r, out]`` (zeros), so a fresh adapter is an exact no-op. ``A`` and ``B`` are
``nnx.LoRAParam`` variables, split from the base ``nnx.Param`` state::

    graphdef, adapters = lora.init(base_graphdef, base_params, LoRAConfig(rank=16, alpha=32), key)
    apply = lora.decoder(graphdef)       # apply((adapters, base_params), tokens, positions, cache)
    grads = jax.grad(loss)(adapters)     # only adapters are differentiated and updated
    graphdef0, merged = lora.merge(graphdef, adapters, base_params)  # plain model: W + alpha/r A B

:func:`decoder` stops gradients into the base parameters, so even differentiating with respect to both
collections leaves the base frozen. Targets: attention ``q, k, v, o`` and MLP ``gate, up, down``
(the SPEC §3.3 warm-ups use ``rank=16, alpha=32, targets=("q", "v")``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int, PyTree

from cat_jax import numerics as nx
from cat_jax.models import llama

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Rank ``r``, scale ``alpha`` (the update is multiplied by ``alpha / r``), projections to adapt."""

    rank: int = 16
    alpha: float = 32.0
    targets: tuple[str, ...] = ("q", "v")

    def __post_init__(self):
        nx.check_int("rank", self.rank, minimum=1)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or self.alpha <= 0:
            raise ValueError(f"alpha must be a number > 0, got {self.alpha!r}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"LoRA targets must be a non-empty subset of {TARGETS}, got {self.targets!r}")

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank


def _targets(model: llama.Llama, targets: tuple[str, ...]):
    for layer in model.layers:
        for name in targets:
            yield getattr(layer.attn if name in ("q", "k", "v", "o") else layer.mlp, name)


def add_adapters(model: llama.Llama, config: LoRAConfig, key: Array) -> llama.Llama:
    """Attach fresh adapters to ``model`` in place (NNX modules are mutable) and return it."""
    rngs = nnx.Rngs(params=key)
    for lin in _targets(model, config.targets):
        if lin.lora is not None:
            raise ValueError("the model already has LoRA adapters; merge them first")
        din, dout = lin.kernel[...].shape
        lin.lora = llama.LoRA(din, dout, config.rank, config.scale, lin.kernel[...].dtype, rngs)
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
