"""Policy models: a Llama-family decoder (Flax NNX), LoRA adapters, Hugging Face checkpoint conversion."""

from cat_jax.models import convert, llama, lora
from cat_jax.models.llama import (
    PRESETS,
    Decoder,
    LlamaConfig,
    abstract,
    decoder,
    init,
    init_cache,
    preset,
)

__all__ = [
    "PRESETS",
    "Decoder",
    "LlamaConfig",
    "abstract",
    "convert",
    "decoder",
    "init",
    "init_cache",
    "llama",
    "lora",
    "preset",
]
