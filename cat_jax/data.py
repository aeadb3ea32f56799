"""TFDS builders (synthetic tasks, GSM8K/MATH jsonl on disk) and grain pipelines to numpy batches.

Prepared as ``array_record`` and read back with ``tfds.data_source``: no TensorFlow, no downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from cat_jax.tasks import arithmetic, math_answers
from cat_jax.tasks.tokenizers import layout


@dataclasses.dataclass(frozen=True)
class JsonlReport:
    """Records kept and records rejected (by reason) while reading one jsonl file."""

    path: str
    kept: int
    rejected: dict[str, int]


def norm_hash(text: str) -> str:
    """SHA-256 of whitespace-collapsed text: the duplicate-problem key."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def read_jsonl(
    path: Path,
    fields: Sequence[str],
    max_chars: int = 20_000,
    check: Callable[[dict], str | None] | None = None,
) -> tuple[list[dict], JsonlReport]:
    """Records of a jsonl file; a malformed line raises naming file:line; rule failures are counted."""
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    kept, rejected = [], {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
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
            kept.append(rec)
    report = JsonlReport(str(path), len(kept), rejected)
    if rejected:
        logging.warning("%s: kept %d records, rejected %s", path, len(kept), rejected)
    return kept, report


def cross_split_duplicates(splits: dict[str, Sequence[str]]) -> dict[tuple[str, str], int]:
    """Number of problems shared (by normalised hash) between each pair of splits."""
    hashes = {k: {norm_hash(t) for t in v} for k, v in splits.items()}
    names = sorted(hashes)
    return {(a, b): len(hashes[a] & hashes[b]) for i, a in enumerate(names) for b in names[i + 1 :]}


_TEXT = lambda: tfds.features.FeaturesDict(
    {"id": tfds.features.Text(), "prompt": tfds.features.Text(), "solution": tfds.features.Text(),
     "answer": tfds.features.Text()}
)  # fmt: skip


@dataclasses.dataclass
class ArithmeticConfig(tfds.core.BuilderConfig):
    """One synthetic family with its difficulty knobs, split sizes and seed."""

    family: str = "multiplication"
    digits: int = 2
    steps: int = 3
    modulus: int = 97
    num_train: int = 4000
    num_test: int = 1000
    seed: int = 0


class CatArithmetic(tfds.core.GeneratorBasedBuilder):
    """Synthetic verifiable arithmetic (``cat_jax.tasks.arithmetic``), deterministic from the config seed."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Multiplication and modular-chain families."}  # noqa: RUF012
    BUILDER_CONFIGS = [  # noqa: RUF012
        ArithmeticConfig(name="mul2", family="multiplication", digits=2),
        ArithmeticConfig(name="modchain3", family="modular_chain", steps=3, modulus=97, num_train=20000),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_TEXT())

    def _split_generators(self, dl_manager):
        c = self.builder_config
        if c.family == "multiplication":
            pool = arithmetic.multiplication_problems(c.digits)
        else:
            pool = arithmetic.sample_modular_chains(
                c.num_train + c.num_test, steps=c.steps, modulus=c.modulus, seed=c.seed
            )
        train, test = arithmetic.split_problems(pool, c.num_train, c.num_test, seed=c.seed)
        return {"train": self._generate(train, "train"), "test": self._generate(test, "test")}

    def _generate(self, probs, split):
        for i, p in enumerate(probs):
            yield i, {"id": f"{split}:{i}", "prompt": p.prompt, "solution": p.solution, "answer": p.answer}

    def _generate_examples(self, *args):  # split generators above yield directly
        raise NotImplementedError


class _JsonlBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared logic of the manual-download jsonl builders."""

    VERSION = tfds.core.Version("1.0.0")
    FIELDS: tuple[str, ...] = ()
    SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}  # noqa: RUF012

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_TEXT())

    def _convert(self, rec: dict) -> dict[str, str]:
        raise NotImplementedError

    def _check(self, rec: dict) -> str | None:
        return None

    def _split_generators(self, dl_manager):
        manual = Path(dl_manager.manual_dir)
        missing = [manual / f for f in self.SPLIT_FILES.values() if not (manual / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: put {', '.join(str(m) for m in missing)} in place (one JSON object per line, "
                f"fields {list(self.FIELDS)}); the manual_dir is {manual}"
            )
        self.reports, texts, out = {}, {}, {}
        for split, fname in self.SPLIT_FILES.items():
            recs, self.reports[split] = read_jsonl(manual / fname, self.FIELDS, check=self._check)
            rows = [self._convert(r) for r in recs]
            texts[split] = [r["prompt"] for r in rows]
            out[split] = ((f"{split}:{i}", {**r, "id": f"{split}:{i}:{norm_hash(r['prompt'])[:12]}"})
                          for i, r in enumerate(rows))  # fmt: skip
        self.duplicates = cross_split_duplicates(texts)
        for pair, n in self.duplicates.items():
            if n:
                logging.warning("%s: %d problems appear in both %s and %s", self.name, n, *pair)
        return out

    def _generate_examples(self, *args):  # split generators above yield directly
        raise NotImplementedError


class Gsm8kJsonl(_JsonlBuilder):
    """GSM8K-format jsonl (``question``, ``answer`` ending in ``#### N``) from ``manual_dir``."""

    FIELDS = ("question", "answer")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place train.jsonl and test.jsonl (fields question, answer) in manual_dir."

    def _check(self, rec):
        return None if math_answers.extract_gsm8k(rec["answer"]) else "no_####_answer"

    def _convert(self, rec):
        return {"prompt": rec["question"], "solution": rec["answer"],
                "answer": math_answers.extract_gsm8k(rec["answer"])}  # fmt: skip


class MathJsonl(_JsonlBuilder):
    """MATH-format jsonl (``problem``, ``solution`` with a box, ``answer``) from ``manual_dir``."""

    FIELDS = ("problem", "solution", "answer")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place train.jsonl and test.jsonl (fields problem, solution, answer) in manual_dir."
    )

    def _check(self, rec):
        return None if math_answers.extract_answer(rec["solution"], "boxed") else "solution_without_box"

    def _convert(self, rec):
        return {"prompt": rec["problem"], "solution": rec["solution"], "answer": rec["answer"]}


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def batches(
    source: Sequence[dict],
    encode: Callable[[str, str], tuple[list[int], list[int]]],
    max_len: int,
    pad_id: int,
    batch_size: int,
    seed: int = 0,
    num_epochs: int | None = 1,
    group_size: int = 1,
    shuffle: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches (tokens, labels, mask, prompt_len, index) from records with ``prompt``/``target`` text.

    ``group_size > 1`` repeats each record that many times consecutively (prompt-major groups for RL);
    ``batch_size`` must then be a multiple of ``group_size``. ``num_epochs=None`` repeats forever.
    """
    if batch_size % group_size:
        raise ValueError(f"batch_size {batch_size} is not a multiple of group_size {group_size}")

    def make(i_rec):
        i, rec = i_rec
        p, t = encode(_text(rec["prompt"]), _text(rec.get("target", rec.get("answer", b""))))
        return {**layout(p, t, max_len, pad_id), "index": np.asarray(i, np.int32)}

    ds = grain.MapDataset.range(len(source))
    if shuffle:
        # MapDataset.shuffle reshuffles every epoch of the repeat that follows it.
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs).map(lambda i: (int(i), source[int(i)])).map(make)
    buf: list[dict[str, np.ndarray]] = []
    for ex in ds.to_iter_dataset():
        buf.extend([ex] * group_size)
        if len(buf) == batch_size:
            yield {k: np.stack([b[k] for b in buf]) for k in buf[0]}
            buf = []
