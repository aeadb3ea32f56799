r"""Protein hydrophobicity rewards and synthetic data of SPEC §3.4.

Two forms of each reward, both from the one formula of the reward as a function of hydrophobicity
(:func:`unconditional_reward_of_h`, :func:`conditional_reward_of_h`):

* Python references on text (:func:`unconditional_reward`, :func:`conditional_reward`), SPEC's definition;
* ``jnp`` rewards on token ids ``[..., L]`` with the sampler's mask (:func:`unconditional_rewards`,
  :func:`conditional_rewards`, from :func:`residue_counts`), jit-able inside an RL step, equal to the
  references on the decoded text for every (length, hydrophobic count) pair (tests/test_tasks_protein.py).

A pretrained protein LM with its own (BPE) tokenizer (ProtGPT2, SPEC §3.4) is scored on its *decoded* text
instead: :func:`completion_texts` decodes (special tokens skipped), :func:`text_rewards` /
:func:`text_stats` apply the references, and :func:`host_score_fn` runs them on the host inside a jitted RL
step (``jax.pure_callback``).
"""

from __future__ import annotations

import functools
import hashlib
import numbers
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from cat_jax.tasks import tokenizers
from cat_jax.tasks.tokenizers import CharTokenizer

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
# Char-level conditional layout: BOS + input + SEPARATOR, then target + EOS (the SPEC prompt text
# ``conditional_prompt`` is for subword tokenizers; a residue-level vocabulary needs only this one symbol).
SEPARATOR = ">"
HYDROPHOBIC = "AILMFWYV"
POLAR = "".join(c for c in ALPHABET if c not in HYDROPHOBIC)
_ALPHA_SET = frozenset(ALPHABET)
_HYD_SET = frozenset(HYDROPHOBIC)
# App. L / M: the minimum lengths of a valid sequence, and the reward of an invalid or too short one.
UNCOND_MIN_LEN, COND_MIN_LEN, INVALID_REWARD = 10, 5, -5.0


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


def unconditional_reward_of_h(h, *, dip=None, xp=np):
    r"""App. L's reward of a valid sequence as a function of its hydrophobicity ``h`` (array module ``xp``):
    ``4 exp(-(h-0.35)^2/0.05) + 12 exp(-(h-0.75)^2/0.015) - 2·1[0.45 < h < 0.60]``.

    ``dip``: the indicator ``0.45 < h < 0.60`` when the caller decides it exactly (on integer counts, as
    :func:`unconditional_rewards` does); by default the float test on ``h``. Computes in ``h``'s dtype.

    >>> unconditional_reward_of_h(np.array([0.35, 0.5, 0.75])).round(3)
    array([ 4.   ,  0.737, 12.163])
    """
    if dip is None:
        dip = (h > 0.45) & (h < 0.60)
    r = 4.0 * xp.exp(-xp.square(h - 0.35) / 0.05) + 12.0 * xp.exp(-xp.square(h - 0.75) / 0.015)
    return r - 2.0 * dip.astype(r.dtype)


def copy_penalised(h, h_in):
    """App. M's copy penalty applies: ``|h - h_in| < 0.1 and |h_in - 0.5| > 0.1`` (numpy, float64 ties)."""
    return (np.abs(h - h_in) < 0.1) & (np.abs(h_in - 0.5) > 0.1)


def conditional_reward_of_h(h, h_in, *, copy=None, xp=np):
    r"""App. M's reward of a valid output of hydrophobicity ``h`` for an input of hydrophobicity ``h_in``
    (array module ``xp``): ``10 exp(-(h - (1 - h_in))^2 / 0.05) - 2·1[copy]``.

    ``copy``: the copy-penalty indicator when the caller looks it up (:func:`copy_window`); by default
    :func:`copy_penalised` on ``h``, ``h_in``. Computes in ``h``'s dtype.

    >>> conditional_reward_of_h(np.array([0.8, 0.2]), np.array([0.2, 0.2])).round(3)
    array([10.   , -1.993])
    """
    if copy is None:
        copy = copy_penalised(h, h_in)
    r = 10.0 * xp.exp(-xp.square(h - (1.0 - h_in)) / 0.05)
    return r - 2.0 * copy.astype(r.dtype)


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
    if not _valid(s, UNCOND_MIN_LEN):
        return INVALID_REWARD
    return float(unconditional_reward_of_h(np.float64(hydrophobicity(s))))


def conditional_reward(text: str, input_seq: str) -> float:
    """App. M reward: -5 if shorter than 5 or invalid; else 10 exp(-(h-(1-h_in))^2/0.05) minus a copy penalty.

    >>> conditional_reward("AAAAAAAADD", "AADDDDDDDD")
    10.0
    >>> round(conditional_reward("AAAAAAAADD", "AAAAAAAADD"), 3)
    -1.993
    """
    s = clean(text)
    if not _valid(s, COND_MIN_LEN):
        return INVALID_REWARD
    h, h_in = np.float64(hydrophobicity(s)), np.float64(hydrophobicity(clean(input_seq)))
    return float(conditional_reward_of_h(h, h_in))


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


def pretraining_corpus(
    n: int,
    seed: int = 0,
    min_len: int = 10,
    max_len: int = 40,
    *,
    rare_fraction: numbers.Real = 0.03,
    rare_beta: Sequence[numbers.Real] = (60.0, 20.0),
    common_beta: Sequence[numbers.Real] = (16.0, 22.0),
) -> list[str]:
    """Protein-like sequences of lengths ``min_len..max_len`` from two families of hydrophobicity.

    Each sequence draws its hydrophobic probability ``p`` from the rare high-hydrophobicity family
    ``Beta(*rare_beta)`` (mean 0.75 by default) with probability ``rare_fraction``, else from the common
    family ``Beta(*common_beta)`` (mean 0.42: h mostly near 0.35-0.45); each residue is then hydrophobic
    with probability ``p``, uniform within its class. The defaults (3% rare) are the default study's corpus;
    every setting draws the same random stream, so the defaults' output never changes with the knobs' code.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"lengths need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if (
        isinstance(rare_fraction, bool)
        or not isinstance(rare_fraction, numbers.Real)
        or not (0.0 <= rare_fraction <= 1.0)
    ):
        raise ValueError(f"rare_fraction must be a number in [0, 1], got {rare_fraction!r}")
    for name, ab in (("rare_beta", rare_beta), ("common_beta", common_beta)):
        if len(tuple(ab)) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in ab
        ):
            raise ValueError(f"{name} must be two Beta parameters (a, b), both > 0, got {ab!r}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        # A rare high-hydrophobicity family gives Best-of-N a mode to find, as for the real ProtGPT2.
        p = rng.beta(*rare_beta) if rng.random() < rare_fraction else rng.beta(*common_beta)
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


# ----------------------------------------------------------------------------- rewards on token ids (jnp)

_TOKENIZER = tokenizer()
_IS_RESIDUE = np.isin(np.arange(_TOKENIZER.vocab_size), _TOKENIZER.encode(ALPHABET))
_IS_HYDROPHOBIC = np.isin(np.arange(_TOKENIZER.vocab_size), _TOKENIZER.encode(HYDROPHOBIC))


def residue_counts(
    completions: Int[ArrayLike, "*b l"], mask: Bool[ArrayLike, "*b l"]
) -> tuple[Int[Array, "*b"], Int[Array, "*b"], Bool[Array, "*b"]]:
    """``(length, hydrophobic count, invalid)`` of each completion's text (ids of :func:`tokenizer`).

    Decoding as the reference does (``CharTokenizer.decode``, then SPEC's whitespace/upper-case clean-up):
    the text stops at the first EOS and reserved ids (pad, BOS) are skipped; any other non-residue
    character ('>') makes the sequence invalid.
    """
    tok = jnp.asarray(completions)
    m = jnp.asarray(mask, bool)
    before_eos = m & (jnp.cumsum(m & (tok == _TOKENIZER.eos_id), axis=-1) == 0)
    residue = before_eos & jnp.asarray(_IS_RESIDUE)[tok]
    hydrophobic = before_eos & jnp.asarray(_IS_HYDROPHOBIC)[tok]
    invalid = jnp.any(before_eos & (tok >= 3) & ~jnp.asarray(_IS_RESIDUE)[tok], axis=-1)
    return residue.sum(-1), hydrophobic.sum(-1), invalid


def unconditional_rewards(
    completions: Int[ArrayLike, "*b l"], mask: Bool[ArrayLike, "*b l"]
) -> Float[Array, "*b"]:
    r""":func:`unconditional_reward` on token ids: ``-5`` if shorter than 10 or invalid, else
    :func:`unconditional_reward_of_h` in float32.

    The dip test runs on the integers (``20c > 9n`` and ``5c < 3n``), which is exact and agrees with the
    float64 reference: ``h = c/n`` is never within rounding distance of 0.45 or 0.6 unless equal to it.
    """
    n, c, invalid = residue_counts(completions, mask)
    h = c.astype(jnp.float32) / jnp.maximum(n, 1).astype(jnp.float32)
    r = unconditional_reward_of_h(h, dip=(20 * c > 9 * n) & (5 * c < 3 * n), xp=jnp)
    return jnp.where((n >= UNCOND_MIN_LEN) & ~invalid, r, INVALID_REWARD)


@functools.lru_cache(maxsize=8)
def copy_window(max_input: int, max_output: int) -> np.ndarray:
    """``[n_in, c_in, n, c]``: whether App. M's copy penalty applies, decided in float64 like the reference.

    ``|h - h_in| < 0.1 and |h_in - 0.5| > 0.1`` has exact ties at these lengths (h = 0.3, h_in = 0.2 is
    common) that float64 resolves one way and float32 another; a table of the reference's own float64
    comparisons (:func:`copy_penalised`) over every (length, count) pair keeps the jitted reward equal to it.
    """
    n_in = np.arange(max_input + 1)[:, None, None, None]
    c_in = np.arange(max_input + 1)[None, :, None, None]
    n = np.arange(max_output + 1)[None, None, :, None]
    c = np.arange(max_output + 1)[None, None, None, :]
    return copy_penalised(c / np.maximum(n, 1), c_in / np.maximum(n_in, 1))


def conditional_rewards(
    completions: Int[ArrayLike, "b m l"],
    mask: Bool[ArrayLike, "b m l"],
    input_length: Int[ArrayLike, " b"],
    input_hydrophobic: Int[ArrayLike, " b"],
    *,
    max_input: int,
) -> Float[Array, "b m"]:
    r""":func:`conditional_reward` on token ids: ``-5`` if shorter than 5 or invalid, else
    :func:`conditional_reward_of_h` in float32, the copy penalty looked up in :func:`copy_window`.

    ``input_length`` / ``input_hydrophobic`` are the residue and hydrophobic counts of each prompt's input
    sequence (at most ``max_input`` long, a static bound).
    """
    n, c, invalid = residue_counts(completions, mask)
    n_in = jnp.asarray(input_length)[:, None]
    c_in = jnp.asarray(input_hydrophobic)[:, None]
    h = c.astype(jnp.float32) / jnp.maximum(n, 1).astype(jnp.float32)
    h_in = c_in.astype(jnp.float32) / jnp.maximum(n_in, 1).astype(jnp.float32)
    window = jnp.asarray(copy_window(max_input, completions.shape[-1]))[n_in, c_in, n, c]
    r = conditional_reward_of_h(h, h_in, copy=window, xp=jnp)
    return jnp.where((n >= COND_MIN_LEN) & ~invalid, r, INVALID_REWARD)


# ----------------------------------------------------------------------------- rewards on decoded text (host)


completion_texts = tokenizers.completion_texts  # the one decoder of sampled completions


def text_rewards(texts: Sequence[Sequence[str]], inputs: Sequence[str] | None = None) -> np.ndarray:
    """``[B, M]`` float64 rewards of ``texts``: :func:`unconditional_reward`, or :func:`conditional_reward`
    against ``inputs[b]`` (the input sequence of prompt ``b``) when ``inputs`` is given."""
    if inputs is not None and len(inputs) != len(texts):
        raise ValueError(f"inputs has {len(inputs)} sequences but texts has {len(texts)} prompts")
    if inputs is None:
        return np.array([[unconditional_reward(t) for t in row] for row in texts], np.float64)
    return np.array(
        [[conditional_reward(t, s) for t in row] for row, s in zip(texts, inputs, strict=True)], np.float64
    )


def text_stats(texts: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """``(length, h)`` ``[B, M]`` of ``texts`` after :func:`clean`: residues, and hydrophobicity (NaN for an
    empty or non-protein text), as :func:`residue_counts` gives them for the character vocabulary."""
    cleaned = [[clean(t) for t in row] for row in texts]
    length = np.array([[len(s) for s in row] for row in cleaned], np.int64)
    h = np.array(
        [[hydrophobicity(s) if _valid(s, 1) else np.nan for s in row] for row in cleaned], np.float64
    )
    return length, h


def host_score_fn(
    decode: Callable[[list[int]], str],
    stop_tokens: Sequence[int],
    *,
    inputs: Sequence[str] | None = None,
    index_key: str = "input_index",
):
    """``cat_jax.rl.ScoreFn`` of SPEC §3.4 on decoded text, run on the host through ``jax.pure_callback``.

    Unconditional (``inputs`` None) or conditional: ``batch[index_key] [B]`` are the prompts' rows of
    ``inputs`` (the input sequences). Returns ``RolloutScores`` ``[B, M]``: float32 rewards (equal to the
    references on :func:`completion_texts`), answer ids 0 (Best-of-N needs no clusters) and validity (long
    enough and a protein: the reward is not -5).
    """
    from cat_jax import rl

    min_len = UNCOND_MIN_LEN if inputs is None else COND_MIN_LEN
    seqs = None if inputs is None else list(inputs)

    def host(tokens, mask, index):
        texts = completion_texts(tokens, mask, decode, stop_tokens)
        rows = None if seqs is None else [seqs[int(i)] for i in index.reshape(-1)]
        r = text_rewards(texts, rows)
        valid = np.array([[_valid(clean(t), min_len) for t in row] for row in texts], bool).reshape(r.shape)
        return r, np.zeros(r.shape, np.int32), valid  # Best-of-N needs no answer clusters

    return rl.host_score_fn(host, index_key=None if seqs is None else index_key, who="the conditional scorer")
