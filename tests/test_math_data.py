"""cat_jax.tasks.math_data: MATH / GSM8K through the builders (SPEC §3.1 selection and layout) and the
SPEC §3.5 scorer, with a character-level encoder standing in for the chat encoder (same protocol)."""

import dataclasses
import json
import shutil
import string
from pathlib import Path

import jax
import numpy as np
import pytest
from tensorflow_datasets.core.download import DownloadConfig

from cat_jax import data
from cat_jax.tasks import math_data
from cat_jax.tasks.tokenizers import IGNORE, CharTokenizer

FIXTURES = Path(__file__).parent / "data"


class CharEncoder:
    """The encoder protocol on characters: prompt ``BOS Problem:\\n{problem}\\n``, target ``target EOS``."""

    def __init__(self):
        records = [json.loads(line) for f in FIXTURES.glob("*/*.jsonl") for line in f.open()]
        extra = {c for r in records for v in r.values() for c in v}
        self.tokenizer = CharTokenizer("".join(sorted(set(string.printable) | extra)))
        self.pad_id, self.stop_tokens = self.tokenizer.pad_id, (self.tokenizer.eos_id,)
        self.vocab_size = self.tokenizer.vocab_size

    def prompt(self, problem: str) -> list[int]:
        return self.tokenizer.encode(f"Problem:\n{problem}\n", bos=True)

    def __call__(self, problem: str, target: str) -> tuple[list[int], list[int]]:
        return self.prompt(problem), self.tokenizer.encode(target, eos=True)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])


ENC = CharEncoder()
EOS = ENC.tokenizer.eos_id


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A MATH folder with 12 train problems over three levels (and the fixture test file)."""
    d = tmp_path_factory.mktemp("math12")
    rows = [
        {"problem": f"What is {i} + {i}?", "solution": f"{i} + {i} = \\boxed{{{2 * i}}}.",
         "answer": str(2 * i), "level": f"Level {1 + i % 3}"}
        for i in range(12)
    ]  # fmt: skip
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(FIXTURES / "math" / "test.jsonl", d)
    return d, rows


@pytest.fixture(scope="module")
def math_td(data_dir):
    task = math_data.MathTask("math", str(FIXTURES / "math"), max_new_tokens=40)
    return math_data.load(task, ENC, data_dir=data_dir)


def _completions(rows: list[list[str]], width: int = 32):
    """``[B, N, width]`` tokens and mask of texts; a text ending in ``|`` is cut there by EOS."""
    b, n = len(rows), len(rows[0])
    tokens = np.zeros((b, n, width), np.int32)
    mask = np.zeros((b, n, width), bool)
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            head, _, tail = text.partition("|")
            ids = ENC.tokenizer.encode(head) + [EOS] * ("|" in text) + ENC.tokenizer.encode(tail)
            tokens[i, j, : len(ids)] = ids
            mask[i, j, : len(ids)] = True
    return tokens, mask


def test_task_validation():
    with pytest.raises(ValueError, match=r"family must be one of \['gsm8k', 'math'\], got 'mmlu'"):
        math_data.MathTask("mmlu", "x")
    with pytest.raises(ValueError, match="target must be one of"):
        math_data.MathTask("math", "x", target="proof")
    with pytest.raises(ValueError, match="train_levels must be None for family='gsm8k'"):
        math_data.MathTask("gsm8k", "x", train_levels=("Level 1",))
    with pytest.raises(ValueError, match=r"eval_levels must be None .* or a non-empty sequence"):
        math_data.MathTask("math", "x", eval_levels="Level 1")
    with pytest.raises(ValueError, match="train_count must be an integer in >= 1, got 0"):
        math_data.MathTask("math", "x", train_count=0)
    with pytest.raises(ValueError, match="max_prompt_tokens must be an integer in \\[1, 1023\\]"):
        math_data.MathTask("math", "x", max_prompt_tokens=1024)
    with pytest.raises(ValueError, match="manual_dir must name the folder"):
        math_data.MathTask("math", "")
    assert math_data.MathTask("math", "x", train_levels=["Level 1"]).train_levels == ("Level 1",)
    with pytest.raises(FileNotFoundError, match=r"missing .*train\.jsonl"):
        math_data.MathTask("math", "/no/such/dir").builder_config()


def test_math_layout_answer_targets(math_td):
    td = math_td
    assert (len(td.train), len(td.eval)) == (3, 2)
    assert (td.vocab_size, td.pad_id, td.stop_tokens, td.max_new_tokens) == (ENC.vocab_size, 0, (EOS,), 40)
    train = [json.loads(line) for line in (FIXTURES / "math" / "train.jsonl").open()]
    by_problem = {r["problem"]: r for r in train}
    s = td.train
    for i in range(len(s)):
        n, p = int(s.lengths[i]), int(s.target_lengths[i])
        problem = ENC.decode(s.prompts[i, :n])[len("Problem:\n") : -1]
        rec = by_problem[problem]
        assert s.prompts[i, :n].tolist() == ENC.prompt(problem)
        assert ENC.decode(s.targets[i, :p]) == rec["answer"] and s.targets[i, p - 1] == EOS
        assert td.references["train"][i] == rec["answer"]
        assert td.ids["train"][i].startswith("train:") and len(td.ids["train"][i].split(":")[2]) == 12
        # SFT sequence: prompt then target, labels only on the target (SPEC §3.1), padding unsupervised.
        assert s.tokens[i, : n + p].tolist() == [*ENC.prompt(problem), *s.targets[i, :p]]
        assert (s.labels[i, :n] == IGNORE).all() and (s.labels[i, n + p :] == IGNORE).all()
        assert (s.labels[i, n : n + p] == s.tokens[i, n : n + p]).all()
    # Padded to the longest row, not to max_len.
    assert s.tokens.shape[1] == int((s.lengths + s.target_lengths).max()) < td.task.max_len
    assert s.prompts.shape[1] == int(s.lengths.max())
    assert td.length_report["train"]["fits"] == 3 and td.length_report["train"]["target_truncated"] == 0


def test_solution_targets_and_truncation(data_dir):
    task = math_data.MathTask("math", str(FIXTURES / "math"), target="solution")
    td = math_data.load(task, ENC, data_dir=data_dir)
    texts = {ENC.decode(t[:n]) for t, n in zip(td.train.targets, td.train.target_lengths, strict=True)}
    assert texts == {json.loads(line)["solution"] for line in (FIXTURES / "math" / "train.jsonl").open()}
    longest_prompt = int(td.train.lengths.max())
    window = max(longest_prompt, int(td.eval.lengths.max())) + 5
    cut = math_data.MathTask("math", str(FIXTURES / "math"), target="solution", max_len=window,
                             max_prompt_tokens=window - 1)  # fmt: skip
    short = math_data.load(cut, ENC, data_dir=data_dir)
    assert short.train.tokens.shape[1] == cut.max_len
    assert short.length_report["train"] == {
        "fits": 0, "target_truncated": 3, "prompt_fills_window": 0,
        "longest_prompt": longest_prompt, "longest_sequence": int(td.train.tokens.shape[1]),
    }  # fmt: skip
    # truncate_target: the end of the target is cut, no EOS appended; targets stay whole.
    assert not (short.train.labels == EOS).any()
    assert (short.train.labels != IGNORE).sum(axis=1).tolist() == (cut.max_len - short.train.lengths).tolist()
    assert (short.train.targets == td.train.targets).all()


def test_prompt_limits_name_the_problem(data_dir, tmp_path):
    n = len(ENC.prompt("What is $3^4 - 2^5$?"))  # the shortest train prompt
    with pytest.raises(ValueError, match=r"problem train:\d+:[0-9a-f]{12} .* fills the max_len=\d+-token"):
        math_data.load(
            math_data.MathTask("math", str(FIXTURES / "math"), max_len=n, max_prompt_tokens=n - 1), ENC,
            data_dir=data_dir,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"problem test:\d+:\w+ .* more than max_prompt_tokens=20"):
        math_data.load(math_data.MathTask("math", str(FIXTURES / "math"), max_prompt_tokens=20), ENC,
                       data_dir=data_dir)  # fmt: skip
    # Long problems for training, short ones held out: only limit_train_prompts checks the train prompts.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(FIXTURES / "math" / "test.jsonl", swapped / "train.jsonl")
    shutil.copy(FIXTURES / "math" / "train.jsonl", swapped / "test.jsonl")
    short = max(len(ENC.prompt(json.loads(r)["problem"])) for r in (swapped / "test.jsonl").open())
    ok = math_data.MathTask("math", str(swapped), max_prompt_tokens=short)
    assert int(math_data.load(ok, ENC, data_dir=data_dir).train.lengths.max()) > short
    with pytest.raises(ValueError, match=r"problem train:.* more than max_prompt_tokens"):
        math_data.load(dataclasses.replace(ok, limit_train_prompts=True), ENC, data_dir=data_dir)


def test_selection_levels_counts_offsets(many, data_dir, tmp_path):
    folder, rows = many
    task = math_data.MathTask(
        "math", str(folder), train_levels=("Level 1", "Level 2"), train_count=3, train_offset=2, eval_count=1,
        eval_seed=7,
    )  # fmt: skip
    td = math_data.load(task, ENC, data_dir=data_dir)
    want = data.select_problems(
        [r["problem"] for r in rows], 3, levels=[r["level"] for r in rows],
        keep_levels={"Level 1", "Level 2"}, offset=2,
    )  # fmt: skip
    assert [int(i.split(":")[1]) for i in td.ids["train"]] == want
    assert list(td.references["train"]) == [rows[i]["answer"] for i in want]
    assert len(td.eval) == 1
    # The same problems as MathJsonl's own selection config (the routine the builder runs).
    cfg = data.MathConfig(
        name="check", levels=("Level 1", "Level 2"), counts={"train": 3}, offsets={"train": 2}
    )
    b = data.MathJsonl(data_dir=str(tmp_path), file_format="array_record", config=cfg)
    b.download_and_prepare(download_config=DownloadConfig(manual_dir=str(folder)))
    src = b.as_data_source()["train"]
    assert sorted(td.ids["train"]) == sorted(src[i]["id"].decode() for i in range(len(src)))
    # An offset continues the same shuffled list (warm-up = the head, RL prompts = the next slice).
    head = math_data.load(dataclasses.replace(task, train_offset=0, train_count=2), ENC, data_dir=data_dir)
    both = [int(i.split(":")[1]) for i in head.ids["train"] + td.ids["train"]]
    assert both == data.select_problems(
        [r["problem"] for r in rows], 5, levels=[r["level"] for r in rows], keep_levels={"Level 1", "Level 2"}
    )
    with pytest.raises(ValueError, match=r"math train selection from .*train\.jsonl: .* only 8 are eligible "
                                         r"with level in \['Level 1', 'Level 2'\]"):  # fmt: skip
        math_data.load(dataclasses.replace(task, train_count=7), ENC, data_dir=data_dir)
    with pytest.raises(ValueError, match=r"math train selection .* only 12 are eligible"):
        math_data.load(math_data.MathTask("math", str(folder), train_count=13), ENC, data_dir=data_dir)


def test_score_math(math_td):
    td = math_td
    refs = td.references["eval"]
    texts = [
        [
            rf"so \boxed{{{refs[0]}}}.|\boxed{{99}}",
            "the answer is 12.",
            "no idea",
            rf"$\boxed{{ {refs[0]} }}$",
        ],
        [rf"\boxed{{{refs[1]}}}|", rf"\boxed{{{refs[1]}", "it is 3 then 4", "it is 3 then 4"],
    ]
    tokens, mask = _completions(texts)
    scored = td.score(tokens, mask)
    assert scored.correct.tolist() == [[True, False, False, True], [True, False, False, False]]
    assert scored.valid.tolist() == [[True, True, False, True], [True, False, True, True]]
    # Identical vote keys share an id (the spaces inside the box do not count); no answer: -1.
    assert scored.answer_ids.tolist() == [[0, 1, -1, 0], [0, -1, 1, 1]]
    sub = td.score(tokens[1:], mask[1:], index=[1])
    assert sub.correct.tolist() == scored.correct[1:].tolist()
    with pytest.raises(ValueError, match="tokens has 1 problems but the eval split has 2; pass index="):
        td.score(tokens[1:], mask[1:])
    with pytest.raises(ValueError, match=r"index must hold rows of the eval split in \[0, 2\)"):
        td.score(tokens[1:], mask[1:], index=[2])


def test_rl_score_fn_in_jit_equals_score(math_td):
    td = math_td
    rows = td.batches(2, seed=1, split="eval")(0)
    batch = td.prompt_batch(rows)
    assert set(batch) == {"prompts", "lengths", "targets", "target_lengths", "stop_token", "index"}
    refs = [td.references["eval"][i] for i in rows["index"]]
    texts = [[rf"\boxed{{{r}}}|", "7", rf"\boxed{{{r}}}|"] for r in refs]
    tokens, mask = _completions(texts)
    out = jax.jit(td.rl_score_fn("eval"))(tokens, mask, batch)
    want = td.score(tokens, mask, index=rows["index"])
    assert out.rewards.dtype == np.float32 and out.answer_ids.dtype == np.int32 and out.valid.dtype == bool
    np.testing.assert_array_equal(out.rewards > 0, want.correct)
    np.testing.assert_array_equal(out.answer_ids, want.answer_ids)
    np.testing.assert_array_equal(out.valid, want.valid)
    # Sharded over devices along the batch (as the experiments place RL batches): the same scores.
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
    rows_on = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    sharded = jax.jit(td.rl_score_fn("eval"))(*jax.device_put((tokens, mask, batch), rows_on))
    np.testing.assert_array_equal(sharded.answer_ids, want.answer_ids)
    np.testing.assert_array_equal(sharded.rewards > 0, want.correct)
    with pytest.raises(ValueError, match=r"reads batch\['index'\]"):
        td.rl_score_fn("eval")(tokens, mask, {k: v for k, v in batch.items() if k != "index"})


def test_gsm8k(data_dir):
    gsm = str(FIXTURES / "gsm8k")
    td = math_data.load(
        math_data.MathTask("gsm8k", gsm, train_count=2, train_offset=1), ENC, data_dir=data_dir
    )
    train = [json.loads(line) for line in (FIXTURES / "gsm8k" / "train.jsonl").open()]
    want = data.select_problems([r["question"] for r in train], 2, offset=1)
    assert [int(i.split(":")[1]) for i in td.ids["train"]] == want
    answers = [ENC.decode(t[:n]) for t, n in zip(td.train.targets, td.train.target_lengths, strict=True)]
    assert answers == [train[i]["answer"].rsplit("####", 1)[1].strip() for i in want]
    sol = math_data.load(math_data.MathTask("gsm8k", gsm, target="solution"), ENC, data_dir=data_dir)
    assert {ENC.decode(t[:n]) for t, n in zip(sol.eval.targets, sol.eval.target_lengths, strict=True)} == {
        json.loads(line)["answer"] for line in (FIXTURES / "gsm8k" / "test.jsonl").open()
    }
    refs = td.references["eval"]
    texts = [
        [f"14 + 14 = {refs[0]}.\n#### {refs[0]}", f"#### {refs[0]}0", rf"\boxed{{{refs[0]}}}", "none"],
        [f"{refs[1]}", f"it is 2,0{refs[1]}", f"#### {refs[1]}", "#### "],
    ]
    scored = td.score(*_completions(texts, width=40))
    assert scored.correct.tolist() == [[True, False, True, False], [True, False, True, False]]
    assert scored.valid.tolist() == [[True, True, True, False], [True, True, True, False]]
    assert scored.answer_ids.tolist() == [[0, 1, 0, -1], [0, 1, 0, -1]]


@pytest.mark.slow
def test_rl_step_with_the_math_scorer(math_td):
    """The scorer inside make_rl_step (Majority weights read its answer ids), on a tiny random policy."""
    import functools

    from cat_jax import advantages as adv
    from cat_jax import losses, rl, sampling, train_lib
    from cat_jax import weights as wts
    from cat_jax.models import llama
    from cat_jax.testing import tiny_model

    td = math_td
    model = tiny_model(vocab_size=td.vocab_size, hidden_size=32, intermediate_size=64, num_layers=1,
                       num_heads=2, num_kv_heads=1)  # fmt: skip
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-2))
    step = rl.make_rl_step(
        model.apply,
        tx,
        functools.partial(llama.init_cache, model.config),
        rollout=sampling.SampleConfig(num_samples=4, max_new_tokens=6, temperature=1.0),
        weights=wts.WeightConfig(
            strategy="majority", n=4, probability="empirical", normalize=True, clip=10.0
        ),
        advantages=adv.AdvantageConfig(all_wrong_penalty=0.5),
        loss=losses.PolicyLossConfig(),
        score_fn=td.rl_score_fn(),
        stop_tokens=td.stop_tokens,
        pad_id=td.pad_id,
    )
    state = train_lib.TrainState.create(model.params, tx, seed=0)
    state, metrics = jax.jit(step)(state, td.prompt_batch(td.batches(2, seed=0)(0)))
    assert int(state.step) == 1 and bool(metrics["train/finite"])
    assert 0.0 <= float(metrics["rollout/valid"]) <= 1.0 and float(metrics["reward/mean"]) >= 0.0
