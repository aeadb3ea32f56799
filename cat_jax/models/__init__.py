"""Policy models: Llama-family and GPT-2-family decoders (Flax NNX), LoRA adapters, Hugging Face checkpoints.

Both families share one functional contract (``init`` -> ``(graphdef, params)``, ``init_cache``, the hashable
``decoder(graphdef)`` logits function, one KV cache layout); the functions here dispatch on the config type,
so family-generic code writes ``models.init(config, key)`` / ``models.init_cache(config, b, size)``.
"""

from __future__ import annotations

import dataclasses

from jaxtyping import Array

from cat_jax.models import convert, gpt2, llama, lora
from cat_jax.models.convert import Config, family
from cat_jax.models.gpt2 import GPT2Config
from cat_jax.models.llama import PRESETS, Cache, Decoder, LlamaConfig, decoder


def init(config: Config, key: Array):
    """Random initialisation of either family -> ``(graphdef, params)``."""
    return family(config).init(config, key)


def abstract(config: Config):
    """Shapes and dtypes only, either family -> ``(graphdef, abstract params)``."""
    return family(config).abstract(config)


def init_cache(config: Config, batch: int, size: int) -> Cache:
    """Zero KV cache of either family (the same layout)."""
    return family(config).init_cache(config, batch, size)


def preset(name: str, **overrides) -> Config:
    """A named preset of either family (:data:`llama.PRESETS`, :data:`gpt2.PRESETS`), fields replaced."""
    if name in PRESETS:
        return dataclasses.replace(PRESETS[name], **overrides)
    if name in gpt2.PRESETS:
        return dataclasses.replace(gpt2.PRESETS[name], **overrides)
    raise ValueError(f"unknown model preset {name!r}; valid names: {sorted(PRESETS) + sorted(gpt2.PRESETS)}")


__all__ = [
    "PRESETS",
    "Config",
    "Decoder",
    "GPT2Config",
    "LlamaConfig",
    "abstract",
    "convert",
    "decoder",
    "family",
    "gpt2",
    "init",
    "init_cache",
    "llama",
    "lora",
    "preset",
]
