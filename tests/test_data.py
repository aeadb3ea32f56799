"""TFDS builders on tiny prepared datasets in tmp_path, jsonl validation, SPEC §3.1 selection (the batcher:
test_data_pipeline.py)."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import DownloadConfig

from cat_jax import data
from cat_jax.tasks import protein
from cat_jax.tasks.tokenizers import IGNORE

FIXTURES = Path(__file__).parent / "data"


def _prepare(builder_cls, tmp_path, manual, config=None):
    b = builder_cls(data_dir=str(tmp_path / "tfds"), file_format="array_record", config=config)
    b.download_and_prepare(download_config=DownloadConfig(manual_dir=str(manual)))
    return b


def _rows(split):
    return [split[i] for i in range(len(split))]


def _reread_validation(builder):
    """The report as a later reader sees it: a fresh builder restored from the prepared directory."""
    return tfds.builder_from_directory(builder.data_dir).info.metadata["validation"]


def test_arithmetic_builder_deterministic(tmp_path):
    cfg = lambda: data.ArithmeticConfig(name="tiny", num_train=40, num_test=10, seed=3)
    srcs = []
    for d in ("a", "b"):
        srcs.append(
            tfds.data_source(
                "cat_arithmetic",
                data_dir=str(tmp_path / d),
                builder_kwargs={"file_format": "array_record", "config": cfg()},
            )
        )
    for split in ("train", "test"):
        got = [sorted((r["id"], r["prompt"]) for r in _rows(s[split])) for s in srcs]
        assert got[0] == got[1]
    train = {r["prompt"] for r in _rows(srcs[0]["train"])}
    assert not train & {r["prompt"] for r in _rows(srcs[0]["test"])}
    r = srcs[0]["train"][0]
    a, b_ = r["prompt"].decode()[:-1].split("x")
    assert int(r["answer"]) == int(a) * int(b_)
    report = srcs[0]["train"].dataset_info.metadata["validation"]
    assert report["kept"] == {"train": 40, "test": 10} and report["duplicates"] == {"test/train": 0}


@pytest.mark.parametrize(("cls", "sub", "answers"), [(data.Gsm8kJsonl, "gsm8k", {"28", "55"}),
                                                     (data.MathJsonl, "math", {"11", "15"})])  # fmt: skip
def test_manual_builders(tmp_path, cls, sub, answers):
    b = _prepare(cls, tmp_path, FIXTURES / sub)
    src = b.as_data_source()
    assert len(src["train"]) == 3
    assert {r["answer"].decode() for r in _rows(src["test"])} == answers
    # SPEC §3.1 ids: split:row:sha256(problem)[:12], the row in the original file.
    lines = (FIXTURES / sub / "test.jsonl").read_text().splitlines()
    field = cls.TEXT_FIELD
    want = {
        f"test:{i}:{hashlib.sha256(json.loads(x)[field].encode()).hexdigest()[:12]}"
        for i, x in enumerate(lines)
    }
    assert {r["id"].decode() for r in _rows(src["test"])} == want
    report = _reread_validation(b)
    assert report["kept"] == {"train": 3, "test": 2}
    assert report["rejected"] == {"train": {}, "test": {}} and report["duplicates"] == {"test/train": 0}


def test_missing_manual_file_names_it(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(FIXTURES / "math" / "train.jsonl", manual)
    with pytest.raises(FileNotFoundError, match=r"test\.jsonl"):
        _prepare(data.MathJsonl, tmp_path, manual)


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"question": "a", "answer": "#### 1"}\n\n{not json\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:3"):
        data.read_jsonl(p, ("question", "answer"))
    p.write_text('{"question": "a"}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:1: expected an object with string fields"):
        data.read_jsonl(p, ("question", "answer"))


def test_rejections_counted_and_duplicates_persisted(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = [{"question": "q one", "answer": "#### 1"}, {"question": "q two", "answer": "no marker"},
            {"question": "x" * 30000, "answer": "#### 2"},
            {"question": "q three", "answer": "#### 3"}]  # fmt: skip
    (manual / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (manual / "test.jsonl").write_text(json.dumps({"question": "q   one", "answer": "#### 1"}) + "\n")
    b = _prepare(data.Gsm8kJsonl, tmp_path, manual)
    want = {
        "kept": {"train": 2, "test": 1},
        "rejected": {"train": {"no_####_answer": 1, "too_long": 1}, "test": {}},
        "duplicates": {"test/train": 1},
    }
    assert _reread_validation(b) == want
    # Rejected rows keep their place in the numbering: "q three" is row 3 of train.jsonl.
    ids = sorted(r["id"].decode() for r in _rows(b.as_data_source()["train"]))
    assert [i.split(":")[1] for i in ids] == ["0", "3"]


def test_select_problems_spec_rules():
    probs = [f"problem {i}" for i in range(10)]
    # CPython's Mersenne-Twister shuffle with seed 42, frozen: the SPEC's bit-identical subset.
    assert data.select_problems(probs, 10) == [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]
    ref = list(probs)
    random.Random(42).shuffle(ref)
    assert [probs[i] for i in data.select_problems(probs, 4)] == ref[:4]
    assert data.select_problems(probs, None) == data.select_problems(probs, 10)
    # Level filter first (original order kept), then the shuffle of the eligible list.
    levels = ["Level 1", "Level 4"] * 5
    eligible = [p for p, lv in zip(probs, levels, strict=True) if lv == "Level 1"]
    random.Random(42).shuffle(eligible)
    got = data.select_problems(probs, 3, levels=levels, keep_levels={"Level 1", "Level 2"})
    assert [probs[i] for i in got] == eligible[:3]
    # RL: max_examples = offset + count, then the first offset dropped.
    assert data.select_problems(probs, 3, offset=4) == data.select_problems(probs, 7)[4:]
    with pytest.raises(ValueError, match=r"offset \+ count = 4 \+ 7 .* only 10 are eligible"):
        data.select_problems(probs, 7, offset=4)
    with pytest.raises(ValueError, match="only 5 are eligible with level in"):
        data.select_problems(probs, 6, levels=levels, keep_levels={"Level 1"})
    with pytest.raises(ValueError, match="repeats problem"):
        data.select_problems(["a b", "c", "a  b"], 3)
    with pytest.raises(ValueError, match="levels has 2 entries"):
        data.select_problems(probs, 1, levels=levels[:2])


def test_math_builder_selection(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    lv = lambda i: f"Level {1 + i % 3}"
    rows = [
        {"problem": f"P{i}?", "solution": rf"\boxed{{{i}}}", "answer": str(i), "level": lv(i)}
        for i in range(12)
    ]
    (manual / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(FIXTURES / "math" / "test.jsonl", manual)
    cfg = data.MathConfig(
        name="rl_like", levels=("Level 1", "Level 2"), counts={"train": 3, "test": 1}, offsets={"train": 2}
    )
    b = _prepare(data.MathJsonl, tmp_path, manual, config=cfg)
    src = b.as_data_source()
    idx = data.select_problems(
        [r["problem"] for r in rows], 3, levels=[r["level"] for r in rows],
        keep_levels={"Level 1", "Level 2"}, offset=2,
    )  # fmt: skip
    assert sorted(r["prompt"].decode() for r in _rows(src["train"])) == sorted(f"P{i}?" for i in idx)
    assert all(r["level"].decode() in ("Level 1", "Level 2") for r in _rows(src["train"]))
    assert len(src["test"]) == 1
    report = _reread_validation(b)
    assert report["selection"]["train"] == {"levels": ["Level 1", "Level 2"], "count": 3, "offset": 2,
                                            "seed": 42, "selected": 3}  # fmt: skip
    too_many = data.MathConfig(name="too_many", counts={"train": 13})
    with pytest.raises(ValueError, match="only 12 are eligible"):
        _prepare(data.MathJsonl, tmp_path, manual, config=too_many)


@pytest.mark.parametrize("answer", ["", " ", r"\boxed{}", r"\boxed{"])
def test_math_empty_or_unparseable_reference_names_file_and_line(tmp_path, answer):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = [{"problem": "P0?", "solution": r"\boxed{1}", "answer": "1"},
            {"problem": "P1?", "solution": r"\boxed{2}", "answer": answer}]  # fmt: skip
    (manual / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(FIXTURES / "math" / "test.jsonl", manual)
    with pytest.raises(ValueError, match=r"train\.jsonl:2: empty or unparseable reference answer"):
        _prepare(data.MathJsonl, tmp_path, manual)


def test_gsm8k_empty_reference_names_file_and_line(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "so\n#### , "}) + "\n")
    shutil.copy(FIXTURES / "gsm8k" / "test.jsonl", manual)
    with pytest.raises(ValueError, match=r"train\.jsonl:1: empty reference answer after '####'"):
        _prepare(data.Gsm8kJsonl, tmp_path, manual)


def test_protein_builders_and_batches(tmp_path):
    cond = data.ProteinConfig(
        name="tiny_cond", kind="conditional", sizes=(("warmup", 8), ("train", 12), ("test", 4)), seed=42
    )
    pre = data.ProteinConfig(name="tiny_pre", kind="pretrain", sizes=(("train", 16), ("test", 4)), seed=1)
    kw = lambda c: {"file_format": "array_record", "config": c}
    srcs = [
        tfds.data_source("cat_protein", data_dir=str(tmp_path / d), builder_kwargs=kw(cond)) for d in "ab"
    ]
    pairs = protein.conditional_pairs(12, "train", seed=42)
    for s in srcs:
        got = sorted((r["id"].decode(), r["input"].decode(), r["target"].decode()) for r in _rows(s["train"]))
        assert got == sorted((f"train:{i}", a, b) for i, (a, b) in enumerate(pairs))
    r = srcs[0]["test"][0]
    assert r["prompt"].decode() == protein.conditional_prompt(r["input"].decode())
    assert srcs[0]["train"].dataset_info.metadata["validation"]["kept"] == {
        "warmup": 8,
        "train": 12,
        "test": 4,
    }
    tok = protein.tokenizer()
    enc = data.protein_encoder()
    b = data.batches(srcs[0]["train"], enc, 48, tok.pad_id, 4, fields=("input", "target"), seed=0)(0)
    i, n = int(b["index"][0]), int(b["prompt_len"][0])
    rec = srcs[0]["train"][i]
    assert b["tokens"][0, :n].tolist() == tok.encode(rec["input"].decode() + ">", bos=True)
    supervised = b["labels"][0][b["labels"][0] != IGNORE].tolist()
    assert supervised == tok.encode(rec["target"].decode(), eos=True)
    # Pre-training corpus: one BOS prompt, the whole sequence + EOS supervised.
    psrc = tfds.data_source("cat_protein", data_dir=str(tmp_path / "a"), builder_kwargs=kw(pre))
    seqs = protein.pretraining_corpus(20, seed=1)
    assert sorted(r["target"].decode() for r in _rows(psrc["train"])) == sorted(seqs[:16])
    pb = data.batches(psrc["train"], enc, 48, tok.pad_id, 4, seed=0)(0)
    assert (pb["prompt_len"] == 1).all() and (pb["tokens"][:, 0] == tok.bos_id).all()
    j = int(pb["index"][0])
    assert tok.decode(pb["tokens"][0].tolist()) == psrc["train"][j]["target"].decode()
    seq = psrc["train"][j]["target"].decode()
    assert psrc["train"][j]["hydrophobicity"] == pytest.approx(protein.hydrophobicity(seq))


def test_protein_records_in_generation_order_with_max_len(tmp_path):
    # 1.1.0: record i of a split is draw i (no shuffle by key hash), so the first n records are the first n
    # draws; max_len is the corpus' longest sequence.
    pre = data.ProteinConfig(
        name="short", kind="pretrain", sizes=(("train", 30), ("test", 5)), seed=2, max_len=12
    )
    cond = data.ProteinConfig(name="c", kind="conditional", sizes=(("warmup", 7), ("test", 4)), seed=42)
    kw = lambda c: {"file_format": "array_record", "config": c}
    psrc = tfds.data_source("cat_protein", data_dir=str(tmp_path), builder_kwargs=kw(pre))
    assert str(psrc["train"].dataset_info.version) == "1.2.0"
    seqs = protein.pretraining_corpus(35, seed=2, max_len=12)
    assert [r["target"].decode() for r in _rows(psrc["train"])] == seqs[:30]
    assert [r["target"].decode() for r in _rows(psrc["test"])] == seqs[30:]
    assert max(map(len, seqs)) <= 12
    csrc = tfds.data_source("cat_protein", data_dir=str(tmp_path), builder_kwargs=kw(cond))
    for split, n in cond.sizes:
        got = [(r["id"].decode(), r["input"].decode(), r["target"].decode()) for r in _rows(csrc[split])]
        assert got == [(f"{split}:{i}", a, b) for i, (a, b) in enumerate(protein.conditional_pairs(n, split))]
