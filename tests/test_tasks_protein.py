"""Protein rewards (SPEC §3.4 worked examples) and synthetic data."""

import numpy as np
import pytest

from cat_jax.tasks import protein as pr


@pytest.mark.parametrize(("n_a", "want"), [(0, 0.345), (3, 3.805), (5, 0.737), (7, 10.503), (8, 10.227)])
def test_unconditional_examples(n_a, want):
    assert pr.unconditional_reward("A" * n_a + "D" * (10 - n_a)) == pytest.approx(want, abs=1e-3)


def test_unconditional_max_and_invalid():
    hs = np.linspace(0, 1, 100001)
    r = 4 * np.exp(-((hs - 0.35) ** 2) / 0.05) + 12 * np.exp(-((hs - 0.75) ** 2) / 0.015)
    r -= 2 * ((hs > 0.45) & (hs < 0.60))
    assert r.max() == pytest.approx(12.1652, abs=1e-4)
    assert abs(hs[r.argmax()] - 0.748) < 1e-3
    assert pr.unconditional_reward("A" * 9) == -5.0
    assert pr.unconditional_reward("AAAAAAAAAX") == -5.0
    assert pr.unconditional_reward(" aaa aaa\naaaa ") == pr.unconditional_reward("A" * 10)


def test_conditional_examples():
    target = "A" * 8 + "D" * 2
    assert pr.conditional_reward(target, "AADDDDDDDD") == pytest.approx(10.0)
    assert pr.conditional_reward(target, "AAAAAAAADD") == pytest.approx(10 * np.exp(-0.36 / 0.05) - 2)
    assert pr.conditional_reward("AAAA", "AAAAA") == -5.0
    assert pr.conditional_reward("AAAAB", "AAAAA") == -5.0
    # Near h_in = 0.5 copying is not penalised.
    assert pr.conditional_reward("AAAAADDDDD", "AAAAADDDDD") == pytest.approx(10.0)


def test_conditional_pairs_seeded_and_unique():
    a = pr.conditional_pairs(50, "train")
    assert a == pr.conditional_pairs(50, "train")
    assert a != pr.conditional_pairs(50, "test")
    assert len({s for s, _ in a}) == 50
    for src, tgt in a:
        assert 10 <= len(src) <= 19 and 10 <= len(tgt) <= 19
        assert round((1 - pr.hydrophobicity(src)) * len(tgt)) == sum(c in pr.HYDROPHOBIC for c in tgt)
    assert pr.conditional_prompt("AC") == "Input: AC \n Output:"


def test_corpus_mass_near_low_mode():
    seqs = pr.pretraining_corpus(2000, seed=1)
    assert seqs == pr.pretraining_corpus(2000, seed=1)
    h = np.array([pr.hydrophobicity(s) for s in seqs])
    assert 0.35 <= np.median(h) <= 0.45
    assert np.mean(np.abs(h - 0.4) < 0.15) > 0.6
    assert 0.005 < np.mean(h > 0.65) < 0.1
    assert all(set(s) <= set(pr.ALPHABET) and len(s) >= 10 for s in seqs)


def test_protein_tokenizer_layout():
    from cat_jax.tasks.tokenizers import CharTokenizer

    tok = pr.tokenizer()
    # Residue ids are those of CharTokenizer(ALPHABET); the separator takes the one id after them.
    assert tok.encode(pr.ALPHABET) == CharTokenizer(pr.ALPHABET).encode(pr.ALPHABET) == list(range(3, 23))
    assert tok.encode(pr.SEPARATOR) == [23] and tok.vocab_size == 24
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.decode(tok.encode("ACD>WY", bos=True, eos=True)) == "ACD>WY"
