"""SPEC §3.4 rewards on decoded text (a checkpoint's own tokenizer): the host scorer inside a jitted function
equals the Python references; the tokenizer-based warm-up rows and prompts follow SPEC's text layout."""

import jax
import numpy as np
import pytest

from cat_jax import testing
from cat_jax.tasks import protein, protein_data
from cat_jax.tasks.tokenizers import HFTokenizer

M = 6  # completions per prompt


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2_tok")
    ids = testing.write_tokenizer(path, "gpt2")
    eos = ids["<|endoftext|>"]
    return HFTokenizer(path / "tokenizer.json", eos, eos)


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    """Completions a protein LM may write: residue runs near the minimum lengths, lower case, whitespace,
    letters and prose outside the alphabet, and GPT-2's special token (its EOS) mid-text."""
    out = []
    for _ in range(n):
        length = int(rng.integers(0, 22))
        p = rng.choice([0.1, 0.4, 0.75, 1.0])
        s = "".join(
            rng.choice(list(protein.HYDROPHOBIC if rng.random() < p else protein.POLAR))
            for _ in range(length)
        )
        kind = rng.integers(0, 6)
        if kind == 1 and s:
            s = s.lower()
        elif kind == 2 and len(s) > 3:
            s = s[:2] + " \n" + s[2:] + " "
        elif kind == 3:
            s = s + rng.choice(["B", "X", "1", "."])
        elif kind == 4 and s:
            s = s[:3] + "<|endoftext|>" + s[3:]
        out.append(s)
    return out


def _batch(tok, texts: list[str], rng) -> tuple[np.ndarray, np.ndarray]:
    """``[B, M, L]`` ids: each text, then EOS and random ids (not part of the completion), the sampler's mask
    (True up to and including EOS, or to L for a text cut without one)."""
    rows = [tok.encode(t) for t in texts]
    width = max(map(len, rows)) + 3
    tokens = rng.integers(0, tok.vocab_size, (len(rows), width)).astype(np.int32)
    mask = np.zeros_like(tokens, bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        if len(r) < width:
            tokens[i, len(r)] = tok.eos_id
        mask[i, : len(r) + 1 + (i % 3 == 0)] = True  # some rows keep a masked-in id after EOS
    return tokens.reshape(-1, M, width), mask.reshape(-1, M, width)


def test_host_scorer_in_jit_equals_the_references_on_decoded_text(tok):
    rng = np.random.default_rng(0)
    texts = _texts(rng, 8 * M)
    tokens, mask = _batch(tok, texts, rng)
    b = tokens.shape[0]
    # The completion ends at the first EOS (<|endoftext|> written mid-text included): the text before it.
    decoded = [[t.split("<|endoftext|>")[0] for t in texts[i * M : (i + 1) * M]] for i in range(b)]
    assert protein.completion_texts(tokens, mask, tok.decode, (tok.eos_id,)) == decoded

    inputs = [src for src, _ in protein.conditional_pairs(12, "train")]
    index = rng.permutation(12)[:b].astype(np.int32)
    batch = {"lengths": np.ones(b, np.int32), "input_index": index}
    for setting, fn, reference in (
        (
            "uncond",
            protein.host_score_fn(tok.decode, (tok.eos_id,)),
            lambda i, t: protein.unconditional_reward(t),
        ),
        (
            "cond",
            protein.host_score_fn(tok.decode, (tok.eos_id,), inputs=inputs),
            lambda i, t: protein.conditional_reward(t, inputs[index[i]]),
        ),
    ):
        scores = jax.jit(fn)(tokens, mask, batch)
        want = np.array([[reference(i, t) for t in row] for i, row in enumerate(decoded)], np.float32)
        np.testing.assert_array_equal(np.asarray(scores.rewards), want, err_msg=setting)
        np.testing.assert_array_equal(np.asarray(scores.valid), want != protein.INVALID_REWARD)
        assert (want != protein.INVALID_REWARD).any() and (want == protein.INVALID_REWARD).any()
        assert np.asarray(scores.answer_ids).shape == (b, M)
    length, h = protein.text_stats(decoded)
    cleaned = [[protein.clean(t) for t in row] for row in decoded]
    assert length.tolist() == [[len(s) for s in row] for row in cleaned]
    ok = np.isfinite(h)
    assert ok.any() and (~ok).any()
    for i, j in np.ndindex(h.shape):  # NaN exactly where the text is empty or not a protein
        s = cleaned[i][j]
        assert ok[i, j] == (bool(s) and set(s) <= set(protein.ALPHABET))
        assert not ok[i, j] or h[i, j] == protein.hydrophobicity(s)


def test_conditional_scorer_needs_the_input_index(tok):
    fn = protein.host_score_fn(tok.decode, (tok.eos_id,), inputs=["ACDE"])
    with pytest.raises(ValueError, match=r"batch\['input_index'\]"):
        fn(np.zeros((1, 2, 3), np.int32), np.ones((1, 2, 3), bool), {"lengths": np.ones(1, np.int32)})


def test_text_layout_of_the_warmup_rows_and_prompts(tok):
    pairs = protein.conditional_pairs(5, "warmup")
    rows = protein_data.text_sft_arrays(pairs, tok)
    prompts = protein_data.text_prompt_arrays(pairs, tok)
    for i, (src, target) in enumerate(pairs):
        prompt = tok.encode(protein.conditional_prompt(src))
        n = int(prompts["lengths"][i])
        assert (
            prompts["prompts"][i, :n].tolist() == prompt and tok.decode(prompt) == f"Input: {src} \n Output:"
        )
        assert (prompts["prompts"][i, n:] == tok.pad_id).all()
        supervised = rows["labels"][i] != -100
        assert not supervised[: len(prompt)].any()
        assert rows["tokens"][i, : len(prompt)].tolist() == prompt
        assert rows["labels"][i][supervised].tolist() == [*tok.encode(" " + target), tok.eos_id]
        assert prompts["input_length"][i] == len(src)
        assert prompts["input_hydrophobic"][i] == sum(c in protein.HYDROPHOBIC for c in src)
    assert prompts["input_index"].tolist() == list(range(5))
