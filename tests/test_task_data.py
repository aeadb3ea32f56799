"""cat_jax.tasks.task_data via experiments.common.task_data: bit-identical to the old in-memory construction.

The experiments' problems now come from ``CatArithmetic`` records prepared in a data dir and read back with
``tfds.data_source``; the arrays and the batches of every step must equal what the old construction gave
(frozen copies below, and SHA-256 digests measured with the old code), so results/ numbers do not change.
"""

import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cat_jax import data
from cat_jax.tasks import arithmetic
from cat_jax.tasks import task_data as td_lib
from cat_jax.tasks.tokenizers import CharTokenizer, layout
from configs import common as config_common
from experiments import common

# TaskData's flat array names in the old declaration order (the order the checksums below were taken in).
ARRAYS = ("train_tokens", "train_labels", "train_prompts", "train_lengths", "train_targets",
          "train_target_lengths", "eval_prompts", "eval_lengths", "eval_targets",
          "eval_target_lengths")  # fmt: skip


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared data dir for every test of the session (each task config is prepared once)."""
    return str(tmp_path_factory.mktemp("tfds"))


def _frozen_multiply(digits: int, num_train: int, num_eval: int, seed: int) -> dict:
    """Verbatim copy of the construction experiments/common.py used before it moved onto cat_jax.tasks."""
    ids = {c: i + 3 for i, c in enumerate("0123456789x=")}
    d = digits
    lo, hi = 10 ** (d - 1), 10**d
    pairs = [(a, b) for a in range(lo, hi) for b in range(lo, hi)]
    need = num_train + num_eval
    order = np.random.default_rng(seed).permutation(len(pairs))
    chosen = [pairs[i] for i in order[:need]]
    prompt = lambda a, b: [1] + [ids[c] for c in f"{a}x{b}="]
    answer = lambda a, b: [ids[c] for c in f"{a * b:0{2 * d}d}"] + [2]
    p_len, t_len = 2 * d + 3, 2 * d + 1
    seqs = np.array([prompt(a, b) + answer(a, b) for a, b in chosen], np.int32)
    labels = np.where(np.arange(p_len + t_len)[None, :] >= p_len, seqs, -100).astype(np.int32)
    train, held = slice(0, num_train), slice(num_train, need)
    return dict(
        vocab_size=15, pad_id=0, stop_tokens=(2,), max_new_tokens=t_len,
        train_tokens=seqs[train], train_labels=labels[train], train_prompts=seqs[train, :p_len],
        train_lengths=np.full(num_train, p_len, np.int32), train_targets=seqs[train, p_len:],
        train_target_lengths=np.full(num_train, t_len, np.int32), eval_prompts=seqs[held, :p_len],
        eval_lengths=np.full(num_eval, p_len, np.int32), eval_targets=seqs[held, p_len:],
        eval_target_lengths=np.full(num_eval, t_len, np.int32),
    )  # fmt: skip


def _frozen_answer_only(train, held, tok) -> dict:
    """Verbatim copy of experiments/common.py ``_answer_only`` + ``_modular_chain`` before TaskData moved."""
    prompts = [tok.encode(p.prompt, bos=True) for p in (*train, *held)]
    targets = [tok.encode(p.answer, eos=True) for p in (*train, *held)]
    p_max, t_max = max(map(len, prompts)), max(map(len, targets))

    def pad(rows, width):
        out = np.full((len(rows), width), tok.pad_id, np.int32)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    seqs = [layout(p, t, p_max + t_max, tok.pad_id) for p, t in zip(prompts, targets, strict=True)]
    tokens, labels = np.stack([s["tokens"] for s in seqs]), np.stack([s["labels"] for s in seqs])
    p_arr, t_arr = pad(prompts, p_max), pad(targets, t_max)
    p_len = np.array([len(p) for p in prompts], np.int32)
    t_len = np.array([len(t) for t in targets], np.int32)
    tr, ev = slice(0, len(train)), slice(len(train), len(train) + len(held))
    return dict(
        vocab_size=tok.vocab_size, pad_id=tok.pad_id, stop_tokens=(tok.eos_id,), max_new_tokens=t_max,
        train_tokens=tokens[tr], train_labels=labels[tr], train_prompts=p_arr[tr], train_lengths=p_len[tr],
        train_targets=t_arr[tr], train_target_lengths=t_len[tr], eval_prompts=p_arr[ev],
        eval_lengths=p_len[ev], eval_targets=t_arr[ev], eval_target_lengths=t_len[ev],
    )  # fmt: skip


def _frozen_modular_chain(c) -> dict:
    pool = arithmetic.sample_modular_chains(
        int(c.num_train) + int(c.num_eval), steps=int(c.steps), modulus=int(c.modulus),
        max_operand=int(c.max_operand), seed=int(c.seed),
    )  # fmt: skip
    train, held = arithmetic.split_problems(pool, int(c.num_train), int(c.num_eval), seed=int(c.seed))
    tok = CharTokenizer(arithmetic.ALPHABETS["modular_chain"])
    width = len(str(int(c.modulus) - 1))
    answers = np.array([tok.encode(f"{v:0{width}d}", eos=True) for v in range(int(c.modulus))], np.int32)
    out = _frozen_answer_only(train, held, tok)
    return {**out, "answer_tokens": answers,
            "train_answer_index": np.array([int(p.answer) for p in train], np.int32)}  # fmt: skip


def _frozen_batch_order(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Verbatim order of the old experiments/sft.py ``_epoch_batches`` and rl.py ``_prompt_batches``."""
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(step, per_epoch)
    return np.random.default_rng([seed, epoch]).permutation(n)[i * batch_size : (i + 1) * batch_size]


def _digest(get) -> str:
    h = hashlib.sha256()
    for name in ("vocab_size", "pad_id", "stop_tokens", "max_new_tokens"):
        h.update(f"{name}={get(name)!r}".encode())
    for name in ARRAYS:
        v = np.asarray(get(name))
        h.update(f"{name}{v.dtype}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _digest_sorted(arrays: dict) -> str:
    """SHA-256 over arrays by sorted name (the scheme of the digests measured with the old code)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        v = np.asarray(arrays[k])
        h.update(f"{k}{v.dtype}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


# sha256 of the arrays built by the old experiments/common.py::_multiply (commit 3dbc4c5), measured before
# the switch: default config, the SFT/eval smoke (64/8), the RL smoke (32/4) and a one-digit variant.
CASES = [
    ({}, "f92a022339b0761d57812c05cd88f4c310dc2d92b39190181dffe6a6b73d5e4d"),
    ({"num_train": 64, "num_eval": 8}, "1ca8d0a137cfb9b62584f392579b864830b8a0c1ac179fc1dc74d7703cd6875c"),
    ({"num_train": 32, "num_eval": 4}, "829feed192518cfa66a68b1eee6b8da6d7cf6a19b52cec5ec9711b7527e67cd4"),
    ({"digits": 1, "num_train": 50, "num_eval": 20, "seed": 3},
     "5e5cbc03dabc632eb2016b166cace26233e920de51d3770bd82f9a7642ffc829"),
]  # fmt: skip

# Measured with the old in-memory construction (commit d9a97bb) for the configs the results/ came from:
# every array incl. answer_tokens / train_answer_index (sorted-name digest), and the batch at one step past
# the first epoch boundary (run seed 1): SFT tokens/labels, RL prompt batch, plurality candidates.
CONFIGS = {  # spec -> (digest of every array, {batch kind: the step whose batch digest is pinned})
    "configs/sft/arith.py:warmup": (
        "001455fa47fb6f430a86a584ab72557cb8fee13866b80555f16afbb14b474953",
        {"sft": 32},
    ),
    "configs/sft/arith.py:warmup,smoke": (
        "70bdec995a8c2fd86c4ea6db8279cfd5b47929a9721ff03112c25a6b6c5605a0",
        {"sft": 5},
    ),
    "configs/rl/arith.py:standard": (
        "001455fa47fb6f430a86a584ab72557cb8fee13866b80555f16afbb14b474953",
        {"rl": 126},
    ),
    "configs/rl/arith.py:standard,smoke": (
        "518de40c19ae70a0991a5dceb6cfbb655c2ba26eee1294e1e9f4593b32712f60",
        {"rl": 9},
    ),
    "configs/sft/modchain.py:warmup": (
        "74eb270bc0d74da26e3921f8113f4342bff35cad02bf4f9259d2ede53131ae7c",
        {"sft": 32, "candidates": 32},
    ),
    "configs/sft/modchain.py:warmup,smoke": (
        "f00ffd5654b4c834050a8d1f02f0fcbffb031821268e33cb03e6172c1ed8230d",
        {"sft": 5, "candidates": 5},
    ),
}
BATCH_DIGESTS = {
    (
        "configs/sft/arith.py:warmup",
        "sft",
    ): "0b71331b2a1b810972d54bfa56829a1c0a0dab3439bc485de216d48381bdb26b",
    (
        "configs/sft/arith.py:warmup,smoke",
        "sft",
    ): "85d0cfac453cd2312d2a8c810c75f8043d632d651625f574876b662c0a26afa8",
    (
        "configs/rl/arith.py:standard",
        "rl",
    ): "5ed4fdd4d3dca6fb433ed46d60d75ed092ca32a21ba64471dbb2a73e9c6a8bf6",
    (
        "configs/rl/arith.py:standard,smoke",
        "rl",
    ): "a7890a70c01a8c9c772d42fcd52c8a29768d65aaa4340a7fcb122a7133876fce",
    (
        "configs/sft/modchain.py:warmup",
        "sft",
    ): "26ca3887cdcb56eb858967aa3080db639606d92ab3e46c1f604ed1dc5e789250",
    (
        "configs/sft/modchain.py:warmup",
        "candidates",
    ): "a8317d531bf8bd380d8e326d850cc7ebd96efe5c6824c3ad49444c8914a965da",
    (
        "configs/sft/modchain.py:warmup,smoke",
        "sft",
    ): "6dedcfe82980e9948ccf99c337e66194a80061d148bc9ccdc3424e194ecf1369",
    (
        "configs/sft/modchain.py:warmup,smoke",
        "candidates",
    ): "c3abbacd6a89b1d01d1ccb37d591f421d4ae3d9268a5611418bdf404af0ccf3d",
}


def _cfg(data_dir, **kw):
    c = config_common.task()
    c.data_dir = data_dir
    for k, v in kw.items():
        c[k] = v
    return c


def _get(td, name: str):
    """A field of ``td`` by its frozen flat name (``train_prompts`` is ``td.train.prompts``)."""
    split, _, field = name.partition("_")
    if split in ("train", "eval") and hasattr(td, split):
        return getattr(td.split(split), field)
    return getattr(td, name)


def _arrays(td) -> dict:
    names = (*ARRAYS, "answer_tokens", "train_answer_index")
    return {n: _get(td, n) for n in names if _get(td, n) is not None}


@pytest.mark.parametrize(("kw", "sha"), CASES)
def test_multiply_bit_identical_to_frozen_construction(kw, sha, data_dir):
    c = _cfg(data_dir, **kw)
    td = common.task_data(c)
    frozen = _frozen_multiply(int(c.digits), int(c.num_train), int(c.num_eval), int(c.seed))
    for name, want in frozen.items():
        got = _get(td, name)
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert got == want, name
    assert _digest(lambda n: frozen[n]) == sha
    assert _digest(lambda n: _get(td, n)) == sha
    assert td.split("train") is td.train and len(td.train) == int(c.num_train)


@pytest.mark.parametrize("spec", sorted(CONFIGS))
def test_experiment_configs_bit_identical(spec, data_dir):
    """Arrays and batches across epoch boundaries equal the old construction for every study config."""
    cfg = common.load_config(spec, {"task.data_dir": data_dir})
    td = common.task_data(cfg.task)
    frozen = (
        _frozen_modular_chain(cfg.task)
        if cfg.task.name == "modular_chain"
        else _frozen_multiply(*(int(cfg.task[k]) for k in ("digits", "num_train", "num_eval", "seed")))
    )
    got = _arrays(td)
    assert set(got) == {k for k, v in frozen.items() if isinstance(v, np.ndarray)}
    for name, want in frozen.items():
        if isinstance(want, np.ndarray):
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            np.testing.assert_array_equal(got[name], want, err_msg=name)
        else:
            assert _get(td, name) == want, name
    sha, kinds = CONFIGS[spec]
    assert _digest_sorted(got) == sha
    size = int(cfg.prompts_per_step) if "rl" in kinds else int(cfg.batch_size)
    n = len(td.train)
    for seed in (0, 1):
        rows = td.batches(size, seed=seed)
        per = rows.per_epoch
        assert per == max(n // size, 1)
        for step in sorted({0, 1, per - 1, per, per + 1, 3 * per + 2}):
            idx = _frozen_batch_order(n, size, seed, step)
            b = rows(step)
            np.testing.assert_array_equal(b["index"], idx)
            np.testing.assert_array_equal(rows.indices(step), idx)
            np.testing.assert_array_equal(b["tokens"], frozen["train_tokens"][idx])
            np.testing.assert_array_equal(b["labels"], frozen["train_labels"][idx])
            batch = {
                "sft": lambda b=b: {"tokens": b["tokens"], "labels": b["labels"]},
                "rl": lambda b=b: td.prompt_batch(b),
                "candidates": lambda b=b: td.candidate_batch(b["index"]),
            }
            if "rl" in kinds:
                rl = td.prompt_batch(b)
                np.testing.assert_array_equal(rl["prompts"], frozen["train_prompts"][idx])
                np.testing.assert_array_equal(rl["targets"], frozen["train_targets"][idx])
                assert rl["stop_token"].dtype == np.int32 and (np.asarray(rl["stop_token"]) == 2).all()
            if seed == 1:
                for kind, at in kinds.items():
                    if step == at:
                        assert _digest_sorted(batch[kind]()) == BATCH_DIGESTS[spec, kind], kind


def test_modular_chain_task(data_dir):
    c = _cfg(data_dir, name="modular_chain", num_train=40, num_eval=10, steps=2, modulus=13, max_operand=20,
             seed=5)  # fmt: skip
    td = common.task_data(c)
    again = common.task_data(c)
    for name in ARRAYS:
        np.testing.assert_array_equal(_get(td, name), _get(again, name))
    pool = arithmetic.sample_modular_chains(50, steps=2, modulus=13, max_operand=20, seed=5)
    train, held = arithmetic.split_problems(pool, 40, 10, seed=5)
    tok = CharTokenizer(arithmetic.ALPHABETS["modular_chain"])
    assert td.vocab_size == tok.vocab_size and td.pad_id == 0 and td.stop_tokens == (2,)
    # Answer-only targets: the two answer digits (modulus 13 -> width 2) and EOS.
    assert td.max_new_tokens == 3 and td.eval.targets.shape == (10, 3)
    for i, p in enumerate(held):
        n = td.eval.lengths[i]
        assert tok.decode(td.eval.prompts[i, 1:n].tolist()) == p.prompt and td.eval.prompts[i, 0] == 1
        assert (td.eval.prompts[i, n:] == 0).all()
        assert tok.decode(td.eval.targets[i].tolist()) == p.answer and td.eval.targets[i, -1] == 2
    for i, p in enumerate(train):
        n = td.train.lengths[i]
        seq = td.train.tokens[i]
        assert tok.decode(seq[1:n].tolist()) == p.prompt
        assert (td.train.labels[i, :n] == -100).all()
        assert td.train.labels[i, n : n + 3].tolist() == tok.encode(p.answer, eos=True)
        assert (td.train.labels[i, n + 3 :] == -100).all() and (seq[n + 3 :] == 0).all()
        np.testing.assert_array_equal(td.train.prompts[i, :n], seq[:n])
    assert td.train.tokens.shape[1] == td.train.prompts.shape[1] + 3
    assert len(set(map(bytes, td.eval.prompts))) == 10
    # The verifier agrees with the targets the RL reward compares against.
    assert all(arithmetic.check(p, tok.decode(td.eval.targets[i].tolist())) for i, p in enumerate(held))
    assert td.eval.answer_index.tolist() == [int(p.answer) for p in held]


def test_candidate_batch_enumerates_every_answer(data_dir):
    td = common.task_data(
        _cfg(data_dir, name="modular_chain", num_train=30, num_eval=5, steps=2, modulus=13, seed=1)
    )
    idx = np.array([4, 0, 17])
    b = td.candidate_batch(idx)
    assert b["candidate_tokens"].shape == (3, 13, td.train.tokens.shape[1]) == b["candidate_labels"].shape
    for row, i in enumerate(idx):
        n = td.train.lengths[i]
        for c in range(13):
            toks, labels = b["candidate_tokens"][row, c], b["candidate_labels"][row, c]
            np.testing.assert_array_equal(toks[:n], td.train.prompts[i, :n])  # the prompt, shared
            np.testing.assert_array_equal(toks[n : n + 3], td.answer_tokens[c])  # then candidate c + EOS
            assert (toks[n + 3 :] == 0).all() and (labels[:n] == -100).all()
            assert (labels[n + 3 :] == -100).all()
            np.testing.assert_array_equal(labels[n : n + 3], td.answer_tokens[c])
        # The target's row is exactly the problem's training sequence and labels.
        t = b["target"][row]
        np.testing.assert_array_equal(b["candidate_tokens"][row, t], td.train.tokens[i])
        np.testing.assert_array_equal(b["candidate_labels"][row, t], td.train.labels[i])
    with pytest.raises(ValueError, match="plurality"):
        common.task_data(_cfg(data_dir, num_train=20, num_eval=5)).candidate_batch(idx)


def test_records_in_generation_order_and_prepared_once(data_dir, monkeypatch):
    c = _cfg(data_dir, num_train=24, num_eval=6, seed=7)
    td = common.task_data(c)
    train, held = arithmetic.split_problems(arithmetic.multiplication_problems(2), 24, 6, seed=7)
    task = td_lib.ArithmeticTask("multiply", num_train=24, num_eval=6, seed=7)
    src = tfds.data_source(
        "cat_arithmetic",
        data_dir=data_dir,
        builder_kwargs={"file_format": "array_record", "config": task.builder_config()},
    )
    assert [src["train"][i]["prompt"].decode() for i in range(24)] == [p.prompt for p in train]
    assert [src["test"][i]["answer"].decode() for i in range(6)] == [p.answer for p in held]
    # A second call reads the cache; a fresh process reads the prepared dir without generating again.
    monkeypatch.setattr(data.CatArithmetic, "as_data_source", lambda self: pytest.fail("read twice"))
    common.task_data(c)
    monkeypatch.undo()
    monkeypatch.setattr(data.builders, "_PREPARED", {})  # as in a fresh process
    monkeypatch.setattr(arithmetic, "multiplication_problems", lambda *a: pytest.fail("regenerated"))
    np.testing.assert_array_equal(common.task_data(c).train.tokens, td.train.tokens)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CAT_JAX_DATA_DIR", str(tmp_path / "d"))
    assert td_lib.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("CAT_JAX_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert td_lib.default_data_dir() == tmp_path / "cache" / "cat_jax" / "tfds"


def test_task_data_errors(data_dir):
    with pytest.raises(ValueError, match=r"task\.name must be one of"):
        common.task_data(_cfg(data_dir, name="nope"))
    with pytest.raises(ValueError, match="exceeds"):
        common.task_data(_cfg(data_dir, digits=1, num_train=80, num_eval=2))
    with pytest.raises(ValueError, match="name must be one of"):
        td_lib.ArithmeticTask("division")
    td = common.task_data(_cfg(data_dir, num_train=32, num_eval=4))
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'eval'\], got 'test'"):
        td.split("test")


def test_addition_task(data_dir):
    td = common.task_data(_cfg(data_dir, name="add", digits=3, num_train=40, num_eval=10, seed=3))
    train, held = arithmetic.split_problems(arithmetic.addition_problems(3), 40, 10, seed=3)
    tok = CharTokenizer(arithmetic.ALPHABETS["addition"])
    assert td.max_new_tokens == 5 and td.answer_tokens is None  # four digits + EOS; 1,999 answers
    for i, p in enumerate(held):
        n = td.eval.lengths[i]
        assert tok.decode(td.eval.prompts[i, 1:n].tolist()) == p.prompt
        a, b = map(int, p.prompt[:-1].split("+"))
        assert tok.decode(td.eval.targets[i].tolist()) == p.answer == f"{a + b:04d}"
    assert {p.prompt for p in train}.isdisjoint(p.prompt for p in held)
    # The ids of multiplication with the operator changed: a checkpoint's embeddings mean the same digits.
    assert CharTokenizer(arithmetic.ALPHABETS["multiplication"]).encode("12=") == tok.encode("12=")
    with pytest.raises(ValueError, match="digits"):
        arithmetic.addition_problem(5, 123, digits=3)


def test_rl_split_is_disjoint_and_leaves_train_and_eval_unchanged(data_dir):
    """num_rl adds RL prompts drawn after train and eval from the same permutation: both stay as they were."""
    kw = dict(name="add", digits=3, num_train=40, num_eval=10, seed=3)
    plain = common.task_data(_cfg(data_dir, **kw))
    with_rl = common.task_data(_cfg(data_dir, **kw, num_rl=24))
    assert plain.rl is None and len(with_rl.rl) == 24
    for name in ("train", "eval"):
        np.testing.assert_array_equal(with_rl.split(name).tokens, plain.split(name).tokens)
    seen = {tuple(r) for s in (with_rl.train, with_rl.eval) for r in s.prompts.tolist()}
    assert seen.isdisjoint(tuple(r) for r in with_rl.rl.prompts.tolist())
    assert with_rl.batches(8, seed=0, split="rl")(2)["prompts"].shape == (8, with_rl.rl.prompts.shape[1])
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'eval'\], got 'rl'"):
        plain.split("rl")
