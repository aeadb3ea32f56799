"""Bad inputs of cat_jax.tasks (arithmetic, math_answers, tokenizers, protein): rows of docs/errors.md."""

from cat_jax.tasks import arithmetic as arith
from cat_jax.tasks import math_answers as answers
from cat_jax.tasks import protein
from cat_jax.tasks import tokenizers as toks

from . import DOMAIN, DTYPE, EMPTY, MISSING, SHAPE, STATIC, UNKNOWN, raises

# fmt: off
CASES = [
    raises("tasks.arithmetic.modular_chain_problem", UNKNOWN, 'operator "/"',
           lambda: arith.modular_chain_problem(3, [("/", 2)], 97),
           r"unknown operator '/'; expected one of \+ - \*"),
    raises("tasks.arithmetic.modular_chain_problem", DOMAIN, "modulus=0",
           lambda: arith.modular_chain_problem(3, [("+", 2)], 0),
           r"modulus must be an integer >= 2, got 0"),
    raises("tasks.math_answers.extract_answer", DTYPE, "a completion that is not a string (123)",
           lambda: answers.extract_answer(123), r"completion must be a string, got int 123", exc=TypeError),
    raises("tasks.math_answers.vote_key", DTYPE, "an answer that is not a string (2)",
           lambda: answers.vote_key(2), r"answer must be a string, got int 2", exc=TypeError),
    raises("tasks.math_answers.is_correct", DTYPE, "an answer that is not a string (1)",
           lambda: answers.is_correct(1, "1"), r"answer must be a string or None, got int 1", exc=TypeError),
    raises("tasks.math_answers.is_correct", EMPTY, 'an empty reference answer ("")',
           lambda: answers.is_correct("1", ""), r"reference answer is empty: ''"),
    raises("tasks.math_answers.is_correct", DOMAIN, 'an unterminated reference "\\boxed{"',
           lambda: answers.is_correct("1", "\\boxed{"), r"reference answer has an empty or unterminated"),
    raises("tasks.math_answers.extract_answer", UNKNOWN, 'mode="last"',
           lambda: answers.extract_answer("1", mode="last"),
           r"unknown extraction mode 'last'"),
    raises("tasks.tokenizers.CharTokenizer.encode", DOMAIN, "a character outside the alphabet",
           lambda: toks.CharTokenizer("0123456789").encode("12a"),
           r"character 'a' is not in the tokenizer alphabet"),
    raises("tasks.tokenizers.HFTokenizer", MISSING, '"no/such/tokenizer.json"',
           lambda: toks.HFTokenizer("no/such/tokenizer.json"),
           r"no tokenizer file at no/such/tokenizer\.json", exc=FileNotFoundError),
    raises("tasks.arithmetic.multiplication_problem", DOMAIN, "a=123 with digits=2",
           lambda: arith.multiplication_problem(123, 45, digits=2),
           r"a and b must have exactly digits=2 digits \(\[10, 100\)\), got 123 and 45"),
    raises("tasks.arithmetic.multiplication_problems", STATIC, "digits=0",
           lambda: arith.multiplication_problems(0),
           r"digits must be an integer >= 1, got 0"),
    raises("tasks.arithmetic.sample_modular_chains", DOMAIN, "more chains than exist",
           lambda: arith.sample_modular_chains(10**9, steps=1, modulus=3),
           r"asked for 1000000000 distinct chains but only \d+ exist"),
    raises("tasks.arithmetic.split_problems", DOMAIN, "num_train + num_test + num_rl > problems",
           lambda: arith.split_problems(arith.multiplication_problems(1), 40, 30, num_rl=20),
           r"num_train \+ num_test \+ num_rl = 90 exceeds 81 problems"),
    raises("tasks.tokenizers.CharTokenizer", DOMAIN, "an alphabet with a repeated character",
           lambda: toks.CharTokenizer("aab"),
           r"alphabet has repeated characters"),
    raises("tasks.tokenizers.layout", EMPTY, "an empty prompt", lambda: toks.layout([], [5, 6], 8, 0),
           r"empty prompt: the first position must be unsupervised"),
    raises("tasks.tokenizers.layout", SHAPE, "a prompt that fills max_len",
           lambda: toks.layout([5] * 8, [6], 8, 0),
           r"prompt of 8 tokens fills the 8-token window; nothing left to supervise"),
    raises("tasks.math_answers.cluster_answers", SHAPE, "ragged rows",
           lambda: answers.cluster_answers([["1", "2"], ["1"]]),
           r"row 1 has 1 answers, expected 2"),
    raises("tasks.protein.conditional_pairs", DOMAIN, "n=-1", lambda: protein.conditional_pairs(-1, "train"),
           r"n must be an integer >= 0, got -1"),
    raises("tasks.protein.pretraining_corpus", DOMAIN, "min_len > max_len",
           lambda: protein.pretraining_corpus(2, min_len=10, max_len=5),
           r"lengths need 1 <= min_len <= max_len, got min_len=10, max_len=5"),
]
# fmt: on
