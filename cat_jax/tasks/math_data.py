r"""MATH and GSM8K as a ``TaskData``: SPEC §3.1 selection and layout, §3.5 scoring.

The jsonl files in ``manual_dir`` are prepared once by their TFDS builder (``MathJsonl`` / ``Gsm8kJsonl``,
every valid record, one config per file content) into a data dir and read back with ``tfds.data_source``;
each split's problems are then chosen by SPEC §3.1 (:func:`cat_jax.data.select_problems` over the builder's
records in file order: the routine ``MathJsonl``'s selection configs run), encoded by a chat encoder and laid
out as the SFT sequences (labels -100 on the prompt, ``truncate_target``) and the prompts of sampling::

    task = MathTask("math", "/data/math", target="answer", train_count=5000, max_prompt_tokens=512)
    td = load(task, encoder)  # encoder: cat_jax.tasks.chat.ChatEncoder (the Encoder protocol below)
    td.train.tokens.shape, td.length_report["train"]  # (5000, <=1024), {"fits": ..., ...}
    scored = td.score(tokens, mask)  # [B, N, L] completions of the eval prompts -> Scored [B, N]
    rl.make_rl_step(..., score_fn=td.rl_score_fn())  # the same scoring, inside the jitted RL step

Scoring (SPEC §3.5, ``math_basic_v1``): a completion is its tokens up to and including the first stop token,
decoded with special tokens skipped; the answer is :func:`~cat_jax.tasks.math_answers.extract_answer` in mode
``boxed_or_last_number`` (GSM8K: the text after a ``####`` when the completion writes one, GSM8K's own
solution format, else the same extraction with thousands separators such as ``1,234`` removed); ``correct`` =
:func:`~cat_jax.tasks.math_answers.is_correct` against the reference; ``valid`` = the answer has a vote key;
``answer_ids`` cluster identical vote keys of a problem (first-occurrence order, invalid ``-1``:
:func:`~cat_jax.tasks.math_answers.cluster_answers`), which is what maj@k and the Majority weights read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from jax.typing import ArrayLike
from jaxtyping import Bool, Int

from cat_jax import data, evaluation, rl
from cat_jax import numerics as nx
from cat_jax.tasks import math_answers, tokenizers
from cat_jax.tasks.task_data import SPLITS, Split, TaskData

FAMILIES = {"math": data.MathJsonl, "gsm8k": data.Gsm8kJsonl}
TARGETS = ("answer", "solution")
# The builder's split of each TaskData split (TFDS names held-out problems "test"), and its file.
_BUILDER_SPLIT = {"train": "train", "eval": "test"}
_FILES = {"train": "train.jsonl", "eval": "test.jsonl"}
# GSM8K writes thousands separators ("1,234"); the last-number fallback would read "234".
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@runtime_checkable
class Encoder(Protocol):
    """What :func:`load` needs of an encoder (``cat_jax.tasks.chat.ChatEncoder`` is one).

    ``encoder(problem, target) -> (prompt_ids, target_ids)``: the generation prompt and the supervised rest
    (the template's end-of-turn included); ``prompt(problem)``: the generation prompt alone; ``decode(ids)``:
    text with special tokens skipped; ``stop_tokens``: the ids that end a completion.
    """

    pad_id: int
    stop_tokens: tuple[int, ...]
    vocab_size: int

    def __call__(self, problem: str, target: str) -> tuple[list[int], list[int]]: ...

    def prompt(self, problem: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def _levels(name: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value) or not len(value):
        raise ValueError(
            f"{name} must be None (every level) or a non-empty sequence of level strings such as "
            f"('Level 1', 'Level 2'), got {value!r}"
        )
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class MathTask:
    """A MATH or GSM8K run's data settings (SPEC §3.1, §3.5), validated on construction.

    ``family``: ``"math"`` (fields problem, solution, answer, level) or ``"gsm8k"`` (question, answer ending
    in ``#### N``); ``manual_dir`` holds ``train.jsonl`` and ``test.jsonl``. ``target``: ``"answer"`` (the
    final answer: Pass@N SFT) or ``"solution"`` (the worked solution; GSM8K: the whole answer text with its
    ``#### N`` line: Majority SFT and the RL warm-ups). Selection (SPEC §3.1, per split): keep ``*_levels``
    (None: all; GSM8K has none), shuffle with ``random.Random(*_seed)``, take ``offset + count`` and drop the
    first ``offset`` (None count: every eligible problem); more than are eligible is an error. ``max_len``:
    the SFT window (``truncate_target``; a prompt that fills it is an error). ``max_prompt_tokens``: the
    longest prompt sampling may start from (SPEC: 512 SFT evaluation, 256 RL); a longer eval prompt is an
    error naming the problem id, and so is a longer train prompt with ``limit_train_prompts`` (RL samples the
    train prompts). ``max_new_tokens``: the sampling budget (SPEC: 512 SFT eval, 300 Pass@N RL, 512 Majority).
    """

    family: str
    manual_dir: str | Path
    target: str = "answer"
    train_levels: Sequence[str] | None = None
    train_count: int | None = None
    train_offset: int = 0
    train_seed: int = 42
    eval_levels: Sequence[str] | None = None
    eval_count: int | None = None
    eval_seed: int = 42
    max_len: int = 1024
    max_prompt_tokens: int = 512
    limit_train_prompts: bool = False
    max_new_tokens: int = 512

    def __post_init__(self):
        nx.check_choice("family", self.family, FAMILIES)
        nx.check_choice("target", self.target, TARGETS)
        if not isinstance(self.manual_dir, str | Path) or not str(self.manual_dir):
            raise ValueError(
                f"manual_dir must name the folder holding train.jsonl and test.jsonl, got {self.manual_dir!r}"
            )
        object.__setattr__(self, "manual_dir", str(self.manual_dir))
        for split in SPLITS:
            levels = _levels(f"{split}_levels", getattr(self, f"{split}_levels"))
            if levels is not None and self.family == "gsm8k":
                raise ValueError(f"{split}_levels must be None for family='gsm8k' (GSM8K has no levels)")
            object.__setattr__(self, f"{split}_levels", levels)
            if (count := getattr(self, f"{split}_count")) is not None:
                nx.check_int(f"{split}_count", count, minimum=1)
            nx.check_int(f"{split}_seed", getattr(self, f"{split}_seed"), minimum=0)
        nx.check_int("train_offset", self.train_offset, minimum=0)
        nx.check_int("max_len", self.max_len, minimum=2)
        nx.check_int("max_prompt_tokens", self.max_prompt_tokens, minimum=1, maximum=self.max_len - 1)
        nx.check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        if not isinstance(self.limit_train_prompts, bool):
            raise ValueError(f"limit_train_prompts must be a bool, got {self.limit_train_prompts!r}")

    def files(self) -> dict[str, Path]:
        """``{"train": .../train.jsonl, "eval": .../test.jsonl}``; a missing file is an error naming it."""
        root = Path(self.manual_dir).expanduser()
        out = {s: root / f for s, f in _FILES.items()}
        missing = [str(p) for p in out.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"manual_dir={self.manual_dir!r}: missing {', '.join(missing)} (the {self.family} files, one "
                f"JSON object per line)"
            )
        return out

    def builder_config(self) -> tfds.core.BuilderConfig:
        """The builder config of every valid record of the files, named after their content (SHA-256).

        The prepared records depend on nothing else (selection runs on the read-back records), so each file
        content is prepared once per data dir, and an edited file gets a fresh preparation.
        """
        digest = hashlib.sha256()
        for path in self.files().values():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        name = f"files_{digest.hexdigest()[:16]}"
        if self.family == "math":
            return data.MathConfig(name=name, description=f"Every valid record of {self.manual_dir}.")
        return tfds.core.BuilderConfig(name=name, description=f"Every valid record of {self.manual_dir}.")

    def selection(self, split: str) -> dict[str, Any]:
        """``split``'s SPEC §3.1 selection: ``levels``, ``count``, ``offset``, ``seed``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        return {
            "levels": getattr(self, f"{split}_levels"),
            "count": getattr(self, f"{split}_count"),
            "offset": self.train_offset if split == "train" else 0,
            "seed": getattr(self, f"{split}_seed"),
        }


# ----------------------------------------------------------------------------- preparation


def _prepared(task: MathTask, data_dir: str | Path | None) -> dict[str, tuple[dict[str, Any], ...]]:
    """Every record of both builder splits, text decoded, sorted by row of the file (the SPEC id's index:
    these builders write records in hash order)."""
    rows = data.prepared_records(
        FAMILIES[task.family], task.builder_config(), data_dir, manual_dir=task.manual_dir
    )
    row = lambda r: int(r["id"].split(":")[1])  # split:row:hash
    return {split: tuple(sorted(records, key=row)) for split, records in rows.items()}


def select(task: MathTask, records: Sequence[Mapping[str, Any]], split: str) -> list[int]:
    """Indices into ``records`` (one split, file order) of ``split``'s SPEC §3.1 selection, in its order."""
    sel = task.selection(split)
    try:
        return data.select_problems(
            [r["prompt"] for r in records],
            sel["count"],
            levels=None if sel["levels"] is None else [r.get("level", "") for r in records],
            keep_levels=None if sel["levels"] is None else set(sel["levels"]),
            offset=sel["offset"],
            seed=sel["seed"],
        )
    except ValueError as e:
        path = Path(task.manual_dir) / _FILES[split]
        raise ValueError(f"{task.family} {split} selection from {path}: {e}") from None


# ----------------------------------------------------------------------------- the task data


@dataclasses.dataclass(frozen=True, kw_only=True)
class MathTaskData(TaskData):
    """A :class:`TaskData` of MATH / GSM8K problems with the SPEC §3.5 verifier as its scorer.

    Beyond the TaskData fields (``max_new_tokens`` from the task, ``answer_tokens`` None): ``task``;
    ``ids`` and ``references`` per split (SPEC ids ``split:row:sha256[:12]`` and reference answers; entry
    ``i`` belongs to row ``i`` of the split's arrays, which are in selection order); ``length_report`` per
    split (``fits``, ``target_truncated``, ``prompt_fills_window``, ``longest_prompt``,
    ``longest_sequence``); ``encoder`` (its ``decode`` and ``stop_tokens`` read completions).
    """

    task: MathTask
    ids: Mapping[str, tuple[str, ...]]
    references: Mapping[str, tuple[str, ...]]
    length_report: Mapping[str, dict[str, int]]
    encoder: Any = dataclasses.field(repr=False, compare=False)

    def completion_texts(
        self, tokens: Int[ArrayLike, "b n l"], mask: Bool[ArrayLike, "b n l"]
    ) -> list[list[str]]:
        """``[B][N]`` decoded completions (:func:`cat_jax.tasks.tokenizers.completion_texts`)."""
        return tokenizers.completion_texts(tokens, mask, self.encoder.decode, self.stop_tokens)

    def extract(self, completion: str) -> str | None:
        """The final answer of one completion (None: invalid), by the family's rule (module docstring)."""
        if self.task.family == "gsm8k":
            if "####" in completion:
                return math_answers.extract_gsm8k(completion)
            completion = _THOUSANDS.sub("", completion)
        return math_answers.extract_answer(completion, "boxed_or_last_number")

    def _score_arrays(
        self, tokens: np.ndarray, mask: np.ndarray, index: np.ndarray, split: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        refs = self.references[split]
        index = np.asarray(index).reshape(-1)
        if len(index) != np.shape(tokens)[0]:
            raise ValueError(f"index has {len(index)} rows but tokens has {np.shape(tokens)[0]}")
        if len(index) and (index.min() < 0 or index.max() >= len(refs)):
            raise ValueError(f"index must hold rows of the {split} split in [0, {len(refs)}), got {index}")
        correct, keys = [], []
        for i, row in zip(index, self.completion_texts(tokens, mask), strict=True):
            answers = [self.extract(c) for c in row]
            correct.append([math_answers.is_correct(a, refs[int(i)]) for a in answers])
            keys.append([None if a is None else math_answers.vote_key(a) for a in answers])
        ids, valid = math_answers.cluster_answers(keys)
        return np.asarray(correct, np.float32).reshape(ids.shape), ids, valid

    def score(
        self,
        tokens: Int[ArrayLike, "b n l"],
        mask: Bool[ArrayLike, "b n l"],
        *,
        split: str = "eval",
        index: Int[ArrayLike, " b"] | Sequence[int] | None = None,
    ) -> evaluation.Scored:
        """SPEC §3.5 verdicts of ``[B, N, L]`` completions of rows ``index`` (default: every row) of a split.

        ``correct`` ``[B, N]``: the extracted answer verifies against the reference; ``answer_ids`` /
        ``valid``: vote-key clusters, ``-1`` / False where no answer could be extracted (kept as attempts).
        """
        s = self.split(split)
        if index is None:
            if np.shape(tokens)[0] != len(s):
                raise ValueError(
                    f"tokens has {np.shape(tokens)[0]} problems but the {split} split has {len(s)}; "
                    "pass index= (their rows) to score a subset"
                )
            index = np.arange(len(s))
        rewards, ids, valid = self._score_arrays(
            np.asarray(tokens), np.asarray(mask, bool), np.asarray(index), split
        )
        return evaluation.Scored(correct=rewards > 0, answer_ids=ids, valid=valid)

    def rl_score_fn(self, split: str = "train") -> rl.ScoreFn:
        """:data:`cat_jax.rl.ScoreFn` of the RL step: :meth:`score` on the host through ``jax.pure_callback``.

        Reads ``batch["index"]`` (the prompts' rows of ``split``, as :meth:`prompt_batch` gives them) and
        returns ``RolloutScores`` ``[B, M]``: float32 rewards (1 = verified), int32 answer ids, bool valid.
        """
        self.split(split)
        return rl.host_score_fn(
            lambda tokens, mask, index: self._score_arrays(tokens, mask, index, split),
            index_key="index",
            who="the MATH scorer",
        )

    def prompt_batch(self, rows: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """RL batch of rows: :meth:`TaskData.prompt_batch` plus ``index`` (the rows, for the scorer)."""
        return {**super().prompt_batch(rows), "index": jnp.asarray(rows["index"], jnp.int32)}


def _pad(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> np.ndarray:
    out = np.full((len(rows), width), pad_id, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def load(task: MathTask, encoder: Encoder, *, data_dir: str | Path | None = None) -> MathTaskData:
    """``task``'s problems as a :class:`MathTaskData`: prepared in ``data_dir`` once (default
    :func:`cat_jax.data.default_data_dir`), selected (SPEC §3.1), encoded by ``encoder`` and laid out.

    Per split: ``tokens``/``labels`` ``[N, L]`` with ``L`` = the longest prompt + target, at most
    ``task.max_len`` (longer targets cut: ``truncate_target``, counted in ``length_report``); ``prompts``
    ``[N, P]`` (``P`` = the longest prompt) and ``targets`` ``[N, T]`` (target ids in full), right-padded
    with ``encoder.pad_id``. A prompt that fills the window, or (eval; train with
    ``task.limit_train_prompts``) exceeds ``task.max_prompt_tokens``, is an error naming the problem id.
    """
    if not isinstance(task, MathTask):
        raise ValueError(f"task must be a MathTask, got {type(task).__name__}")
    if not isinstance(encoder, Encoder):
        raise ValueError(
            "encoder must have __call__(problem, target), prompt, decode, pad_id, stop_tokens and vocab_size "
            f"(cat_jax.tasks.chat.ChatEncoder), got {type(encoder).__name__}"
        )
    stops = tuple(int(t) for t in encoder.stop_tokens)
    if not stops:
        raise ValueError("encoder.stop_tokens must name at least one token (completions end on it)")
    records = _prepared(task, data_dir)
    splits, ids, refs, reports, problems = {}, {}, {}, {}, {}
    for split in SPLITS:
        rows = records[_BUILDER_SPLIT[split]]
        chosen = [rows[i] for i in select(task, rows, split)]
        enc = []
        limit = task.max_prompt_tokens if split == "eval" or task.limit_train_prompts else None
        for r in chosen:
            p, t = encoder(r["prompt"], r[task.target])
            p, t = [int(i) for i in p], [int(i) for i in t]
            if len(p) >= task.max_len:
                raise ValueError(
                    f"problem {r['id']} ({task.manual_dir}/{_FILES[split]}): its prompt of {len(p)} tokens "
                    f"fills the max_len={task.max_len}-token window; nothing left to supervise"
                )
            if limit is not None and len(p) > limit:
                raise ValueError(
                    f"problem {r['id']} ({task.manual_dir}/{_FILES[split]}): its prompt has {len(p)} tokens, "
                    f"more than max_prompt_tokens={limit}"
                )
            if not t:
                raise ValueError(f"problem {r['id']}: the encoder gave an empty target")
            enc.append((p, t))
        full = [len(p) + len(t) for p, t in enc]
        reports[split] = {
            "fits": sum(n <= task.max_len for n in full),
            "target_truncated": sum(n > task.max_len for n in full),
            "prompt_fills_window": 0,  # an error above
            "longest_prompt": max(len(p) for p, _ in enc),
            "longest_sequence": max(full),
        }
        (logging.warning if reports[split]["target_truncated"] else logging.info)(
            "%s %s: %d problems, length rule at max_len=%d: %s",
            task.family, split, len(enc), task.max_len, reports[split],
        )  # fmt: skip
        width = min(task.max_len, max(full))
        seqs = [tokenizers.layout(p, t, width, encoder.pad_id) for p, t in enc]
        splits[split] = Split(
            tokens=np.stack([s["tokens"] for s in seqs]),
            labels=np.stack([s["labels"] for s in seqs]),
            prompts=_pad([p for p, _ in enc], reports[split]["longest_prompt"], encoder.pad_id),
            lengths=np.array([len(p) for p, _ in enc], np.int32),
            targets=_pad([t for _, t in enc], max(len(t) for _, t in enc), encoder.pad_id),
            target_lengths=np.array([len(t) for _, t in enc], np.int32),
        )
        ids[split] = tuple(r["id"] for r in chosen)
        problems[split] = [r["prompt"] for r in chosen]
        refs[split] = tuple(r["answer"] for r in chosen)
    shared = data.cross_split_duplicates(problems)
    if any(shared.values()):
        logging.warning(
            "%s: train and eval selections share %s problems (same normalised text)", task, shared
        )
    return MathTaskData(
        vocab_size=int(encoder.vocab_size),
        pad_id=int(encoder.pad_id),
        stop_tokens=stops,
        max_new_tokens=task.max_new_tokens,
        train=splits["train"],
        eval=splits["eval"],
        task=task,
        ids=ids,
        references=refs,
        length_report=reports,
        encoder=encoder,
    )


__all__ = ["FAMILIES", "TARGETS", "Encoder", "MathTask", "MathTaskData", "load", "select"]
