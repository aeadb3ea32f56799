"""Protein hydrophobicity rewards and synthetic data of SPEC §3.4 (pure numpy / Python)."""

from __future__ import annotations

import hashlib
import math
import numbers

import numpy as np

from cat_jax.tasks.tokenizers import CharTokenizer

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
# Char-level conditional layout: BOS + input + SEPARATOR, then target + EOS (the SPEC prompt text
# ``conditional_prompt`` is for subword tokenizers; a residue-level vocabulary needs only this one symbol).
SEPARATOR = ">"
HYDROPHOBIC = "AILMFWYV"
POLAR = "".join(c for c in ALPHABET if c not in HYDROPHOBIC)
_ALPHA_SET = frozenset(ALPHABET)
_HYD_SET = frozenset(HYDROPHOBIC)


def clean(text: str) -> str:
    """Delete all whitespace and upper-case, as the reward post-processing does."""
    return "".join(text.split()).upper()


def hydrophobicity(seq: str) -> float:
    """Fraction of residues in {A,I,L,M,F,W,Y,V}; 0 for the empty string.

    >>> hydrophobicity("AADD")
    0.5
    """
    return sum(c in _HYD_SET for c in seq) / len(seq) if seq else 0.0


def _valid(seq: str, min_len: int) -> bool:
    return len(seq) >= min_len and all(c in _ALPHA_SET for c in seq)


def unconditional_reward(text: str) -> float:
    """App. L reward: -5 if shorter than 10 or non-standard; else two Gaussian modes, minus 2 on 0.45<h<0.60.

    >>> round(unconditional_reward("DDDDDDDDDD"), 3), round(unconditional_reward("AAADDDDDDD"), 3)
    (0.345, 3.805)
    >>> round(unconditional_reward("AAAAADDDDD"), 3), round(unconditional_reward("AAAAAAADDD"), 3)
    (0.737, 10.503)
    >>> unconditional_reward("AAAA"), unconditional_reward("AAAAAAAAAB")
    (-5.0, -5.0)
    """
    s = clean(text)
    if not _valid(s, 10):
        return -5.0
    h = hydrophobicity(s)
    r = 4.0 * math.exp(-((h - 0.35) ** 2) / 0.05) + 12.0 * math.exp(-((h - 0.75) ** 2) / 0.015)
    return r - (2.0 if 0.45 < h < 0.60 else 0.0)


def conditional_reward(text: str, input_seq: str) -> float:
    """App. M reward: -5 if shorter than 5 or invalid; else 10 exp(-(h-(1-h_in))^2/0.05) minus a copy penalty.

    >>> conditional_reward("AAAAAAAADD", "AADDDDDDDD")
    10.0
    >>> round(conditional_reward("AAAAAAAADD", "AAAAAAAADD"), 3)
    -1.993
    """
    s = clean(text)
    if not _valid(s, 5):
        return -5.0
    h, h_in = hydrophobicity(s), hydrophobicity(clean(input_seq))
    r = 10.0 * math.exp(-((h - (1.0 - h_in)) ** 2) / 0.05)
    return r - (2.0 if abs(h - h_in) < 0.1 and abs(h_in - 0.5) > 0.1 else 0.0)


def _rng(seed: int, split: str) -> np.random.Generator:
    digest = hashlib.sha256(f"cat-protein-v1:{seed}:{split}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def conditional_pairs(n: int, split: str, seed: int = 42) -> list[tuple[str, str]]:
    """``n`` (input, target) pairs; inputs unique within a split; target hydrophobicity ~ 1 - h(input)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rng = _rng(seed, split)
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    while len(out) < n:
        length = int(rng.integers(10, 20))
        src = "".join(ALPHABET[i] for i in rng.integers(0, 20, length))
        if src in seen:
            continue
        seen.add(src)
        tlen = int(rng.integers(10, 20))
        n_h = round((1.0 - hydrophobicity(src)) * tlen)
        res = [HYDROPHOBIC[i] for i in rng.integers(0, 8, n_h)]
        res += [POLAR[i] for i in rng.integers(0, 12, tlen - n_h)]
        rng.shuffle(res)
        out.append((src, "".join(res)))
    return out


def conditional_prompt(input_seq: str) -> str:
    """Prompt text of the conditional task."""
    return "Input: " + input_seq + " \n Output:"


def pretraining_corpus(n: int, seed: int = 0, min_len: int = 10, max_len: int = 40) -> list[str]:
    """Protein-like sequences: hydrophobicity mostly near 0.35-0.45 (Beta(16, 22)), 3% near 0.75."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"lengths need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        # A rare high-hydrophobicity family gives Best-of-N a mode to find, as for the real ProtGPT2.
        p = rng.beta(60, 20) if rng.random() < 0.03 else rng.beta(16, 22)
        is_h = rng.random(length) < p
        res = np.where(
            is_h,
            np.array(list(HYDROPHOBIC))[rng.integers(0, 8, length)],
            np.array(list(POLAR))[rng.integers(0, 12, length)],
        )
        out.append("".join(res.tolist()))
    return out


def tokenizer() -> CharTokenizer:
    """The protein char tokenizer: pad 0, bos 1, eos 2, residues 3..22 in ``ALPHABET`` order, ``>`` 23.

    >>> tok = tokenizer()
    >>> tok.vocab_size, tok.encode("AY>", bos=True)
    (24, [1, 3, 22, 23])
    """
    return CharTokenizer(ALPHABET + SEPARATOR)
