"""experiments.common.task_data: multiplication bit-identical to the old construction; modular chains."""

import hashlib

import numpy as np
import pytest

from cat_jax.tasks import arithmetic
from configs import common
from experiments import common

# TaskData's array fields in declaration order (the order the checksums below were taken in).
ARRAYS = ("train_tokens", "train_labels", "train_prompts", "train_lengths", "train_targets",
          "train_target_lengths", "eval_prompts", "eval_lengths", "eval_targets",
          "eval_target_lengths")  # fmt: skip


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


def _digest(get) -> str:
    h = hashlib.sha256()
    for name in ("vocab_size", "pad_id", "stop_tokens", "max_new_tokens"):
        h.update(f"{name}={get(name)!r}".encode())
    for name in ARRAYS:
        v = np.asarray(get(name))
        h.update(f"{name}{v.dtype}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
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


def _cfg(**kw):
    c = common.task()
    for k, v in kw.items():
        c[k] = v
    return c


@pytest.mark.parametrize(("kw", "sha"), CASES)
def test_multiply_bit_identical_to_frozen_construction(kw, sha):
    c = _cfg(**kw)
    td = common.task_data(c)
    frozen = _frozen_multiply(int(c.digits), int(c.num_train), int(c.num_eval), int(c.seed))
    for name, want in frozen.items():
        got = getattr(td, name)
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert got == want, name
    assert _digest(lambda n: frozen[n]) == sha
    assert _digest(lambda n: getattr(td, n)) == sha


def test_modular_chain_task():
    c = _cfg(name="modular_chain", num_train=40, num_eval=10, steps=2, modulus=13, max_operand=20, seed=5)
    td = common.task_data(c)
    again = common.task_data(c)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(td, name), getattr(again, name))
    pool = arithmetic.sample_modular_chains(50, steps=2, modulus=13, max_operand=20, seed=5)
    train, held = arithmetic.split_problems(pool, 40, 10, seed=5)
    from cat_jax.tasks.tokenizers import CharTokenizer

    tok = CharTokenizer(arithmetic.ALPHABETS["modular_chain"])
    assert td.vocab_size == tok.vocab_size and td.pad_id == 0 and td.stop_tokens == (2,)
    # Answer-only targets: the two answer digits (modulus 13 -> width 2) and EOS.
    assert td.max_new_tokens == 3 and td.eval_targets.shape == (10, 3)
    for i, p in enumerate(held):
        n = td.eval_lengths[i]
        assert tok.decode(td.eval_prompts[i, 1:n].tolist()) == p.prompt and td.eval_prompts[i, 0] == 1
        assert (td.eval_prompts[i, n:] == 0).all()
        assert tok.decode(td.eval_targets[i].tolist()) == p.answer and td.eval_targets[i, -1] == 2
    for i, p in enumerate(train):
        n = td.train_lengths[i]
        seq = td.train_tokens[i]
        assert tok.decode(seq[1:n].tolist()) == p.prompt
        assert (td.train_labels[i, :n] == -100).all()
        assert td.train_labels[i, n : n + 3].tolist() == tok.encode(p.answer, eos=True)
        assert (td.train_labels[i, n + 3 :] == -100).all() and (seq[n + 3 :] == 0).all()
        np.testing.assert_array_equal(td.train_prompts[i, :n], seq[:n])
    assert td.train_tokens.shape[1] == td.train_prompts.shape[1] + 3
    assert len(set(map(bytes, td.eval_prompts))) == 10
    # The verifier agrees with the targets the RL reward compares against.
    assert all(arithmetic.check(p, tok.decode(td.eval_targets[i].tolist())) for i, p in enumerate(held))


def test_candidate_batch_enumerates_every_answer():
    td = common.task_data(_cfg(name="modular_chain", num_train=30, num_eval=5, steps=2, modulus=13, seed=1))
    idx = np.array([4, 0, 17])
    b = td.candidate_batch(idx)
    assert b["candidate_tokens"].shape == (3, 13, td.train_tokens.shape[1]) == b["candidate_labels"].shape
    for row, i in enumerate(idx):
        n = td.train_lengths[i]
        for c in range(13):
            toks, labels = b["candidate_tokens"][row, c], b["candidate_labels"][row, c]
            np.testing.assert_array_equal(toks[:n], td.train_prompts[i, :n])  # the prompt, shared
            np.testing.assert_array_equal(toks[n : n + 3], td.answer_tokens[c])  # then candidate c + EOS
            assert (toks[n + 3 :] == 0).all() and (labels[:n] == -100).all()
            assert (labels[n + 3 :] == -100).all()
            np.testing.assert_array_equal(labels[n : n + 3], td.answer_tokens[c])
        # The target's row is exactly the problem's training sequence and labels.
        t = b["target"][row]
        np.testing.assert_array_equal(b["candidate_tokens"][row, t], td.train_tokens[i])
        np.testing.assert_array_equal(b["candidate_labels"][row, t], td.train_labels[i])
    with pytest.raises(ValueError, match="plurality"):
        common.task_data(_cfg(num_train=20, num_eval=5)).candidate_batch(idx)


def test_task_data_errors():
    with pytest.raises(ValueError, match=r"task\.name must be one of"):
        common.task_data(_cfg(name="nope"))
    with pytest.raises(ValueError, match="exceeds"):
        common.task_data(_cfg(digits=1, num_train=80, num_eval=2))
