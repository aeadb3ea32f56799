"""TFDS builders (synthetic arithmetic, protein, GSM8K/MATH jsonl on disk) and grain pipelines to batches.

Prepared as ``array_record`` and read back with ``tfds.data_source``: no TensorFlow, no downloads. Every
builder writes a validation report into its ``DatasetInfo`` metadata (``metadata.json`` next to the records,
read back as ``info.metadata["validation"]``): records kept per split, records rejected per split and reason,
problems shared between splits (hash of whitespace-collapsed text) and, for MATH, the selection applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import flags, logging

from cat_jax.tasks import arithmetic, math_answers, protein
from cat_jax.tasks.tokenizers import layout

# ----------------------------------------------------------------------------- validation and selection


@dataclasses.dataclass(frozen=True)
class JsonlReport:
    """Records kept and records rejected (by reason) while reading one jsonl file."""

    path: str
    kept: int
    rejected: dict[str, int]


def norm_hash(text: str) -> str:
    """SHA-256 of whitespace-collapsed text: the duplicate-problem key."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def problem_id(split: str, index: int, problem: str) -> str:
    """SPEC §3.1 record id ``split:index:sha256(problem)[:12]`` (index = row in the original split)."""
    return f"{split}:{index}:{hashlib.sha256(problem.encode()).hexdigest()[:12]}"


def read_jsonl(
    path: Path,
    fields: Sequence[str],
    max_chars: int = 20_000,
    check: Callable[[dict], str | None] | None = None,
) -> tuple[list[tuple[int, dict]], JsonlReport]:
    """``(row, record)`` pairs of a jsonl file; a malformed line raises naming file:line; failures counted.

    Rows are numbered from 0 over non-blank lines, rejected rows included, so ids stay stable under filtering.
    A record fails ``too_long`` when its ``fields`` hold more than ``max_chars`` characters, or the reason
    ``check`` returns.
    """
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    kept, rejected, row = [], {}, -1
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: malformed json ({e.msg})") from None
            if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in fields):
                raise ValueError(f"{path}:{lineno}: expected an object with string fields {list(fields)}")
            reason = "too_long" if sum(len(rec[k]) for k in fields) > max_chars else None
            reason = reason or (check(rec) if check else None)
            if reason:
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            kept.append((row, rec))
    report = JsonlReport(str(path), len(kept), rejected)
    if rejected:
        logging.warning("%s: kept %d records, rejected %s", path, len(kept), rejected)
    return kept, report


def cross_split_duplicates(splits: Mapping[str, Sequence[str]]) -> dict[tuple[str, str], int]:
    """Number of problems shared (by normalised hash) between each pair of splits."""
    hashes = {k: {norm_hash(t) for t in v} for k, v in splits.items()}
    names = sorted(hashes)
    return {(a, b): len(hashes[a] & hashes[b]) for i, a in enumerate(names) for b in names[i + 1 :]}


def select_problems(
    problems: Sequence[str],
    count: int | None,
    *,
    levels: Sequence[str | None] | None = None,
    keep_levels: Collection[str] | None = None,
    offset: int = 0,
    seed: int = 42,
) -> list[int]:
    """SPEC §3.1 selection: indices (into ``problems``) of the chosen records, in selection order.

    Keep the records in their original order, drop those whose level is not in ``keep_levels`` (when given),
    shuffle the eligible indices with CPython's ``random.Random(seed).shuffle`` (the permutation depends only
    on the list length, so shuffling indices equals shuffling the records), take the first
    ``offset + count`` and drop the first ``offset`` (RL prompts; ``offset=0`` otherwise). ``count=None``
    takes every eligible record after ``offset``. Asking for more than are eligible is an error, and so is a
    problem repeated (same whitespace-collapsed text) within the selection.

    >>> select_problems(["a", "b", "c", "d"], 2, levels=["L1", "L2", "L1", "L1"], keep_levels={"L1"})
    [2, 0]
    """
    if levels is not None and len(levels) != len(problems):
        raise ValueError(f"levels has {len(levels)} entries but problems has {len(problems)}")
    if keep_levels is not None and levels is None:
        raise ValueError("keep_levels needs levels (one per problem)")
    if offset < 0 or (count is not None and count < 0):
        raise ValueError(f"offset and count must be >= 0, got offset={offset}, count={count}")
    eligible = [i for i in range(len(problems)) if keep_levels is None or levels[i] in keep_levels]
    random.Random(seed).shuffle(eligible)
    need = len(eligible) if count is None else offset + count
    if need > len(eligible) or offset > len(eligible):
        where = f" with level in {sorted(keep_levels)}" if keep_levels is not None else ""
        raise ValueError(
            f"requested offset + count = {offset} + {count} problems but only {len(eligible)} are "
            f"eligible{where}"
        )
    chosen = eligible[offset:need]
    seen: dict[str, int] = {}
    for i in chosen:
        j = seen.setdefault(norm_hash(problems[i]), i)
        if j != i:
            raise ValueError(f"problem {i} repeats problem {j} within the selection (same normalised text)")
    return chosen


def validation_report(
    kept: Mapping[str, int],
    rejected: Mapping[str, Mapping[str, int]],
    texts: Mapping[str, Sequence[str]],
    **extra: Any,
) -> dict[str, Any]:
    """JSON-ready report persisted with a prepared dataset; cross-split duplicates are also logged."""
    dups = cross_split_duplicates(texts)
    for (a, b), n in dups.items():
        if n:
            logging.warning("%d problems appear in both %s and %s", n, a, b)
    return {
        "kept": dict(kept),
        "rejected": {k: dict(v) for k, v in rejected.items()},
        "duplicates": {f"{a}/{b}": n for (a, b), n in dups.items()},
        **extra,
    }


def _save_report(builder: tfds.core.GeneratorBasedBuilder, report: dict[str, Any]) -> None:
    builder.report = report
    builder.info.metadata["validation"] = report


# ----------------------------------------------------------------------------- builders

_TEXT = lambda **extra: tfds.features.FeaturesDict(
    {"id": tfds.features.Text(), "prompt": tfds.features.Text(), "solution": tfds.features.Text(),
     "answer": tfds.features.Text(), **extra}
)  # fmt: skip


@dataclasses.dataclass
class ArithmeticConfig(tfds.core.BuilderConfig):
    """One synthetic family with its difficulty knobs, split sizes and seed."""

    family: str = "multiplication"
    digits: int = 2
    steps: int = 3
    modulus: int = 97
    max_operand: int = 99
    num_train: int = 4000
    num_test: int = 1000
    seed: int = 0


class CatArithmetic(tfds.core.GeneratorBasedBuilder):
    """Synthetic verifiable arithmetic (``cat_jax.tasks.arithmetic``), deterministic from the config seed."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Multiplication and modular-chain families.",
        "1.1.0": "max_operand knob; validation report in the metadata.",
    }
    BUILDER_CONFIGS = [  # noqa: RUF012
        ArithmeticConfig(name="mul2", family="multiplication", digits=2),
        ArithmeticConfig(name="modchain3", family="modular_chain", steps=3, modulus=97, num_train=20000),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_TEXT(), metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        c = self.builder_config
        if c.family == "multiplication":
            pool = arithmetic.multiplication_problems(c.digits)
        elif c.family == "modular_chain":
            pool = arithmetic.sample_modular_chains(
                c.num_train + c.num_test, steps=c.steps, modulus=c.modulus, max_operand=c.max_operand,
                seed=c.seed,
            )  # fmt: skip
        else:
            raise ValueError(f"family must be 'multiplication' or 'modular_chain', got {c.family!r}")
        train, test = arithmetic.split_problems(pool, c.num_train, c.num_test, seed=c.seed)
        splits = {"train": train, "test": test}
        _save_report(
            self,
            validation_report(
                {k: len(v) for k, v in splits.items()},
                {k: {} for k in splits},
                {k: [p.prompt for p in v] for k, v in splits.items()},
            ),
        )
        return {k: self._generate(v, k) for k, v in splits.items()}

    def _generate(self, probs, split):
        for i, p in enumerate(probs):
            yield i, {"id": f"{split}:{i}", "prompt": p.prompt, "solution": p.solution, "answer": p.answer}

    def _generate_examples(self, *args):  # split generators above yield directly
        raise NotImplementedError


@dataclasses.dataclass
class ProteinConfig(tfds.core.BuilderConfig):
    """``pretrain``: the protein-like corpus; ``conditional``: SPEC §3.4 (input -> target) pairs per split."""

    kind: str = "pretrain"
    sizes: tuple[tuple[str, int], ...] = (("train", 20000), ("test", 1000))
    seed: int = 0


class CatProtein(tfds.core.GeneratorBasedBuilder):
    """Synthetic protein data of ``cat_jax.tasks.protein``, deterministic from the config seed.

    ``pretrain`` records: ``prompt`` "" and ``target`` a sequence (train and test are consecutive draws of
    one seeded corpus). ``conditional`` records: ``input``, ``target`` and the SPEC prompt text ``prompt``;
    each split is its own stream seeded from ``cat-protein-v1:{seed}:{split}``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Pre-training corpus and conditional hydrophobicity pairs."}  # noqa: RUF012
    BUILDER_CONFIGS = [  # noqa: RUF012
        ProteinConfig(name="pretrain", kind="pretrain", seed=0),
        ProteinConfig(
            name="conditional",
            kind="conditional",
            sizes=(("warmup", 2000), ("train", 3000), ("test", 150)),
            seed=42,
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text
        if self.builder_config.kind == "conditional":
            feats = {"id": text(), "input": text(), "prompt": text(), "target": text(),
                     "input_hydrophobicity": tfds.features.Scalar(np.float32)}  # fmt: skip
        else:
            feats = {"id": text(), "prompt": text(), "target": text(),
                     "hydrophobicity": tfds.features.Scalar(np.float32)}  # fmt: skip
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats), metadata=tfds.core.MetadataDict()
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        sizes = dict(c.sizes)
        if c.kind == "pretrain":
            seqs = protein.pretraining_corpus(sum(sizes.values()), seed=c.seed)
            rows, start = {}, 0
            for split, n in c.sizes:
                rows[split] = [{"prompt": "", "target": s, "hydrophobicity": protein.hydrophobicity(s)}
                               for s in seqs[start : start + n]]  # fmt: skip
                start += n
            texts = {k: [r["target"] for r in v] for k, v in rows.items()}
        elif c.kind == "conditional":
            rows = {
                split: [{"input": a, "prompt": protein.conditional_prompt(a), "target": b,
                         "input_hydrophobicity": protein.hydrophobicity(a)}
                        for a, b in protein.conditional_pairs(n, split, seed=c.seed)]
                for split, n in c.sizes
            }  # fmt: skip
            texts = {k: [r["input"] for r in v] for k, v in rows.items()}
        else:
            raise ValueError(f"kind must be 'pretrain' or 'conditional', got {c.kind!r}")
        _save_report(
            self, validation_report({k: len(v) for k, v in rows.items()}, {k: {} for k in rows}, texts)
        )
        return {k: self._examples(k, v) for k, v in rows.items()}

    def _examples(self, split, rows):
        for i, r in enumerate(rows):
            yield i, {**r, "id": f"{split}:{i}"}

    def _generate_examples(self, *args):  # split generators above yield directly
        raise NotImplementedError


@dataclasses.dataclass
class MathConfig(tfds.core.BuilderConfig):
    """SPEC §3.1 selection per split (``None`` count: every eligible record; no fields set: original order).

    ``counts``/``offsets`` map a split name to ``count``/``offset`` of :func:`select_problems`, e.g. the
    Pass@N RL prompts are ``counts={"train": 500}, offsets={"train": 2000}``.
    """

    levels: tuple[str, ...] | None = None
    counts: dict[str, int] | None = None
    offsets: dict[str, int] | None = None
    seed: int = 42

    @property
    def selects(self) -> bool:
        return self.levels is not None or bool(self.counts) or bool(self.offsets)


class _JsonlBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared logic of the manual-download jsonl builders."""

    FIELDS: tuple[str, ...] = ()
    TEXT_FIELD = ""
    SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}  # noqa: RUF012

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=self._features(), metadata=tfds.core.MetadataDict())

    def _features(self) -> tfds.features.FeaturesDict:
        return _TEXT()

    def _convert(self, rec: dict) -> dict[str, str]:
        raise NotImplementedError

    def _check(self, rec: dict) -> str | None:
        return None

    def _select(self, split: str, rows: list[tuple[int, dict]]) -> tuple[list[tuple[int, dict]], dict | None]:
        return rows, None

    def _split_generators(self, dl_manager):
        manual = Path(dl_manager.manual_dir)
        missing = [manual / f for f in self.SPLIT_FILES.values() if not (manual / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: put {', '.join(str(m) for m in missing)} in place (one JSON object per line, "
                f"fields {list(self.FIELDS)}); the manual_dir is {manual}"
            )
        kept, rejected, texts, out, selection = {}, {}, {}, {}, {}
        for split, fname in self.SPLIT_FILES.items():
            rows, rep = read_jsonl(manual / fname, self.FIELDS, check=self._check)
            rows, selection[split] = self._select(split, rows)
            kept[split], rejected[split] = len(rows), rep.rejected
            texts[split] = [r[self.TEXT_FIELD] for _, r in rows]
            out[split] = self._examples(split, rows)
        extra = {"selection": selection} if any(v is not None for v in selection.values()) else {}
        _save_report(self, validation_report(kept, rejected, texts, **extra))
        return out

    def _examples(self, split, rows):
        for k, (i, r) in enumerate(rows):
            yield k, {**self._convert(r), "id": problem_id(split, i, r[self.TEXT_FIELD])}

    def _generate_examples(self, *args):  # split generators above yield directly
        raise NotImplementedError


class Gsm8kJsonl(_JsonlBuilder):
    """GSM8K-format jsonl (``question``, ``answer`` ending in ``#### N``) from ``manual_dir``."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Initial release.",
        "1.1.0": "SPEC ids split:row:sha256(question)[:12]; validation report in the metadata.",
    }
    FIELDS = ("question", "answer")
    TEXT_FIELD = "question"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place train.jsonl and test.jsonl (fields question, answer) in manual_dir."

    def _check(self, rec):
        return None if math_answers.extract_gsm8k(rec["answer"]) else "no_####_answer"

    def _convert(self, rec):
        return {"prompt": rec["question"], "solution": rec["answer"],
                "answer": math_answers.extract_gsm8k(rec["answer"])}  # fmt: skip


class MathJsonl(_JsonlBuilder):
    """MATH-format jsonl (``problem``, boxed ``solution``, ``answer``, optional ``level``), ``manual_dir``.

    Config ``all`` keeps every valid record in file order; other configs apply :func:`select_problems`.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Initial release.",
        "1.1.0": "level feature; SPEC §3.1 selection configs; SPEC ids; validation report in the metadata.",
    }
    BUILDER_CONFIGS = [  # noqa: RUF012
        MathConfig(name="all", description="Every valid record, file order."),
        MathConfig(
            name="levels1to3",
            description="Levels 1-3 of both splits, shuffled with random.Random(42) (the Majority family).",
            levels=("Level 1", "Level 2", "Level 3"),
        ),
    ]
    FIELDS = ("problem", "solution", "answer")
    TEXT_FIELD = "problem"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place train.jsonl and test.jsonl (fields problem, solution, answer, optionally level) in manual_dir."
    )

    def _features(self):
        return _TEXT(level=tfds.features.Text())

    def _check(self, rec):
        if "level" in rec and not isinstance(rec["level"], str):
            return "level_not_a_string"
        return None if math_answers.extract_answer(rec["solution"], "boxed") else "solution_without_box"

    def _convert(self, rec):
        return {"prompt": rec["problem"], "solution": rec["solution"], "answer": rec["answer"],
                "level": rec.get("level", "")}  # fmt: skip

    def _select(self, split, rows):
        c = self.builder_config
        if not c.selects:
            return rows, None
        count = (c.counts or {}).get(split)
        offset = (c.offsets or {}).get(split, 0)
        idx = select_problems(
            [r["problem"] for _, r in rows],
            count,
            levels=[r.get("level") for _, r in rows],
            keep_levels=None if c.levels is None else set(c.levels),
            offset=offset,
            seed=c.seed,
        )
        info = {"levels": None if c.levels is None else list(c.levels), "count": count, "offset": offset,
                "seed": c.seed, "selected": len(idx)}  # fmt: skip
        return [rows[i] for i in idx], info


# ----------------------------------------------------------------------------- grain pipelines


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


@dataclasses.dataclass(frozen=True)
class _Example:
    """Record index -> one laid-out example repeated ``group_size`` times (a leading group axis)."""

    source: Any
    encode: Callable[[str, str], tuple[list[int], list[int]]]
    fields: tuple[str, str]
    max_len: int
    pad_id: int
    group_size: int

    def __call__(self, i: Any) -> dict[str, np.ndarray]:
        i = int(i)
        rec = self.source[i]
        pf, tf = self.fields
        target = rec[tf] if tf in rec else rec.get("answer", b"")
        p, t = self.encode(_text(rec[pf]), _text(target))
        ex = {**layout(p, t, self.max_len, self.pad_id), "index": np.asarray(i, np.int32)}
        if "answer" in rec:
            ex["answer"] = np.asarray(_text(rec["answer"]))
        return {k: np.stack([v] * self.group_size) for k, v in ex.items()}


def _concat_groups(groups: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}


def batch_dataset(
    source: Sequence[Mapping[str, Any]],
    encode: Callable[[str, str], tuple[list[int], list[int]]],
    max_len: int,
    pad_id: int,
    batch_size: int,
    seed: int = 0,
    num_epochs: int | None = 1,
    group_size: int = 1,
    shuffle: bool = True,
    indices: Sequence[int] | None = None,
    fields: tuple[str, str] = ("prompt", "target"),
    drop_remainder: bool = True,
) -> grain.MapDataset:
    """The grain ``MapDataset`` of :func:`batches`: seeded shuffle, repeat, encode, prompt-major batches."""
    if group_size < 1 or batch_size < 1 or batch_size % group_size:
        raise ValueError(
            f"batch_size {batch_size} must be a positive multiple of group_size {group_size} (>= 1)"
        )
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}")
    ds = grain.MapDataset.range(len(source)) if indices is None else grain.MapDataset.source(list(indices))
    if shuffle:
        # The repeat below reseeds the shuffle per epoch: a fresh, seed-determined order every epoch.
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.map(_Example(source, encode, tuple(fields), max_len, pad_id, group_size))
    return ds.batch(batch_size // group_size, drop_remainder=drop_remainder, batch_fn=_concat_groups)


def batches(
    source: Sequence[Mapping[str, Any]],
    encode: Callable[[str, str], tuple[list[int], list[int]]],
    max_len: int,
    pad_id: int,
    batch_size: int,
    seed: int = 0,
    num_epochs: int | None = 1,
    group_size: int = 1,
    shuffle: bool = True,
    indices: Sequence[int] | None = None,
    fields: tuple[str, str] = ("prompt", "target"),
    drop_remainder: bool = True,
    worker_count: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches from records (a ``tfds.data_source`` split or a list of dicts) via a grain pipeline.

    Keys: ``tokens``/``labels``/``mask`` ``[B, max_len]`` (SPEC §3.1 layout), ``prompt_len`` ``[B]``,
    ``index`` ``[B]`` (record index in ``source``) and ``answer`` ``[B]`` strings when records have one.
    ``fields`` names the prompt and target fields (the target falls back to ``answer``); ``indices``
    restricts to a selection (e.g. :func:`select_problems`). ``group_size > 1`` keeps each record as
    ``group_size`` consecutive copies (prompt-major RL groups; ``batch_size`` must be a multiple).
    ``num_epochs=None`` repeats forever; ``worker_count > 0`` encodes in that many grain worker processes.
    """
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}")
    ds = batch_dataset(
        source, encode, max_len, pad_id, batch_size, seed, num_epochs, group_size, shuffle, indices, fields,
        drop_remainder,
    )  # fmt: skip
    it = ds.to_iter_dataset()
    if worker_count:
        # Grain workers read absl flags; outside an absl app they were never parsed.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(it)


def length_report(
    source: Sequence[Mapping[str, Any]],
    encode: Callable[[str, str], tuple[list[int], list[int]]],
    max_len: int,
    fields: tuple[str, str] = ("prompt", "target"),
) -> dict[str, int]:
    """Counts of records that fit, whose target ``truncate_target`` cuts, and whose prompt fills the window.

    Run it before training: :func:`batches` cuts long targets (SPEC's ``truncate_target``) and raises on a
    prompt that fills the window, so these counts are what the length rule would change.
    """
    counts = {"fits": 0, "target_truncated": 0, "prompt_fills_window": 0}
    pf, tf = fields
    for i in range(len(source)):
        rec = source[i]
        p, t = encode(_text(rec[pf]), _text(rec[tf] if tf in rec else rec.get("answer", b"")))
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
