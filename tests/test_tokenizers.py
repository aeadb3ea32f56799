"""Tokenizers and the SPEC §3.1 prompt/target/label layout."""

import json

import numpy as np
import pytest

from cat_jax.tasks.tokenizers import IGNORE, CharTokenizer, HFTokenizer, layout


def test_char_roundtrip_and_reserved():
    tok = CharTokenizer("0123456789x=")
    ids = tok.encode("12x3=", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and min(ids[1:-1]) >= 3
    assert tok.decode(ids) == "12x3="
    assert tok.vocab_size == 15
    with pytest.raises(ValueError, match="alphabet"):
        tok.encode("a")
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aa")


def test_layout_rules():
    ex = layout([1, 5, 6], [7, 8, 2], max_len=8, pad_id=0)
    assert ex["tokens"].tolist() == [1, 5, 6, 7, 8, 2, 0, 0]
    assert ex["labels"].tolist() == [IGNORE] * 3 + [7, 8, 2] + [IGNORE] * 2
    assert ex["mask"].tolist() == [True] * 6 + [False] * 2
    assert ex["labels"][0] == IGNORE
    # truncate_target: the end of the target is cut, no EOS is added, the prompt is intact.
    cut = layout([1, 5, 6], [7, 8, 9, 10, 2], max_len=5, pad_id=0)
    assert cut["tokens"].tolist() == [1, 5, 6, 7, 8]
    assert cut["labels"].tolist() == [IGNORE] * 3 + [7, 8]
    with pytest.raises(ValueError, match="fills"):
        layout([1, 2, 3], [4], max_len=3, pad_id=0)
    with pytest.raises(ValueError, match="empty prompt"):
        layout([], [4], max_len=3, pad_id=0)
    assert np.asarray(ex["prompt_len"]) == 3


def test_hf_adapter(tmp_path):
    pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, "</s>": 1, "<s>": 2, "hello": 3, "world": 4}
    spec = {
        "version": "1.0",
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t, i in [("[UNK]", 0), ("</s>", 1), ("<s>", 2)]
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    tok = HFTokenizer(path, bos_token="<s>", eos_token="</s>")
    assert tok.encode("hello world", bos=True, eos=True) == [2, 3, 4, 1]
    assert tok.pad_id == 1
    assert tok.decode([2, 3, 4, 1]).split() == ["hello", "world"]
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        HFTokenizer(tmp_path / "missing.json")
    assert HFTokenizer(path, 2, 1).encode("hello", bos=True, eos=True) == [2, 3, 1]  # ids work as names do
    with pytest.raises(ValueError, match="vocab_size is 4"):
        HFTokenizer(path, vocab_size=4)
