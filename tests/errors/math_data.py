"""Bad inputs of cat_jax.tasks.math_data (MATH / GSM8K task data): rows of docs/errors.md."""

import string
import tempfile

from cat_jax.tasks import math_data
from cat_jax.tasks.tokenizers import CharTokenizer

from . import DOMAIN, MISSING, STATIC, raises


class _CharEncoder:
    """The encoder protocol on printable characters: ``BOS Problem:\\n{problem}\\n`` -> ``target EOS``."""

    tokenizer = CharTokenizer(string.printable)
    pad_id, stop_tokens, vocab_size = 0, (2,), tokenizer.vocab_size

    def prompt(self, problem):
        return self.tokenizer.encode(f"Problem:\n{problem}\n", bos=True)

    def __call__(self, problem, target):
        return self.prompt(problem), self.tokenizer.encode(target, eos=True)

    def decode(self, ids):
        return self.tokenizer.decode(ids)


def _load(**task):
    """``load`` of a MATH folder (paths relative to the repository root) with a temporary data dir."""
    with tempfile.TemporaryDirectory() as d:
        return math_data.load(math_data.MathTask(**task), _CharEncoder(), data_dir=d)


# fmt: off
CASES = [
    raises("tasks.math_data.MathTask", STATIC, 'family="mmlu"',
           lambda: math_data.MathTask("mmlu", "data/mmlu"),
           r"family must be one of \['gsm8k', 'math'\], got 'mmlu'"),
    raises("tasks.math_data.MathTask", STATIC, 'family="gsm8k", train_levels=("Level 1",)',
           lambda: math_data.MathTask("gsm8k", "data/gsm8k", train_levels=("Level 1",)),
           r"train_levels must be None for family='gsm8k' \(GSM8K has no levels\)"),
    raises("tasks.math_data.load", MISSING, 'manual_dir="no/such/math"',
           lambda: _load(family="math", manual_dir="no/such/math"),
           r"manual_dir='no/such/math': missing no/such/math/train\.jsonl", exc=FileNotFoundError),
    raises("tasks.math_data.load", DOMAIN, "train_count=4 of 3 eligible problems",
           lambda: _load(family="math", manual_dir="tests/data/math", train_count=4),
           r"math train selection from tests/data/math/train\.jsonl: requested offset \+ count = 0 \+ 4 "
           r"problems but only 3 are eligible"),
    raises("tasks.math_data.load", DOMAIN, "an eval prompt longer than max_prompt_tokens=32",
           lambda: _load(family="math", manual_dir="tests/data/math", max_prompt_tokens=32),
           r"problem test:\d+:[0-9a-f]{12} \(tests/data/math/test\.jsonl\): its prompt has \d+ tokens, more "
           r"than max_prompt_tokens=32"),
]
# fmt: on
