"""TFDS builders on tiny prepared datasets in tmp_path, jsonl validation, SPEC §3.1 selection, grain."""

import hashlib
import json
import random
import shutil
from pathlib import Path

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import DownloadConfig

from cat_jax import data
from cat_jax.tasks import protein
from cat_jax.tasks.tokenizers import IGNORE, CharTokenizer

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


def _arith_records():
    return [{"prompt": f"{a}x{a}=", "answer": f"{a * a:04d}"} for a in range(10, 22)]


_TOK = CharTokenizer("0123456789x=")
_ENC = data.PromptTargetEncoder(_TOK)


def test_grain_batches():
    recs = _arith_records()
    kw = dict(encode=_ENC, max_len=12, pad_id=0, batch_size=4)
    assert isinstance(data.batches(recs, _ENC, 12, 0, 4).dataset, grain.MapDataset)
    epoch = lambda **k: list(data.batches(recs, **{**kw, **k}).iterate(num_epochs=1))
    first = epoch(seed=1)
    assert len(first) == 3 and first[0]["tokens"].shape == (4, 12)
    b = first[0]
    i = int(b["index"][0])
    assert _TOK.decode(b["tokens"][0].tolist()) == recs[i]["prompt"] + recs[i]["answer"]
    assert b["answer"][0] == recs[i]["answer"] and b["prompt_len"][0] == 7
    assert (b["labels"][0, :7] == IGNORE).all() and b["labels"][0, 7:12].tolist() == _TOK.encode(
        recs[i]["answer"], eos=True
    )
    again = epoch(seed=1)
    assert all(np.array_equal(x["index"], y["index"]) for x, y in zip(first, again, strict=True))
    other = epoch(seed=2)
    assert not all(np.array_equal(x["index"], y["index"]) for x, y in zip(first, other, strict=True))
    assert sorted(np.concatenate([b["index"] for b in first]).tolist()) == list(range(12))
    # Epochs: each is a full pass, reshuffled.
    two = list(data.batches(recs, seed=1, **kw).iterate(num_epochs=2))
    assert len(two) == 6
    e1, e2 = (np.concatenate([b["index"] for b in two[s]]) for s in (slice(0, 3), slice(3, 6)))
    assert sorted(e1.tolist()) == sorted(e2.tolist()) == list(range(12)) and not np.array_equal(e1, e2)
    forever = data.batches(recs, seed=1, **kw).iterate(num_epochs=None)
    assert len([next(forever) for _ in range(7)]) == 7
    # No shuffle: file order; a selection restricts the records.
    plain = epoch(shuffle=False)
    assert np.concatenate([b["index"] for b in plain]).tolist() == list(range(12))
    sel = epoch(indices=[5, 2, 9, 0], shuffle=False)
    assert len(sel) == 1 and sel[0]["index"].tolist() == [5, 2, 9, 0]
    assert len(epoch(drop_remainder=False, batch_size=5)) == 3


def test_grain_prompt_major_groups():
    recs = _arith_records()
    kw = dict(encode=_ENC, max_len=12, pad_id=0)
    grouped = list(data.batches(recs, seed=1, group_size=4, batch_size=8, **kw).iterate(num_epochs=1))
    assert len(grouped) == 6
    for g in grouped:
        idx = g["index"].reshape(2, 4)
        assert (idx == idx[:, :1]).all() and idx[0, 0] != idx[1, 0]
        assert (g["tokens"].reshape(2, 4, 12) == g["tokens"].reshape(2, 4, 12)[:, :1]).all()
    assert sorted(np.concatenate([g["index"][::4] for g in grouped]).tolist()) == list(range(12))
    with pytest.raises(ValueError, match="multiple"):
        next(data.batches(recs, group_size=3, batch_size=4, **kw))
    with pytest.raises(ValueError, match="num_epochs"):
        next(data.batches(recs, batch_size=4, **kw).iterate(num_epochs=0))


def test_grain_worker_process_matches_in_process():
    recs = _arith_records()
    kw = dict(encode=_ENC, max_len=12, pad_id=0, batch_size=4, seed=3)
    ref = list(data.batches(recs, **kw).iterate(num_epochs=1, worker_count=0))
    got = list(data.batches(recs, **kw).iterate(num_epochs=1, worker_count=1))
    assert len(got) == len(ref)
    for x, y in zip(ref, got, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_length_report():
    recs = [{"prompt": "1x2=", "target": "02"}, {"prompt": "12x34=", "target": "0408"},
            {"prompt": "1234x5678=", "target": "0"}]  # fmt: skip
    assert data.length_report(recs, _ENC, max_len=9) == {
        "fits": 1, "target_truncated": 1, "prompt_fills_window": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="fills"):
        data.batches(recs, _ENC, 9, 0, 3, shuffle=False)(0)


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
