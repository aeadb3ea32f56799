"""TFDS builders: synthetic arithmetic, protein, GSM8K/MATH jsonl on disk (``array_record``, no TensorFlow).

Prepared once into a data dir and read back with ``tfds.data_source`` (random access, no downloads). Every
builder writes a validation report (:func:`cat_jax.data.validation.validation_report`) into its
``DatasetInfo`` metadata (``metadata.json`` next to the records, read back as
``info.metadata["validation"]``). A problem no run could score (an empty or unparseable reference answer)
stops the preparation with a ``ValueError`` naming file:line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from cat_jax.data.validation import problem_id, read_jsonl, select_problems, validation_report
from cat_jax.tasks import arithmetic, math_answers, protein


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
    num_rl: int = 0  # > 0: an "rl" split of prompts disjoint from train and test
    seed: int = 0


class CatArithmetic(tfds.core.GeneratorBasedBuilder):
    """Synthetic verifiable arithmetic (``cat_jax.tasks.arithmetic``), deterministic from the config seed."""

    VERSION = tfds.core.Version("1.4.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Multiplication and modular-chain families.",
        "1.1.0": "max_operand knob; validation report in the metadata.",
        "1.2.0": "Records in generation order (record i of a split is problem i of split_problems).",
        "1.3.0": "Addition family (digits + digits, the sum zero-padded to digits + 1).",
        "1.4.0": "num_rl: an 'rl' split disjoint from train and test (the multiplication and addition "
        "train / test splits are unchanged by it).",
    }
    BUILDER_CONFIGS = [  # noqa: RUF012
        ArithmeticConfig(name="mul2", family="multiplication", digits=2),
        ArithmeticConfig(name="modchain3", family="modular_chain", steps=3, modulus=97, num_train=20000),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        # No shuffle by key hash: the experiments index problems by their place in the generated split.
        return self.dataset_info_from_configs(
            features=_TEXT(), metadata=tfds.core.MetadataDict(), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        if c.family == "multiplication":
            pool = arithmetic.multiplication_problems(c.digits)
        elif c.family == "addition":
            pool = arithmetic.addition_problems(c.digits)
        elif c.family == "modular_chain":
            pool = arithmetic.sample_modular_chains(
                c.num_train + c.num_test + c.num_rl, steps=c.steps, modulus=c.modulus,
                max_operand=c.max_operand, seed=c.seed,
            )  # fmt: skip
        else:
            raise ValueError(
                f"family must be 'multiplication', 'addition' or 'modular_chain', got {c.family!r}"
            )
        parts = arithmetic.split_problems(pool, c.num_train, c.num_test, seed=c.seed, num_rl=c.num_rl)
        splits = dict(zip(("train", "test", "rl"), parts, strict=False))
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
    """``pretrain``: the protein-like corpus; ``conditional``: SPEC §3.4 (input -> target) pairs per split.

    ``max_len``, ``min_len``, ``rare_fraction``, ``rare_beta``, ``common_beta``: ``pretraining_corpus``' knobs
    of the same names (sequence lengths min_len..max_len; the share and Beta parameters of the rare
    high-hydrophobicity family and of the common one).
    """

    kind: str = "pretrain"
    sizes: tuple[tuple[str, int], ...] = (("train", 20000), ("test", 1000))
    seed: int = 0
    max_len: int = 40
    min_len: int = 10
    rare_fraction: float = 0.03
    rare_beta: tuple[float, float] = (60.0, 20.0)
    common_beta: tuple[float, float] = (16.0, 22.0)


class CatProtein(tfds.core.GeneratorBasedBuilder):
    """Synthetic protein data of ``cat_jax.tasks.protein``, deterministic from the config seed.

    ``pretrain`` records: ``prompt`` "" and ``target`` a sequence (train and test are consecutive draws of
    one seeded corpus). ``conditional`` records: ``input``, ``target`` and the SPEC prompt text ``prompt``;
    each split is its own stream seeded from ``cat-protein-v1:{seed}:{split}``. Records are in generation
    order: the first ``n`` of a conditional split are ``conditional_pairs(n, split, seed)``, the first ``n``
    of the pre-training ``train`` split ``pretraining_corpus(n, seed, ...)`` with the config's corpus knobs.
    """

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Pre-training corpus and conditional hydrophobicity pairs.",
        "1.1.0": "Records in generation order (record i of a split is draw i); max_len knob of the corpus.",
        "1.2.0": "The corpus' family knobs (min_len, rare_fraction, rare_beta, common_beta); defaults give "
        "1.1.0's records.",
    }
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
        # No shuffle by key hash: the experiments read the first n records of a split as its first n draws.
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(feats),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        sizes = dict(c.sizes)
        if c.kind == "pretrain":
            seqs = protein.pretraining_corpus(
                sum(sizes.values()),
                seed=c.seed,
                min_len=c.min_len,
                max_len=c.max_len,
                rare_fraction=c.rare_fraction,
                rare_beta=tuple(c.rare_beta),
                common_beta=tuple(c.common_beta),
            )
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

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Initial release.",
        "1.1.0": "SPEC ids split:row:sha256(question)[:12]; validation report in the metadata.",
        "1.2.0": "An empty reference answer after '####' stops the preparation (file:line).",
    }
    FIELDS = ("question", "answer")
    TEXT_FIELD = "question"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place train.jsonl and test.jsonl (fields question, answer) in manual_dir."

    def _check(self, rec):
        if "####" not in rec["answer"]:
            return "no_####_answer"
        if math_answers.extract_gsm8k(rec["answer"]) is None:
            raise ValueError(f"empty reference answer after '####' in {rec['answer']!r}")
        return None

    def _convert(self, rec):
        return {"prompt": rec["question"], "solution": rec["answer"],
                "answer": math_answers.extract_gsm8k(rec["answer"])}  # fmt: skip


class MathJsonl(_JsonlBuilder):
    """MATH-format jsonl (``problem``, boxed ``solution``, ``answer``, optional ``level``), ``manual_dir``.

    Config ``all`` keeps every valid record in file order; other configs apply :func:`select_problems`.
    """

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "Initial release.",
        "1.1.0": "level feature; SPEC §3.1 selection configs; SPEC ids; validation report in the metadata.",
        "1.2.0": "An empty or unparseable reference answer stops the preparation (file:line).",
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
        if not math_answers.extract_answer(rec["solution"], "boxed"):
            return "solution_without_box"
        # The reference as the verifier reads it (boxed content if boxed, then the vote-key normalisation).
        ref = math_answers.extract_answer(rec["answer"], "answer_only")
        if ref is None or not math_answers.vote_key(ref):
            raise ValueError(f"empty or unparseable reference answer {rec['answer']!r}")
        return None

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


# ----------------------------------------------------------------------------- prepare once, read back


def default_data_dir() -> Path:
    """``$CAT_JAX_DATA_DIR`` if set, else ``~/.cache/cat_jax/tfds`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("CAT_JAX_DATA_DIR"):
        return Path(os.environ["CAT_JAX_DATA_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cat_jax" / "tfds"


_PREPARED: dict[tuple, dict[str, tuple[dict[str, Any], ...]]] = {}


def prepared_records(
    builder_cls: type[tfds.core.GeneratorBasedBuilder],
    config: tfds.core.BuilderConfig,
    data_dir: str | Path | None = None,
    *,
    manual_dir: str | Path | None = None,
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Every record of every split of ``builder_cls(config)``, text decoded to ``str``, in record order.

    Prepares the data in ``data_dir`` (default :func:`default_data_dir`) the first time (a no-op once that
    dir holds this config and version) and reads it back with ``tfds.data_source``; cached per process by
    (builder, config name, version, dir), so config names must encode every setting (ours do, and a
    manual-download builder's name must encode its files' content). ``manual_dir``: where a manual-download
    builder (``MathJsonl``, ``Gsm8kJsonl``) finds its files.
    """
    root = str(Path(data_dir or default_data_dir()).expanduser().absolute())
    key = (builder_cls.__name__, config.name, str(builder_cls.VERSION), root)
    if key not in _PREPARED:
        make = lambda: builder_cls(data_dir=root, file_format="array_record", config=config)
        builder = make()
        download = None
        if manual_dir is not None:
            download = tfds.download.DownloadConfig(manual_dir=str(Path(manual_dir).expanduser().absolute()))
        try:
            builder.download_and_prepare(download_config=download)
        except OSError:
            # Two processes preparing one config at once: TFDS renames a finished copy into place and the
            # second rename fails; read the winner's copy.
            builder = make()
            if not builder.is_prepared():
                raise
        decode = lambda v: v.decode() if isinstance(v, bytes) else v
        _PREPARED[key] = {
            split: tuple(
                {k: decode(v) for k, v in r.items()} for r in src.__getitems__(list(range(len(src))))
            )
            for split, src in builder.as_data_source().items()
        }
    return _PREPARED[key]
