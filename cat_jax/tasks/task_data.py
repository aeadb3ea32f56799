"""The arrays an experiment reads from a verifiable task, built through the data path.

A task's problems are prepared once by its TFDS builder into a data dir (``array_record``), read back with
``tfds.data_source``, encoded with the pipeline's :class:`~cat_jax.data.PromptTargetEncoder` and laid out
as two :class:`Split` records (``train``, ``eval``) of a :class:`TaskData`. Training batches come from
:meth:`TaskData.batches`, the one batcher (:func:`cat_jax.data.batches`) over a split's rows::

    td = load(ArithmeticTask("multiply", num_train=8, num_eval=2), data_dir="/tmp/tfds")
    td.train.tokens.shape, td.eval.prompts.shape, td.max_new_tokens  # (8, 12), (2, 7), 5
    rows = td.batches(4, seed=0)  # rows(step): {"tokens", "labels", "prompts", ..., "index"} [4, ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cat_jax import data, evaluation, rl
from cat_jax.tasks import arithmetic, tokenizers

SPLITS = ("train", "eval")
OPTIONAL_SPLITS = ("rl",)  # RL prompts disjoint from both (ArithmeticTask.num_rl > 0)
# The builder's split of each TaskData split (TFDS names held-out problems "test").
_BUILDER_SPLIT = {"train": "train", "eval": "test", "rl": "rl"}


@dataclasses.dataclass(frozen=True)
class Split(Sequence):
    """One split's problems, tokenised; row ``i`` is problem ``i`` of the builder's split.

    ``tokens``/``labels`` ``[N, L]``: the SFT sequence (labels -100 on prompt and padding, SPEC §3.1);
    ``prompts`` ``[N, P]`` right-padded with ``lengths`` ``[N]``; ``targets`` ``[N, T]`` (answer + EOS,
    padded) with ``target_lengths`` ``[N]``; ``answer_index`` ``[N]``: each problem's row in
    :attr:`TaskData.answer_tokens` (None where the task does not enumerate its answers). ``split[i]`` is
    row ``i`` as a dict, so a split is a random-access source for :func:`cat_jax.data.batches`.
    """

    tokens: np.ndarray
    labels: np.ndarray
    prompts: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    target_lengths: np.ndarray
    answer_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {name: v[i] for name in _SPLIT_FIELDS if (v := getattr(self, name)) is not None}


_SPLIT_FIELDS = tuple(f.name for f in dataclasses.fields(Split))


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A tokenised task: vocabulary, stop tokens, the ``train`` and ``eval`` splits, its answer set.

    ``max_new_tokens`` is the longest target (answer + EOS). ``answer_tokens`` ``[C, A]``: where the
    answers form a small finite set (modular_chain: every residue), all of them as answer + EOS, which exact
    plurality SFT enumerates; None where the set is too large to enumerate per step (multiply: 10^4).
    """

    vocab_size: int
    pad_id: int
    stop_tokens: tuple[int, ...]
    max_new_tokens: int
    train: Split
    eval: Split
    answer_tokens: np.ndarray | None = None
    rl: Split | None = None  # prompts for RL steps only, disjoint from train and eval (None: none)

    def split(self, name: str) -> Split:
        """The split called ``name`` (``train``, ``eval``, or ``rl`` where the task has one)."""
        if name not in SPLITS + OPTIONAL_SPLITS or getattr(self, name) is None:
            valid = [s for s in SPLITS + OPTIONAL_SPLITS if getattr(self, s, None) is not None]
            raise ValueError(f"split must be one of {valid}, got {name!r}")
        return getattr(self, name)

    def batches(self, batch_size: int, *, seed: int, split: str = "train") -> data.Batches:
        """``batches(step)``: rows of a split through the one batcher, reshuffled each epoch by ``seed``."""
        return data.batches(self.split(split), None, None, self.pad_id, batch_size, seed=seed)

    def prompt_batch(self, rows: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """RL batch of a batch of rows: prompts with their targets and the stop token (exact-match reward)."""
        return {
            "prompts": jnp.asarray(rows["prompts"]),
            "lengths": jnp.asarray(rows["lengths"]),
            "targets": jnp.asarray(rows["targets"]),
            "target_lengths": jnp.asarray(rows["target_lengths"]),
            "stop_token": jnp.full((len(rows["prompts"]),), np.int32(self.stop_tokens[0])),
        }

    def rl_score_fn(self, split: str = "train") -> rl.ScoreFn:
        """The RL step's verifier of this task: exact match of a completion with the batch's target."""
        self.split(split)
        return rl.exact_match_scores

    def candidate_batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Exact-plurality SFT batch of train problems ``idx``: every candidate answer after each prompt.

        ``candidate_tokens``/``candidate_labels`` ``[b, C, P + A]`` (labels -100 off the answer) and
        ``target [b]``, the input of ``losses.make_plurality_sft_loss_fn``; row ``target`` of a problem
        holds exactly its ``train.tokens`` sequence.
        """
        if self.answer_tokens is None or self.train.answer_index is None:
            raise ValueError(
                "this task does not enumerate its answers; objective.strategy='plurality' needs a task with "
                "a small finite answer set (task.name='modular_chain')"
            )
        prompts, lens = self.train.prompts[idx], self.train.lengths[idx]
        a = self.answer_tokens.shape[1]
        width = prompts.shape[1] + a
        pos = np.arange(width)[None, :]
        rel = pos - lens[:, None]  # [b, L] position inside the answer
        in_answer = ((rel >= 0) & (rel < a))[:, None, :]
        answers = np.moveaxis(self.answer_tokens[:, np.clip(rel, 0, a - 1)], 0, 1)  # [b, C, L]
        padded = np.full((len(idx), width), self.pad_id, np.int32)
        padded[:, : prompts.shape[1]] = prompts
        in_prompt = (pos < lens[:, None])[:, None, :]
        tokens = np.where(in_prompt, padded[:, None, :], np.where(in_answer, answers, self.pad_id))
        return {
            "candidate_tokens": tokens.astype(np.int32),
            "candidate_labels": np.where(in_answer, answers, tokenizers.IGNORE).astype(np.int32),
            "target": self.train.answer_index[idx].astype(np.int32),
        }

    def score(self, tokens: np.ndarray, mask: np.ndarray, *, split: str = "eval") -> evaluation.Scored:
        """Exact match of ``[B, N, L]`` completions (up to and including EOS) with the targets, as in RL."""
        s = self.split(split)
        scores = rl.exact_match_scores(
            jnp.asarray(tokens),
            jnp.asarray(mask, bool),
            {
                "targets": jnp.asarray(s.targets),
                "target_lengths": jnp.asarray(s.target_lengths),
                "stop_token": jnp.full((tokens.shape[0],), self.stop_tokens[0], jnp.int32),
            },
        )
        return evaluation.Scored(
            correct=np.asarray(scores.rewards) > 0,
            answer_ids=np.asarray(scores.answer_ids),
            valid=np.asarray(scores.valid),
        )


def from_records(
    records: Mapping[str, Sequence[tuple[str, str]]],
    encoder: data.PromptTargetEncoder,
    *,
    answer_set: Sequence[str] | None = None,
) -> TaskData:
    """``TaskData`` of ``{"train": [(prompt, answer), ...], "eval": [...]}`` records, answer-only targets.

    Prompt ``BOS + prompt``, target ``answer + EOS``; prompts, targets and the SFT sequences are right-padded
    to the longest over both splits (the SFT width is longest prompt + longest target), so every split has
    one shape per field. ``answer_set`` enumerates the answers (``answer_index`` = place in it).
    """
    tok = encoder.tokenizer
    names = SPLITS + tuple(s for s in OPTIONAL_SPLITS if s in records)
    enc = {s: [encoder(p, a) for p, a in records[s]] for s in names}
    p_max = max(len(p) for s in names for p, _ in enc[s])
    t_max = max(len(t) for s in names for _, t in enc[s])
    where = None if answer_set is None else {a: i for i, a in enumerate(answer_set)}

    def pad(rows: list[list[int]], width: int) -> np.ndarray:
        out = np.full((len(rows), width), tok.pad_id, np.int32)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def split(name: str) -> Split:
        seqs = [tokenizers.layout(p, t, p_max + t_max, tok.pad_id) for p, t in enc[name]]
        return Split(
            tokens=np.stack([s["tokens"] for s in seqs]),
            labels=np.stack([s["labels"] for s in seqs]),
            prompts=pad([p for p, _ in enc[name]], p_max),
            lengths=np.array([len(p) for p, _ in enc[name]], np.int32),
            targets=pad([t for _, t in enc[name]], t_max),
            target_lengths=np.array([len(t) for _, t in enc[name]], np.int32),
            answer_index=None if where is None else np.array([where[a] for _, a in records[name]], np.int32),
        )

    answers = None if answer_set is None else np.array([encoder("", a)[1] for a in answer_set], np.int32)
    return TaskData(
        vocab_size=tok.vocab_size,
        pad_id=tok.pad_id,
        stop_tokens=(tok.eos_id,),
        max_new_tokens=t_max,
        train=split("train"),
        eval=split("eval"),
        answer_tokens=answers,
        rl=split("rl") if "rl" in records else None,
    )


# ----------------------------------------------------------------------------- synthetic arithmetic


# task name -> builder family
TASKS = {"multiply": "multiplication", "add": "addition", "modular_chain": "modular_chain"}


@dataclasses.dataclass(frozen=True)
class ArithmeticTask:
    """A synthetic arithmetic task (``cat_jax.tasks.arithmetic``) as the experiments configure it.

    ``multiply``: ``a x b =`` -> the product as exactly 2·digits zero-padded digits. ``add``: ``a + b =``
    -> the sum as digits + 1 zero-padded digits. ``modular_chain``:
    ``start op v ... m<modulus> =`` -> the final value, zero-padded to the modulus width (``steps``,
    ``modulus``, ``max_operand``; ``seed`` also draws the chains). ``seed`` picks the train / eval problems;
    ``num_rl > 0`` adds an ``rl`` split of that many further problems (RL prompts never trained on or
    evaluated: a run of ``S`` steps x ``B`` prompts with ``num_rl = S * B`` sees a fresh batch every step).
    """

    name: str
    digits: int = 2
    num_train: int = 4000
    num_eval: int = 500
    seed: int = 0
    steps: int = 3
    modulus: int = 97
    max_operand: int = 99
    num_rl: int = 0

    def __post_init__(self):
        if self.name not in TASKS:
            raise ValueError(f"name must be one of {sorted(TASKS)}, got {self.name!r}")
        if self.num_train < 1 or self.num_eval < 1:
            raise ValueError(f"num_train and num_eval must be >= 1, got {self.num_train}, {self.num_eval}")
        pool = 81 * 100 ** (self.digits - 1)  # (9 * 10^(d-1))^2 pairs of d-digit numbers
        if self.num_rl < 0:
            raise ValueError(f"num_rl must be >= 0, got {self.num_rl}")
        need = self.num_train + self.num_eval + self.num_rl
        if self.name in ("multiply", "add") and need > pool:
            raise ValueError(
                f"num_train + num_eval + num_rl = {need} exceeds the {pool} distinct {self.digits}-digit "
                "problems"
            )

    def builder_config(self) -> data.ArithmeticConfig:
        """The ``CatArithmetic`` config of this task, named after every field (one prepared dir per task)."""
        knobs = (
            f"d{self.digits}"
            if self.name in ("multiply", "add")
            else f"s{self.steps}m{self.modulus}o{self.max_operand}"
        )
        rl = f"_rl{self.num_rl}" if self.num_rl else ""  # names without an rl split stay as they were
        return data.ArithmeticConfig(
            name=f"{self.name}_{knobs}_n{self.num_train}_{self.num_eval}{rl}_seed{self.seed}",
            family=TASKS[self.name],
            digits=self.digits,
            steps=self.steps,
            modulus=self.modulus,
            max_operand=self.max_operand,
            num_train=self.num_train,
            num_test=self.num_eval,
            num_rl=self.num_rl,
            seed=self.seed,
        )

    def answer_set(self) -> list[str] | None:
        """Every answer of a modular chain (the residues, zero-padded); None for multiply."""
        if self.name != "modular_chain":
            return None
        width = len(str(self.modulus - 1))
        return [f"{v:0{width}d}" for v in range(self.modulus)]


default_data_dir = data.default_data_dir  # where prepared data goes unless a config names a dir


def load(task: ArithmeticTask, data_dir: str | Path | None = None) -> TaskData:
    """Prepare ``task`` with ``CatArithmetic`` in ``data_dir`` (once; default :func:`default_data_dir`),
    read both splits back with ``tfds.data_source`` and encode them (:func:`from_records`)."""
    family = TASKS[task.name]
    encoder = data.PromptTargetEncoder(tokenizers.CharTokenizer(arithmetic.ALPHABETS[family]))
    rows = data.prepared_records(data.CatArithmetic, task.builder_config(), data_dir)
    names = SPLITS + (("rl",) if task.num_rl else ())
    records = {s: tuple((r["prompt"], r["answer"]) for r in rows[_BUILDER_SPLIT[s]]) for s in names}
    return from_records(records, encoder, answer_set=task.answer_set())
