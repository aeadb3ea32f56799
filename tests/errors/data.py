"""Bad inputs of cat_jax.data: rows of docs/errors.md (see tests/errors/__init__.py)."""

import os
import pathlib
import tempfile

from cat_jax import data

from . import DTYPE, MISSING, STATIC, raises


def _jsonl(text: str, fields=("question", "answer")):
    """``read_jsonl`` of a temporary train.jsonl holding ``text``."""
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "train.jsonl"
        path.write_text(text)
        try:
            return data.read_jsonl(path, fields)
        except ValueError as e:  # the message names the temporary file; show it relative to the folder
            raise ValueError(str(e).replace(d + os.sep, "")) from None


# fmt: off
CASES = [
    raises("data.read_jsonl", MISSING, '"no/such/train.jsonl"',
           lambda: data.read_jsonl(pathlib.Path("no/such/train.jsonl"), ["question"]),
           r"missing file no/such/train\.jsonl", exc=FileNotFoundError),
    raises("data.read_jsonl", DTYPE, "a line that is not JSON",
           lambda: _jsonl('{"question": "1", "answer": "2"}\n{oops\n'),
           r"train\.jsonl:2: malformed json"),
    raises("data.batches", STATIC, "batch_size=6 with group_size=4",
           lambda: next(data.batches([], None, 8, 0, 6, group_size=4)),
           r"batch_size 6 must be a positive multiple of group_size 4"),
]
# fmt: on
