"""Tiny models shared by tests and CPU examples (cached, so a test session initialises each config once)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from flax import nnx

from cat_jax.models import llama


class TinyModel(NamedTuple):
    config: llama.LlamaConfig
    graphdef: nnx.GraphDef
    params: nnx.State
    apply: llama.Decoder


@functools.lru_cache(maxsize=8)
def tiny_model(seed: int = 0, **overrides) -> TinyModel:
    """A random ``LlamaConfig.tiny(**overrides)`` decoder, its params and its hashable logits function.

    Random init at std 0.02 gives near-uniform logits; the weights are scaled up so that samples and greedy
    paths differ between prompts (a more realistic, peaked next-token distribution).
    """
    config = llama.LlamaConfig.tiny(**overrides)
    graphdef, params = llama.init(config, jax.random.key(seed))
    params = jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)
    return TinyModel(config, graphdef, params, llama.decoder(graphdef))
