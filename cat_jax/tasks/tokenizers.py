"""Tokenizers (character level; a local Hugging Face ``tokenizer.json``) and the SPEC §3.1 example layout.

>>> tok = CharTokenizer("0123456789x=")
>>> ex = layout(tok.encode("1x2=", bos=True), tok.encode("02", eos=True), max_len=8, pad_id=tok.pad_id)
>>> ex["tokens"].tolist(), ex["labels"].tolist()
([1, 4, 13, 5, 14, 3, 5, 2], [-100, -100, -100, -100, -100, 3, 5, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Bool, Int

from cat_jax.logprobs import IGNORE


class CharTokenizer:
    """One id per character after reserved ids pad 0, bos 1, eos 2."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, alphabet: str):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet has repeated characters")
        self.alphabet = alphabet
        self._ids = {c: i + 3 for i, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        """Reserved ids plus one per character."""
        return 3 + len(self.alphabet)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Character ids, optionally framed by bos/eos; unknown characters are an error."""
        try:
            ids = [self._ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the tokenizer alphabet") from None
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids up to the first eos, reserved ids skipped."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= 3:
                out.append(self.alphabet[i - 3])
        return "".join(out)


class HFTokenizer:
    """A local ``tokenizer.json`` via the ``tokenizers`` package (imported on use; nothing downloads).

    The one loader of ``tokenizer.json`` files (``cat_jax.models.convert.load`` uses it for a checkpoint's).
    ``bos_token`` / ``eos_token`` / ``pad_token``: a token string or an id (a string the tokenizer lacks is an
    error; None: encoding with that token is an error); pad = the pad token, else EOS (SPEC §3.1), else 0.
    ``vocab_size``: the tokenizer's number of ids (added tokens included), checked against the model's so that
    no token id indexes past the embedding. ``backend`` is the ``tokenizers.Tokenizer`` itself (picklable, so
    an encoder holding this tokenizer runs in grain workers).
    """

    def __init__(
        self,
        path: str | Path,
        bos_token: str | int | None = None,
        eos_token: str | int | None = None,
        *,
        vocab_size: int | None = None,
        pad_token: str | int | None = None,
    ):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError("HFTokenizer needs the `tokenizers` package: pip install 'cat_jax[hf]'") from e
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        self.path = path
        self.backend = Tokenizer.from_file(str(path))
        if vocab_size is not None and self.vocab_size > vocab_size:
            raise ValueError(
                f"tokenizer.json has {self.vocab_size} tokens but the model's vocab_size is {vocab_size}: "
                "token ids would index past the embedding; use the tokenizer that belongs to this checkpoint"
            )
        self.bos_id = self._id(bos_token, "bos_token")
        self.eos_id = self._id(eos_token, "eos_token")
        pad_id = self._id(pad_token, "pad_token")
        # SPEC §3.1: pad = EOS when the tokenizer has no pad token.
        self.pad_id = pad_id if pad_id is not None else self.eos_id if self.eos_id is not None else 0

    def _id(self, token: str | int | None, name: str) -> int | None:
        if token is None or isinstance(token, int):
            return token
        i = self.backend.token_to_id(token)
        if i is None:
            raise ValueError(f"{name} {token!r} is not a token of {self.path}")
        return i

    @property
    def vocab_size(self) -> int:
        """Vocabulary size including added tokens."""
        return self.backend.get_vocab_size()

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the added tokens marked special (those ``decode`` skips)."""
        return frozenset(i for i, t in self.backend.get_added_tokens_decoder().items() if t.special)

    def token_to_id(self, token: str) -> int | None:
        """The id of one token string (an added token or a vocabulary entry), None if there is none."""
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        """The token string of one id, None if out of range."""
        return self.backend.id_to_token(i)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text`` as written, optionally framed by bos/eos.

        Added tokens written in the text (``<s>``, ``<|im_end|>``) become their ids; the tokenizer's own
        special tokens (a post-processor's BOS) are not added.
        """
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if (bos and self.bos_id is None) or (eos and self.eos_id is None):
            raise ValueError("bos/eos requested but the token was not named")
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of the ids; special tokens skipped unless ``skip_special_tokens=False``."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)


def layout(
    prompt_ids: Sequence[int], target_ids: Sequence[int], max_len: int, pad_id: int
) -> dict[str, np.ndarray]:
    """Right-padded ``tokens``, ``labels`` (prompt and padding -100) and ``mask`` of one example.

    Labels are aligned with tokens (position t's label is predicted from position t-1, the one causal shift
    happening in the loss); the target is cut at the end when too long (``truncate_target``, no EOS added);
    a prompt that fills the window is an error.
    """
    p = len(prompt_ids)
    if p == 0:
        raise ValueError("empty prompt: the first position must be unsupervised")
    if p >= max_len:
        raise ValueError(f"prompt of {p} tokens fills the {max_len}-token window; nothing left to supervise")
    tgt = list(target_ids)[: max_len - p]
    n = p + len(tgt)
    tokens = np.full(max_len, pad_id, np.int32)
    tokens[:n] = [*prompt_ids, *tgt]
    labels = np.full(max_len, IGNORE, np.int32)
    labels[p:n] = tgt
    mask = np.zeros(max_len, bool)
    mask[:n] = True
    return {"tokens": tokens, "labels": labels, "mask": mask, "prompt_len": np.asarray(p, np.int32)}


def completion_texts(
    tokens: Int[ArrayLike, "b m l"],
    mask: Bool[ArrayLike, "b m l"],
    decode: Callable[[list[int]], str],
    stop_tokens: Sequence[int],
) -> list[list[str]]:
    """``[B][M]`` texts of sampled completions: the masked ids before the first stop token, ``decode``-d
    (a tokenizer's ``decode``, which skips special tokens: SPEC §3.4, §3.5). The one decoder of samples for
    host-side verifiers (MATH answers, protein rewards)."""
    if np.ndim(tokens) != 3 or np.shape(mask) != np.shape(tokens):
        raise ValueError(
            f"tokens and mask must both be [B, M, L]; got {np.shape(tokens)} and {np.shape(mask)}"
        )
    tokens, mask = np.asarray(tokens), np.asarray(mask, bool)
    stops = np.asarray(list(stop_tokens), np.int64)
    out = []
    for t_row, m_row in zip(tokens, mask, strict=True):
        row = []
        for t, m in zip(t_row, m_row, strict=True):
            ids = t[m]
            hit = np.flatnonzero(np.isin(ids, stops))
            row.append(decode([int(i) for i in ids[: hit[0] if len(hit) else len(ids)]]))
        out.append(row)
    return out
