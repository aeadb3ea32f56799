"""Protein rewards (SPEC §3.4 worked examples), the jitted token-id rewards (equal to the Python references),
and synthetic data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax.tasks import protein as pr

TOK = pr.tokenizer()
PAD, EOS = TOK.pad_id, TOK.eos_id
# One compile per shape (the equality tests run thousands of rows through each).
_jit_uncond = jax.jit(pr.unconditional_rewards)
_jit_cond = jax.jit(pr.conditional_rewards, static_argnames="max_input")


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


# sha256 of "\n".join(pretraining_corpus(300, 3, max_len=L)) before the family knobs existed (the default
# study's corpus and its CatProtein records must not move).
CORPUS_SHA = {
    32: "b209e2af43cb7c7c5160ef29e3ed32c43bb144c7474c77d89c77ba46d7df56e3",
    40: "cc642b7291d29a42f96090c74d055fa3775e72fced81fa78bbeabe8620a4870e",
}


@pytest.mark.parametrize("max_len", [32, 40])
def test_corpus_defaults_are_the_old_corpus(max_len):
    import hashlib

    seqs = pr.pretraining_corpus(300, 3, max_len=max_len)
    assert hashlib.sha256("\n".join(seqs).encode()).hexdigest() == CORPUS_SHA[max_len]
    explicit = pr.pretraining_corpus(
        300, 3, max_len=max_len, rare_fraction=0.03, rare_beta=(60, 20), common_beta=(16, 22)
    )
    assert explicit == seqs


def test_corpus_rare_fraction_moves_the_rare_mode_share():
    def high_share(**kw):
        seqs = pr.pretraining_corpus(1000, 0, min_len=30, max_len=32, common_beta=(30.0, 60.0), **kw)
        return np.mean([pr.hydrophobicity(s) > 0.6 for s in seqs])

    none, some, all_rare = (high_share(rare_fraction=f) for f in (0.0, 0.2, 1.0))
    assert none < 0.01 and 0.15 < some < 0.25 and all_rare > 0.9
    # The rare family's parameters move its mode: Beta(20, 80) is a second low family.
    assert high_share(rare_fraction=1.0, rare_beta=(20.0, 80.0)) < 0.01


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rare_fraction": 1.5}, r"rare_fraction must be a number in \[0, 1\], got 1.5"),
        ({"rare_fraction": -0.1}, r"rare_fraction must be a number in \[0, 1\]"),
        ({"rare_fraction": True}, r"rare_fraction must be a number in \[0, 1\], got True"),
        ({"rare_beta": (0.0, 1.0)}, r"rare_beta must be two Beta parameters \(a, b\), both > 0"),
        ({"common_beta": (1.0,)}, r"common_beta must be two Beta parameters"),
    ],
)
def test_corpus_knobs_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        pr.pretraining_corpus(4, **kw)


def test_protein_tokenizer_layout():
    from cat_jax.tasks.tokenizers import CharTokenizer

    tok = pr.tokenizer()
    # Residue ids are those of CharTokenizer(ALPHABET); the separator takes the one id after them.
    assert tok.encode(pr.ALPHABET) == CharTokenizer(pr.ALPHABET).encode(pr.ALPHABET) == list(range(3, 23))
    assert tok.encode(pr.SEPARATOR) == [23] and tok.vocab_size == 24
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.decode(tok.encode("ACD>WY", bos=True, eos=True)) == "ACD>WY"


# ----------------------------------------------------------------------------- rewards on token ids


def _seq(n: int, c: int, rng) -> str:
    """A random sequence of ``n`` residues, ``c`` of them hydrophobic."""
    res = list(rng.choice(list(pr.HYDROPHOBIC), c)) + list(rng.choice(list(pr.POLAR), n - c))
    rng.shuffle(res)
    return "".join(res)


def _count_rows(pairs: list[tuple[int, int]], width: int, rng) -> np.ndarray:
    """One row per (length n, hydrophobic count c): shuffled residues, then EOS if it fits, then pad."""
    rows = np.full((len(pairs), width), PAD, np.int32)
    for i, (n, c) in enumerate(pairs):
        ids = TOK.encode(_seq(n, c, rng), eos=True)[:width]
        rows[i, : len(ids)] = ids
    return rows


def _mask(rows: np.ndarray) -> np.ndarray:
    """The sampler's mask: True up to and including the first EOS."""
    is_eos = rows == EOS
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
    edge_rows = np.full((len(edge), width), PAD, np.int32)
    for i, s in enumerate(edge):
        edge_rows[i, : len(s) + 1] = TOK.encode(s, eos=True)
    special = np.array([*TOK.encode("AAAAADDDDD"), TOK.bos_id, PAD, *TOK.encode("AAAA>D")])
    special_rows = np.full((2, width), PAD, np.int32)
    special_rows[0, : len(special)] = special  # '>' after 14 residues: invalid
    special_rows[1, :12] = special[:12]  # pad and BOS are skipped by decoding: 10 residues, valid
    tokens = np.concatenate([rows, edge_rows, special_rows, rand])
    mask = np.concatenate([_mask(rows), _mask(edge_rows), np.ones((2, width), bool), rand_mask])
    got = np.asarray(_jit_uncond(tokens, mask))
    want = np.array([pr.unconditional_reward(_text(t, m)) for t, m in zip(tokens, mask, strict=True)])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    assert (want == -5).any() and (want > 10).any()
    assert want[len(pairs) + len(edge)] == -5.0 and want[len(pairs) + len(edge) + 1] > 0
    # The counts behind the rewards: residues before the first EOS, hydrophobic ones, '>' invalid.
    n, c, invalid = (np.asarray(x) for x in pr.residue_counts(edge_rows, _mask(edge_rows)))
    assert n.tolist() == [10, 10, 20, 20, 9, 0] and c.tolist() == [5, 4, 9, 12, 9, 0] and not invalid.any()
    assert np.asarray(pr.residue_counts(special_rows, np.ones((2, width), bool))[2]).tolist() == [True, False]


def test_conditional_reward_equals_python_on_every_count_pair():
    rng = np.random.default_rng(1)
    width, max_input = 24, 19
    inputs = [(n, c) for n in range(10, max_input + 1) for c in range(n + 1)]
    outputs = [(n, c) for n in range(width + 1) for c in range(n + 1)]
    src = [_seq(n, c, rng) for n, c in inputs]
    rows = _count_rows(outputs, width, rng)
    tokens = np.broadcast_to(rows, (len(inputs), *rows.shape))
    mask = np.broadcast_to(_mask(rows), tokens.shape)
    input_length = np.array([len(s) for s in src], np.int32)
    input_hydrophobic = np.array([sum(ch in pr.HYDROPHOBIC for ch in s) for s in src], np.int32)
    got = np.asarray(_jit_cond(tokens, mask, input_length, input_hydrophobic, max_input=max_input))
    texts = [_text(r, m) for r, m in zip(rows, _mask(rows), strict=True)]
    want = np.array([[pr.conditional_reward(t, s) for t in texts] for s in src])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    # The copy penalty's float64 ties (e.g. h = 0.3 vs h_in = 0.2) are among the pairs checked.
    i, j = inputs.index((10, 2)), outputs.index((10, 3))
    assert want[i, j] == pytest.approx(10 * np.exp(-(0.5**2) / 0.05) - 2)
    assert pr.copy_window(max_input, width)[10, 2, 10, 3]


def test_reward_of_h_is_one_formula_in_numpy_and_jnp():
    # The references, the jnp rewards and the report's reward curve all evaluate these two functions.
    h = np.linspace(0.0, 1.0, 401)
    for h_in in (0.1, 0.5, 0.85):
        want = 10 * np.exp(-((h - (1 - h_in)) ** 2) / 0.05) - 2 * (
            (np.abs(h - h_in) < 0.1) & (abs(h_in - 0.5) > 0.1)
        )
        np.testing.assert_allclose(pr.conditional_reward_of_h(h, np.float64(h_in)), want, rtol=1e-12)
    want = 4 * np.exp(-((h - 0.35) ** 2) / 0.05) + 12 * np.exp(-((h - 0.75) ** 2) / 0.015)
    want -= 2 * ((h > 0.45) & (h < 0.60))
    np.testing.assert_allclose(pr.unconditional_reward_of_h(h), want, rtol=1e-12)
    got32 = pr.unconditional_reward_of_h(jnp.asarray(h, jnp.float32), xp=jnp)
    assert got32.dtype == jnp.float32
    # Away from the dip's edges (where float32 h may land on the other side) float32 is within rounding.
    away = (np.abs(h - 0.45) > 1e-3) & (np.abs(h - 0.6) > 1e-3)
    np.testing.assert_allclose(np.asarray(got32)[away], want[away], atol=1e-5)
