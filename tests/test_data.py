"""TFDS builders on tiny prepared datasets in tmp_path, jsonl validation, grain batches."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cat_jax import data
from cat_jax.tasks.tokenizers import CharTokenizer

FIXTURES = Path(__file__).parent / "data"


def _prepare(builder_cls, tmp_path, manual):
    b = builder_cls(data_dir=str(tmp_path / "tfds"), file_format="array_record")
    from tensorflow_datasets.core.download import DownloadConfig

    b.download_and_prepare(download_config=DownloadConfig(manual_dir=str(manual)))
    return b


def test_arithmetic_builder_deterministic(tmp_path):
    cfg = lambda: data.ArithmeticConfig(name="tiny", num_train=40, num_test=10, seed=3)
    srcs = []
    for d in ("a", "b"):
        b = data.CatArithmetic(config=cfg(), data_dir=str(tmp_path / d), file_format="array_record")
        b.download_and_prepare()
        srcs.append(b.as_data_source())
    for split in ("train", "test"):
        got = [
            sorted((r["id"], r["prompt"]) for r in (s[split][i] for i in range(len(s[split])))) for s in srcs
        ]
        assert got[0] == got[1]
    train = {srcs[0]["train"][i]["prompt"] for i in range(40)}
    assert not train & {srcs[0]["test"][i]["prompt"] for i in range(10)}
    r = srcs[0]["train"][0]
    a, b_ = r["prompt"].decode()[:-1].split("x")
    assert int(r["answer"]) == int(a) * int(b_)


@pytest.mark.parametrize(("cls", "sub", "answers"), [(data.Gsm8kJsonl, "gsm8k", {"28", "55"}),
                                                     (data.MathJsonl, "math", {"11", "15"})])  # fmt: skip
def test_manual_builders(tmp_path, cls, sub, answers):
    b = _prepare(cls, tmp_path, FIXTURES / sub)
    src = b.as_data_source()
    assert len(src["train"]) == 3
    assert {src["test"][i]["answer"].decode() for i in range(2)} == answers
    assert all(n == 0 for n in b.duplicates.values())


def test_missing_manual_file_names_it(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(FIXTURES / "math" / "train.jsonl", manual)
    with pytest.raises(FileNotFoundError, match=r"test\.jsonl"):
        _prepare(data.MathJsonl, tmp_path, manual)


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"question": "a", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2"):
        data.read_jsonl(p, ("question", "answer"))


def test_rejections_counted_and_duplicates_reported(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = [{"question": "q one", "answer": "#### 1"}, {"question": "q two", "answer": "no marker"},
            {"question": "x" * 30000, "answer": "#### 2"}]  # fmt: skip
    (manual / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (manual / "test.jsonl").write_text(json.dumps({"question": "q   one", "answer": "#### 1"}) + "\n")
    b = _prepare(data.Gsm8kJsonl, tmp_path, manual)
    assert b.reports["train"].kept == 1
    assert b.reports["train"].rejected == {"no_####_answer": 1, "too_long": 1}
    assert b.duplicates == {("test", "train"): 1}


def test_grain_batches():
    tok = CharTokenizer("0123456789x=")
    recs = [{"prompt": f"{a}x{a}=", "answer": f"{a * a:04d}"} for a in range(10, 22)]
    enc = lambda p, t: (tok.encode(p, bos=True), tok.encode(t, eos=True))
    kw = dict(encode=enc, max_len=12, pad_id=0, batch_size=4)
    first = list(data.batches(recs, seed=1, **kw))
    assert len(first) == 3 and first[0]["tokens"].shape == (4, 12)
    again = list(data.batches(recs, seed=1, **kw))
    assert all(np.array_equal(x["index"], y["index"]) for x, y in zip(first, again, strict=True))
    other = list(data.batches(recs, seed=2, **kw))
    assert not all(np.array_equal(x["index"], y["index"]) for x, y in zip(first, other, strict=True))
    assert sorted(np.concatenate([b["index"] for b in first]).tolist()) == list(range(12))
    assert len(list(data.batches(recs, seed=1, num_epochs=2, **kw))) == 6
    grouped = list(data.batches(recs, seed=1, group_size=4, **kw))
    assert len(grouped) == 12 and all(len(set(g["index"].tolist())) == 1 for g in grouped)
    with pytest.raises(ValueError, match="multiple"):
        next(data.batches(recs, group_size=3, **kw))
