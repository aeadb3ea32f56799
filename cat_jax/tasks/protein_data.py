"""The protein experiment's arrays, read through the data path (SPEC §3.4).

Sequences and pairs are prepared once by ``CatProtein`` into a data dir (``array_record``, one builder config
per set of knobs, records in generation order) and read back with ``tfds.data_source``; the arrays are laid
out with the pipeline's protein encoder and batched by the one batcher (:func:`cat_jax.data.batches`) over
their rows::

    seqs = read_corpus(64, max_len=32, data_dir="/tmp/tfds")  # == protein.pretraining_corpus(64, max_len=32)
    pre = sft_arrays([("", s) for s in seqs])  # tokens / labels [64, 34]: BOS seq EOS, all after BOS
    pairs = read_pairs({"warmup": 32, "train": 16, "test": 3}, data_dir="/tmp/tfds")
    prompts = prompt_arrays(pairs["train"])  # prompts [16, 2 + longest input], lengths, input counts
    rows = batches(prompts, 4, seed=0)  # rows(step): {"prompts", ..., "index"} [4, ...]
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cat_jax import data
from cat_jax.tasks import protein
from cat_jax.tasks.tokenizers import layout

COND_SPLITS = ("warmup", "train", "test")  # conditional_pairs' streams: SFT warm-up, RL prompts, held out
# pretraining_corpus' family knobs and their defaults (the corpora of CatProtein 1.1.0).
CORPUS_KNOBS = {
    k: inspect.signature(protein.pretraining_corpus).parameters[k].default
    for k in ("min_len", "rare_fraction", "rare_beta", "common_beta")
}
_ENCODER = data.protein_encoder()
PAD = _ENCODER.tokenizer.pad_id


def corpus_config(num_sequences: int, *, seed: int = 0, max_len: int = 40, **knobs) -> data.ProteinConfig:
    """The ``CatProtein`` config of the first ``num_sequences`` corpus draws (named after every field).

    ``knobs``: ``pretraining_corpus``' family knobs (``min_len``, ``rare_fraction``, ``rare_beta``,
    ``common_beta``); a knob away from its default adds itself to the name (defaults keep the old names).
    """
    unknown = sorted(set(knobs) - set(CORPUS_KNOBS))
    if unknown:
        raise ValueError(f"unknown corpus knob(s) {unknown}; valid: {sorted(CORPUS_KNOBS)}")
    knobs = {
        k: tuple(float(x) for x in v) if isinstance(CORPUS_KNOBS[k], tuple) else v for k, v in knobs.items()
    }
    extra = "".join(
        f"_{k}" + ("-".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}")
        for k, v in sorted(knobs.items())
        if v != CORPUS_KNOBS[k]
    )
    return data.ProteinConfig(
        name=f"pretrain_n{num_sequences}_len{max_len}_seed{seed}{extra}",
        kind="pretrain",
        sizes=(("train", int(num_sequences)),),
        seed=int(seed),
        max_len=int(max_len),
        **knobs,
    )


def pairs_config(sizes: Mapping[str, int], *, seed: int = 42) -> data.ProteinConfig:
    """The ``CatProtein`` config of the first ``sizes[split]`` pairs of each of :data:`COND_SPLITS`."""
    if set(sizes) != set(COND_SPLITS):
        raise ValueError(f"sizes must name the splits {list(COND_SPLITS)}, got {sorted(sizes)}")
    n = [int(sizes[s]) for s in COND_SPLITS]
    return data.ProteinConfig(
        name="conditional_{}_{}_{}_seed{}".format(*n, seed),
        kind="conditional",
        sizes=tuple(zip(COND_SPLITS, n, strict=True)),
        seed=int(seed),
    )


def read_corpus(
    num_sequences: int, *, seed: int = 0, max_len: int = 40, data_dir: str | Path | None = None, **knobs
) -> list[str]:
    """``protein.pretraining_corpus(num_sequences, seed, max_len=max_len, **knobs)``, prepared in
    ``data_dir`` once (default :func:`cat_jax.data.default_data_dir`) and read back."""
    rows = _read(corpus_config(num_sequences, seed=seed, max_len=max_len, **knobs), data_dir)["train"]
    return [r["target"] for r in rows]


def read_pairs(
    sizes: Mapping[str, int], *, seed: int = 42, data_dir: str | Path | None = None
) -> dict[str, list[tuple[str, str]]]:
    """``{split: protein.conditional_pairs(sizes[split], split, seed)}``, read through the builder."""
    rows = _read(pairs_config(sizes, seed=seed), data_dir)
    return {s: [(r["input"], r["target"]) for r in rows[s]] for s in COND_SPLITS}


def sft_arrays(pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """``tokens``/``labels`` ``[N, L]`` of (prompt, target) text pairs, padded to the longest row ``L``.

    ``BOS prompt '>' target EOS`` with the target and EOS supervised (labels -100 elsewhere, SPEC §3.1); an
    empty prompt is the pre-training row ``BOS seq EOS``, every token after BOS supervised.
    """
    enc = [_ENCODER(p, t) for p, t in pairs]
    width = max(len(p) + len(t) for p, t in enc)
    rows = [layout(p, t, width, PAD) for p, t in enc]
    return {k: np.stack([r[k] for r in rows]) for k in ("tokens", "labels")}


def prompt_arrays(pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Right-padded ``BOS input '>'`` ``prompts`` ``[N, 2 + longest input]`` with their ``lengths`` and the
    input's residue and hydrophobic counts (``input_length``, ``input_hydrophobic``: the exact copy penalty
    of :func:`cat_jax.tasks.protein.conditional_rewards`)."""
    prompts = [_ENCODER(src, "")[0] for src, _ in pairs]
    out = np.full((len(pairs), 2 + max(len(src) for src, _ in pairs)), PAD, np.int32)
    for i, p in enumerate(prompts):
        out[i, : len(p)] = p
    return {
        "prompts": out,
        "lengths": np.array([len(p) for p in prompts], np.int32),
        "input_length": np.array([len(src) for src, _ in pairs], np.int32),
        "input_hydrophobic": np.array([sum(c in protein.HYDROPHOBIC for c in s) for s, _ in pairs], np.int32),
    }


def text_sft_arrays(pairs: Sequence[tuple[str, str]], tokenizer) -> dict[str, np.ndarray]:
    """SPEC §3.4's conditional warm-up rows for a checkpoint's ``tokenizer`` (``encode(text)`` without special
    tokens, ``eos_id``, ``pad_id``: a ``cat_jax.tasks.tokenizers.HFTokenizer``): ``tokens``/``labels``
    ``[N, L]`` of ``prompt + " " + target`` + EOS, prompt = ``protein.conditional_prompt(input)``; every
    token after the prompt's is supervised. The prompt's ids must be a prefix of the row's (a tokenizer
    that merges across the boundary is an error naming the pair)."""
    rows = []
    for src, target in pairs:
        prompt_text = protein.conditional_prompt(src)
        prompt = tokenizer.encode(prompt_text)
        full = [*tokenizer.encode(prompt_text + " " + target), tokenizer.eos_id]
        if full[: len(prompt)] != prompt:
            raise ValueError(
                f"the prompt's tokens are not a prefix of the training row's for input {src!r}, target "
                f"{target!r}: the tokenizer merges across the prompt boundary"
            )
        rows.append((prompt, full[len(prompt) :]))
    width = max(len(p) + len(t) for p, t in rows)
    laid = [layout(p, t, width, tokenizer.pad_id) for p, t in rows]
    return {k: np.stack([r[k] for r in laid]) for k in ("tokens", "labels")}


def text_prompt_arrays(pairs: Sequence[tuple[str, str]], tokenizer) -> dict[str, np.ndarray]:
    """Right-padded ``protein.conditional_prompt(input)`` ids (``tokenizer.encode``, no special tokens)
    ``prompts`` ``[N, longest]`` with their ``lengths``, ``input_index`` (each row's pair, which the
    decoded-text scorer reads: ``protein.host_score_fn``) and the input's residue and hydrophobic counts
    (``input_length``, ``input_hydrophobic``), as :func:`prompt_arrays`."""
    prompts = [tokenizer.encode(protein.conditional_prompt(src)) for src, _ in pairs]
    out = np.full((len(pairs), max(map(len, prompts))), tokenizer.pad_id, np.int32)
    for i, p in enumerate(prompts):
        out[i, : len(p)] = p
    return {
        "prompts": out,
        "lengths": np.array([len(p) for p in prompts], np.int32),
        "input_index": np.arange(len(pairs), dtype=np.int32),
        "input_length": np.array([len(src) for src, _ in pairs], np.int32),
        "input_hydrophobic": np.array([sum(c in protein.HYDROPHOBIC for c in s) for s, _ in pairs], np.int32),
    }


@dataclasses.dataclass(frozen=True)
class Rows(Sequence):
    """Equal-length arrays as a random-access source of :func:`cat_jax.data.batches` (row ``i``: a dict)."""

    arrays: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[i]) for k, v in self.arrays.items()}  # a 0-d array, not a scalar, per 1-d row


def batches(arrays: Mapping[str, np.ndarray], batch_size: int, *, seed: int) -> data.Batches:
    """``batches(step)``: ``batch_size`` rows of ``arrays`` (plus ``index``), reshuffled each epoch by
    ``seed`` (the one batcher, a pure function of the step)."""
    return data.batches(Rows(dict(arrays)), None, None, PAD, batch_size, seed=seed)


def _read(config: data.ProteinConfig, data_dir: str | Path | None) -> dict[str, tuple[dict[str, str], ...]]:
    """Text fields of every record per split, in generation order (prepared once, cached per process)."""
    rows = data.prepared_records(data.CatProtein, config, data_dir)
    return {
        split: tuple({k: v for k, v in r.items() if isinstance(v, str) and k != "prompt"} for r in recs)
        for split, recs in rows.items()
    }
