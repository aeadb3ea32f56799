"""Records to numpy batches: encoders, the length report, and the one batcher (a pure function of the step).

Records come from a random-access source (a ``tfds.data_source`` split, a list of dicts, or a
:class:`cat_jax.tasks.task_data.Split`) through a grain ``MapDataset`` (source -> example map). Batch ``step``
of epoch ``e`` holds the records at ``np.random.default_rng([seed, e]).permutation(n)[i * P : (i + 1) * P]``
(``P`` prompts per batch, ``i = step - e * per_epoch``): nothing but the step decides it, so a resumed run
reads exactly the batches of an uninterrupted one without checkpointing iterator state, and a host can read
its own slice of each global batch.

Multi-process runs: :meth:`Batches.sharded` with grain's ``ShardOptions`` (``ShardByJaxProcess``, or the
block a mesh gives this process: ``experiments.common.data_shard``) makes ``batches(step)`` read only shard
``i``'s contiguous ``1 / count`` of the step's prompts (every group whole: a prompt's copies stay with it),
so the shards of all processes, concatenated in order, are the one-process batch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import flags, logging

from cat_jax.tasks import protein
from cat_jax.tasks.tokenizers import layout

Encoder = Callable[[str, str], tuple[list[int], list[int]]]


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


@dataclasses.dataclass(frozen=True)
class PromptTargetEncoder:
    """``(prompt, target) -> (BOS + prompt [+ separator], target + EOS)`` ids; picklable for grain workers.

    An empty prompt (unconditional generation) becomes the single BOS token, without the separator.
    """

    tokenizer: Any
    separator: str = ""

    def __call__(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        p = prompt + self.separator if prompt else ""
        return self.tokenizer.encode(p, bos=True), self.tokenizer.encode(target, eos=True)


def protein_encoder() -> PromptTargetEncoder:
    """Char-level protein layout: ``BOS seq EOS`` (pre-training), ``BOS input > target EOS`` (conditional)."""
    return PromptTargetEncoder(protein.tokenizer(), protein.SEPARATOR)


def encode_record(rec: Mapping[str, Any], encode: Encoder, fields: tuple[str, str]) -> tuple[list, list]:
    """Prompt and target ids of one record; the target field falls back to ``answer``."""
    pf, tf = fields
    return encode(_text(rec[pf]), _text(rec[tf] if tf in rec else rec.get("answer", b"")))


@dataclasses.dataclass(frozen=True)
class _Example:
    """Position in ``records`` -> one example (a dict of arrays); picklable.

    With an encoder: the SPEC §3.1 layout of the record's prompt and target (and its ``answer`` string).
    Without one: the record is already a dict of arrays (a :class:`~cat_jax.tasks.task_data.Split` row).
    """

    source: Any
    records: np.ndarray
    encode: Encoder | None
    fields: tuple[str, str]
    max_len: int | None
    pad_id: int

    def __call__(self, position: Any) -> dict[str, np.ndarray]:
        i = int(self.records[int(position)])
        rec = self.source[i]
        if self.encode is None:
            ex = dict(rec)
        else:
            ex = layout(*encode_record(rec, self.encode, self.fields), self.max_len, self.pad_id)
            if "answer" in rec:
                ex["answer"] = np.asarray(_text(rec["answer"]))
        ex["index"] = np.int32(i)
        return ex


@dataclasses.dataclass(frozen=True)
class Batches:
    """``batches(step) -> dict`` of numpy arrays, a pure function of the step (see the module docstring).

    ``dataset`` (a grain ``MapDataset``) maps a position in ``records`` to one example; ``records`` are the
    record indices read (all, or a selection); ``per_epoch`` batches make an epoch (at least one: a split
    smaller than one batch is read whole). Picklable, so :meth:`iterate` can run it in grain workers.
    """

    dataset: grain.MapDataset
    records: np.ndarray
    batch_size: int
    group_size: int
    seed: int
    shuffle: bool
    drop_remainder: bool
    shard: grain.sharding.ShardOptions | None = None  # None: the whole batch (one process)

    @property
    def prompts_per_batch(self) -> int:
        return self.batch_size // self.group_size

    @property
    def per_epoch(self) -> int:
        n, p = len(self.records), self.prompts_per_batch
        return max(n // p if self.drop_remainder else math.ceil(n / p), 1)

    def positions(self, step: int) -> np.ndarray:
        """Positions in ``records`` of the batch's prompts: the epoch's seeded permutation, sliced."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, i = divmod(int(step), self.per_epoch)
        n, p = len(self.records), self.prompts_per_batch
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        return order[i * p : (i + 1) * p]

    def indices(self, step: int) -> np.ndarray:
        """Record indices (into the source) of the batch's prompts, one per group."""
        return self.records[self.positions(step)]

    def sharded(self, shard: grain.sharding.ShardOptions | None) -> Batches:
        """These batches as shard ``shard.shard_index`` of ``shard.shard_count`` reads them: the shard's
        contiguous block of every step's prompts (:meth:`local_positions`); None: the whole batch."""
        if shard is None or shard.shard_count == 1:
            return dataclasses.replace(self, shard=None)
        if self.prompts_per_batch % shard.shard_count:
            raise ValueError(
                f"{self.prompts_per_batch} prompts per batch do not split into {shard.shard_count} equal "
                "process shards; make the batch size (prompts_per_step) a multiple of the process count"
            )
        return dataclasses.replace(self, shard=shard)

    def local_positions(self, step: int) -> np.ndarray:
        """Positions in ``records`` of this shard's prompts of batch ``step`` (all of them unsharded)."""
        order = self.positions(step)
        if self.shard is None:
            return order
        per, rest = divmod(len(order), self.shard.shard_count)
        if rest:  # a last short batch (drop_remainder=False) that does not split over the shards
            raise ValueError(
                f"batch {step} has {len(order)} prompts, not a multiple of the "
                f"{self.shard.shard_count} shards"
            )
        return order[self.shard.shard_index * per : (self.shard.shard_index + 1) * per]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        """This shard's rows of batch ``step`` (the whole batch unsharded); only they are read."""
        ex = [self.dataset[int(j)] for j in self.local_positions(step)]
        # Prompt-major groups: each example's group_size copies are consecutive rows.
        return {k: np.repeat(np.stack([e[k] for e in ex]), self.group_size, axis=0) for k in ex[0]}

    def iterate(self, num_epochs: int | None = None, *, start: int = 0, worker_count: int = 0) -> Iterator:
        """Batches ``start, start + 1, ...`` for ``num_epochs`` epochs from step 0 (None: forever).

        ``worker_count > 0`` computes them in that many grain worker processes (same batches, in order).
        """
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}")
        if worker_count < 0:
            raise ValueError(f"worker_count must be >= 0, got {worker_count}")
        stop = sys.maxsize if num_epochs is None else num_epochs * self.per_epoch
        it = grain.MapDataset.range(start, stop).map(self).to_iter_dataset()
        if worker_count:
            # Grain workers read absl flags; outside an absl app they were never parsed.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
        return iter(it)


def batches(
    source: Sequence[Mapping[str, Any]],
    encode: Encoder | None,
    max_len: int | None,
    pad_id: int,
    batch_size: int,
    *,
    seed: int = 0,
    group_size: int = 1,
    shuffle: bool = True,
    indices: Sequence[int] | None = None,
    fields: tuple[str, str] = ("prompt", "target"),
    drop_remainder: bool = True,
) -> Batches:
    """The one batcher: records of ``source`` -> :class:`Batches`, ``batches(step)`` for any step >= 0.

    With ``encode``, keys ``tokens``/``labels``/``mask`` ``[B, max_len]`` (SPEC §3.1 layout, padded with
    ``pad_id``), ``prompt_len`` ``[B]`` and ``answer`` ``[B]`` strings when records have one; ``fields``
    names the prompt and target fields (the target falls back to ``answer``). With ``encode=None`` the
    records are dicts of arrays (``max_len`` unused), stacked as they are. Always ``index`` ``[B]``, the
    record index in ``source``. ``indices`` restricts to a selection (e.g. :func:`select_problems`);
    ``shuffle=False`` reads in record order. ``group_size > 1`` keeps each record as ``group_size``
    consecutive copies (prompt-major RL groups; ``batch_size`` must be a multiple).
    """
    if group_size < 1 or batch_size < 1 or batch_size % group_size:
        raise ValueError(
            f"batch_size {batch_size} must be a positive multiple of group_size {group_size} (>= 1)"
        )
    if encode is not None and (max_len is None or max_len < 2):
        raise ValueError(f"max_len must be an integer >= 2 with an encoder, got {max_len}")
    records = np.arange(len(source)) if indices is None else np.asarray(list(indices), np.int64)
    if len(records) == 0:
        raise ValueError("no records to batch (empty source or selection)")
    # A range, not a source, of positions: grain monitors every read of a source (a cost per record).
    ds = grain.MapDataset.range(len(records)).map(
        _Example(source, records, encode, tuple(fields), max_len, pad_id)
    )
    return Batches(ds, records, batch_size, group_size, seed, shuffle, drop_remainder)


def length_report(
    source: Sequence[Mapping[str, Any]],
    encode: Encoder,
    max_len: int,
    fields: tuple[str, str] = ("prompt", "target"),
) -> dict[str, int]:
    """Counts of records that fit, whose target ``truncate_target`` cuts, and whose prompt fills the window.

    Run it before training: :func:`batches` cuts long targets (SPEC's ``truncate_target``) and raises on a
    prompt that fills the window, so these counts are what the length rule would change.
    """
    counts = {"fits": 0, "target_truncated": 0, "prompt_fills_window": 0}
    for i in range(len(source)):
        p, t = encode_record(source[i], encode, fields)
        key = (
            "prompt_fills_window"
            if len(p) >= max_len
            else "target_truncated"
            if len(p) + len(t) > max_len
            else "fits"
        )
        counts[key] += 1
    if counts["target_truncated"] or counts["prompt_fills_window"]:
        logging.warning("length rule at max_len=%d: %s", max_len, counts)
    return counts
