"""The batcher (cat_jax.data.pipeline): a pure function of the step, epochs, groups, selections, workers."""

import grain
import numpy as np
import pytest

from cat_jax import data
from cat_jax.tasks.tokenizers import IGNORE, CharTokenizer


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


def test_batch_is_a_pure_function_of_the_step():
    recs = _arith_records()
    b = data.batches(recs, _ENC, 12, 0, 5, seed=7)
    assert b.per_epoch == 2  # 12 records, 5 per batch, the remainder dropped
    for step in (0, 1, 2, 3, 9):
        epoch, i = divmod(step, 2)
        want = np.random.default_rng([7, epoch]).permutation(12)[i * 5 : (i + 1) * 5]
        np.testing.assert_array_equal(b(step)["index"], want)
        np.testing.assert_array_equal(b.indices(step), want)
    # A resumed iterator reads exactly the batches of an uninterrupted one; a fresh batcher agrees.
    full = list(b.iterate(num_epochs=3))
    resumed = list(b.iterate(num_epochs=3, start=4))
    again = data.batches(recs, _ENC, 12, 0, 5, seed=7)
    assert len(full) == 6 and len(resumed) == 2
    for x, y, z in zip(full[4:], resumed, [again(4), again(5)], strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
            np.testing.assert_array_equal(x[k], z[k])
    with pytest.raises(ValueError, match="step must be >= 0"):
        b(-1)
    # A source smaller than one batch is read whole, once per epoch.
    small = data.batches(recs[:3], _ENC, 12, 0, 8, seed=0)
    assert small.per_epoch == 1 and sorted(small(1)["index"].tolist()) == [0, 1, 2]


def test_rows_of_arrays_are_stacked_as_they_are():
    rows = [{"x": np.array([i, i + 1], np.int32), "y": np.float32(i)} for i in range(6)]
    b = data.batches(rows, None, None, 0, 4, seed=1, group_size=2, shuffle=False, indices=[4, 1, 3])
    first = b(0)
    assert first["x"].tolist() == [[4, 5], [4, 5], [1, 2], [1, 2]] and first["x"].dtype == np.int32
    assert first["y"].tolist() == [4, 4, 1, 1] and first["index"].tolist() == [4, 4, 1, 1]
    assert b.per_epoch == 1 and b.indices(0).tolist() == [4, 1]
    with pytest.raises(ValueError, match="no records"):
        data.batches([], None, None, 0, 4)
    with pytest.raises(ValueError, match="max_len must be an integer >= 2 with an encoder"):
        data.batches(rows, _ENC, None, 0, 4)
    with pytest.raises(ValueError, match="worker_count"):
        b.iterate(worker_count=-1)
