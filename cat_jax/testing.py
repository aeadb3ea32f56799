"""Tiny models shared by tests and CPU examples (cached, so a test session initialises each config once)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np
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


def ragged_sequences() -> tuple[np.ndarray, np.ndarray]:
    """Four right-padded sequences of unequal lengths (pad id 0), ``tokens`` and ``labels`` ``[4, L]``: each
    a prompt (labels -100, unsupervised) then a completion (labels = its tokens)."""
    rows = [([3, 4], [5, 6, 7]), ([2], [9, 1]), ([8, 8, 3], [4, 2, 6, 5]), ([1, 2], [3])]
    length = max(len(p) + len(c) for p, c in rows)
    tokens = np.zeros((4, length), np.int32)
    labels = np.full((4, length), -100, np.int32)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        tokens[i, : len(seq)] = seq
        labels[i, len(p) : len(seq)] = c
    return tokens, labels
