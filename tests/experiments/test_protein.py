"""Protein Best-of-N experiment: the jitted token-id rewards equal the Python references; the smoke run."""

import json
import re

import numpy as np
import pytest

from cat_jax.tasks import protein
from experiments import common
from experiments import protein as exp

TOK = exp.TOKENIZER


def _seq(n: int, c: int, rng) -> str:
    """A random sequence of ``n`` residues, ``c`` of them hydrophobic."""
    res = list(rng.choice(list(protein.HYDROPHOBIC), c)) + list(rng.choice(list(protein.POLAR), n - c))
    rng.shuffle(res)
    return "".join(res)


def _count_rows(pairs: list[tuple[int, int]], width: int, rng) -> np.ndarray:
    """One row per (length n, hydrophobic count c): shuffled residues, then EOS if it fits, then pad."""
    rows = np.full((len(pairs), width), exp.PAD, np.int32)
    for i, (n, c) in enumerate(pairs):
        ids = TOK.encode(_seq(n, c, rng), eos=True)[:width]
        rows[i, : len(ids)] = ids
    return rows


def _mask(rows: np.ndarray) -> np.ndarray:
    """The sampler's mask: True up to and including the first EOS."""
    is_eos = rows == exp.EOS
    return np.cumsum(is_eos, axis=-1) - is_eos == 0


def _text(row, mask) -> str:
    return TOK.decode([int(t) for t, m in zip(row, mask, strict=True) if m])


def test_unconditional_reward_equals_python_on_every_count_and_on_random_tokens():
    rng = np.random.default_rng(0)
    width = 44
    # Every (length, hydrophobic count) up to 44 residues: covers h = 0.45 and 0.6 exactly, the min length.
    pairs = [(n, c) for n in range(width + 1) for c in range(n + 1)]
    rows = _count_rows(pairs, width, rng)
    # Random ids over the whole vocabulary (pad/BOS skipped, '>' invalid, text ends at the first EOS),
    # weighted towards residues so that valid sequences are common; random prefix masks.
    p = np.r_[[0.01, 0.01, 0.01], np.full(20, 0.96 / 20), 0.01]
    rand = rng.choice(TOK.vocab_size, size=(600, width), p=p / p.sum()).astype(np.int32)
    rand_mask = np.arange(width)[None, :] < rng.integers(0, width + 1, 600)[:, None]
    edge = [
        "AAAAADDDDD",  # h = 0.5, in the -2 window
        "AAAADDDDDD",  # h = 0.4
        "AAAAAAAAADDDDDDDDDDD",  # 9/20 = 0.45: window is open, no penalty
        "AAAAAAAAAAAADDDDDDDD",  # 12/20 = 0.6: no penalty
        "AAAAAAAAA",  # 9 residues: too short
        "",
    ]
    edge_rows = np.full((len(edge), width), exp.PAD, np.int32)
    for i, s in enumerate(edge):
        edge_rows[i, : len(s) + 1] = TOK.encode(s, eos=True)
    special = np.array([*TOK.encode("AAAAADDDDD"), exp.BOS, exp.PAD, *TOK.encode("AAAA>D")])
    special_rows = np.full((2, width), exp.PAD, np.int32)
    special_rows[0, : len(special)] = special  # '>' after 14 residues: invalid
    special_rows[1, :12] = special[:12]  # pad and BOS are skipped by decoding: 10 residues, valid
    tokens = np.concatenate([rows, edge_rows, special_rows, rand])
    mask = np.concatenate([_mask(rows), _mask(edge_rows), np.ones((2, width), bool), rand_mask])
    got = np.asarray(exp._jit_uncond(tokens, mask))
    want = np.array([protein.unconditional_reward(_text(t, m)) for t, m in zip(tokens, mask, strict=True)])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    assert (want == -5).any() and (want > 10).any()
    assert want[len(pairs) + len(edge)] == -5.0 and want[len(pairs) + len(edge) + 1] > 0


def test_conditional_reward_equals_python_on_every_count_pair():
    rng = np.random.default_rng(1)
    width, max_input = 24, 19
    inputs = [(n, c) for n in range(10, max_input + 1) for c in range(n + 1)]
    outputs = [(n, c) for n in range(width + 1) for c in range(n + 1)]
    src = [_seq(n, c, rng) for n, c in inputs]
    rows = _count_rows(outputs, width, rng)
    tokens = np.broadcast_to(rows, (len(inputs), *rows.shape))
    mask = np.broadcast_to(_mask(rows), tokens.shape)
    prompts = exp.conditional_prompts([(s, "") for s in src])
    got = np.asarray(
        exp._jit_cond(
            tokens, mask, prompts["input_length"], prompts["input_hydrophobic"], max_input=max_input
        )
    )
    texts = [_text(r, m) for r, m in zip(rows, _mask(rows), strict=True)]
    want = np.array([[protein.conditional_reward(t, s) for t in texts] for s in src])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    # The copy penalty's float64 ties (e.g. h = 0.3 vs h_in = 0.2) are among the pairs checked.
    i, j = inputs.index((10, 2)), outputs.index((10, 3))
    assert want[i, j] == pytest.approx(10 * np.exp(-(0.5**2) / 0.05) - 2)


def test_weight_config_names():
    assert exp.weight_config("standard", quantile="history").strategy == "standard"
    w = exp.weight_config("bon4", quantile="history")
    assert (w.strategy, w.n, w.normalize, w.quantile) == ("bon", 4, True, "history")
    with pytest.raises(ValueError, match="branch must be"):
        exp.weight_config("best4", quantile="history")


def test_smoke_run_writes_every_report_file(tmp_path):
    config = common.load_config("configs/protein/protein.py:smoke")
    report = exp.run(config, str(tmp_path))
    out = tmp_path / "report"
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"] == config.command and saved["command"].startswith("python -m experiments.protein")
    for setting, reference in (("uncond", "Pre-trained LM"), ("cond", "Conditional warm-up")):
        assert set(saved[setting]) == {reference, "BoN-2"}
        rec = saved[setting]["BoN-2"]
        seeds = len(config[setting].seeds)
        assert rec["seeds"] == seeds and len(rec["per_seed"]) == seeds
        for name in ("with_replacement", "without_replacement"):
            curve = rec["across_seeds"][name]
            assert curve["k"] == list(config.eval[f"{setting}_ks"]) and np.all(
                np.diff(curve["mean"]) >= -1e-6
            )
    table = (out / "table.md").read_text()
    assert config.command in table and "| BoN-2 (2) |" in table and "| BoN-2 (1) |" in table
    for png in ("best_of_k.png", "hydrophobicity.png"):
        assert (out / png).stat().st_size > 5000
    assert report["uncond"]["BoN-2"]["per_seed"][0]["train_reward_mean"]
    assert re.search(r"Wall time \(s\): pretrain \d+", table)
