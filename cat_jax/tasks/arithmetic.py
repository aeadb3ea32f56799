"""Synthetic verifiable reasoning tasks with difficulty knobs (pure Python / numpy).

Each task yields ``Problem(prompt, solution, answer)``: ``prompt`` ends with ``=``, ``answer`` is a
fixed-width digit string so wrong answers share a large but finite space and cluster (maj@k != pass@k),
and ``solution`` is a short worked derivation ending in the answer. ``check`` is exact string equality.

>>> p = multiplication_problem(12, 34)
>>> p.prompt, p.answer, check(p, "0408"), check(p, "408")
('12x34=', '0408', True, False)
>>> modular_chain_problem(7, [("+", 5), ("*", 3)], 10).solution
'7+5=2;2*3=6;6'
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
from collections.abc import Callable, Sequence

import numpy as np

# Character alphabets of the families for ``tokenizers.CharTokenizer`` (ids 3.. after pad 0, bos 1, eos 2).
# Fixed per family so token ids never move: the multiplication ids are those of every run so far.
ALPHABETS = {
    "multiplication": "0123456789x=",
    "addition": "0123456789+=",  # multiplication's ids with the operator changed
    "modular_chain": "0123456789+-*m=;",
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A prompt, its worked solution (ending in the answer) and the exact final answer."""

    prompt: str
    solution: str
    answer: str
    family: str


def check(problem: Problem, answer: str | None) -> bool:
    """Exact verifier: the extracted answer string equals the reference."""
    return answer is not None and answer.strip() == problem.answer


def _digit_range(digits) -> range:
    """The ``digits``-digit numbers, after checking ``digits`` is an integer >= 1."""
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 1:
        raise ValueError(f"digits must be an integer >= 1, got {digits!r}")
    return range(10 ** (digits - 1), 10**digits)


def _two_operand(a: int, b: int, digits: int, op: str, value: int, width: int, family: str) -> Problem:
    """``a <op> b =`` with ``value`` zero-padded to ``width`` characters; operands of ``digits`` digits."""
    r = _digit_range(digits)
    if a not in r or b not in r:
        raise ValueError(
            f"a and b must have exactly digits={digits} digits ([{r.start}, {r.stop})), got {a} and {b}"
        )
    ans = f"{value:0{width}d}"
    return Problem(f"{a}{op}{b}=", ans, ans, family)


def multiplication_problem(a: int, b: int, digits: int = 2) -> Problem:
    """``a x b =`` with the product zero-padded to ``2 * digits`` characters (EXPERIMENTS.md design)."""
    return _two_operand(a, b, digits, "x", a * b, 2 * digits, f"mul{digits}")


class OperandGrid(Sequence[Problem]):
    """Each ``a <op> b`` of ``digits``-digit operands, in a fixed order (``a`` major), made on demand.

    A read-only sequence (``len``, indexing, slicing, iteration): a split of three-digit addition draws 50 of
    810,000 problems, and building only those is what keeps a dataset's preparation (and the tests) fast.
    """

    def __init__(self, make: Callable[[int, int, int], Problem], digits: int):
        self._make, self._digits, self._range = make, digits, _digit_range(digits)

    def __len__(self) -> int:
        return len(self._range) ** 2

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"problem index {index} out of range for {len(self)} problems")
        a, b = divmod(i, len(self._range))
        return self._make(self._range[a], self._range[b], self._digits)


def multiplication_problems(digits: int = 2) -> OperandGrid:
    """All ``digits``-by-``digits`` products in a fixed order (8,100 for two digits), a lazy sequence."""
    return OperandGrid(multiplication_problem, digits)


def addition_problem(a: int, b: int, digits: int = 3) -> Problem:
    """``a + b =`` with the sum zero-padded to ``digits + 1`` characters (issue 15's RL task family).

    >>> addition_problem(512, 634).answer
    '1146'
    """
    return _two_operand(a, b, digits, "+", a + b, digits + 1, f"add{digits}")


def addition_problems(digits: int = 3) -> OperandGrid:
    """All ``digits``-digit + ``digits``-digit sums in a fixed order (810,000 for three digits), a lazy
    sequence."""
    return OperandGrid(addition_problem, digits)


def modular_chain_problem(start: int, ops: Sequence[tuple[str, int]], modulus: int) -> Problem:
    """``start op1 v1 op2 v2 ... (mod m) =``; every step reduced mod ``m``; answer padded to m's width."""
    if isinstance(modulus, bool) or not isinstance(modulus, numbers.Integral) or modulus < 2:
        raise ValueError(f"modulus must be an integer >= 2, got {modulus!r}")
    width = len(str(modulus - 1))
    x, steps = start % modulus, []
    for op, v in ops:
        if op not in "+-*":
            raise ValueError(f"unknown operator {op!r}; expected one of + - *")
        y = (x + v if op == "+" else x - v if op == "-" else x * v) % modulus
        steps.append(f"{x}{op}{v}={y}")
        x = y
    ans = f"{x:0{width}d}"
    prompt = f"{start}" + "".join(f"{op}{v}" for op, v in ops) + f"m{modulus}="
    return Problem(prompt, ";".join([*steps, ans]), ans, f"modchain{len(ops)}m{modulus}")


def sample_modular_chains(
    n: int, steps: int = 3, modulus: int = 97, max_operand: int = 99, seed: int = 0
) -> list[Problem]:
    """``n`` distinct random chains; difficulty grows with ``steps``, ``modulus`` and ``max_operand``."""
    rng = np.random.default_rng(seed)
    seen: dict[str, Problem] = {}
    space = (max_operand + 1) ** (steps + 1) * 3**steps
    if n > space:
        raise ValueError(f"asked for {n} distinct chains but only {space} exist")
    while len(seen) < n:
        start = int(rng.integers(0, max_operand + 1))
        ops = [("+-*"[int(rng.integers(0, 3))], int(rng.integers(0, max_operand + 1))) for _ in range(steps)]
        p = modular_chain_problem(start, ops, modulus)
        seen.setdefault(p.prompt, p)
    return list(seen.values())


def split_problems(
    problems: Sequence[Problem], num_train: int, num_test: int, seed: int = 0, *, num_rl: int = 0
) -> tuple[list[Problem], ...]:
    """Disjoint train/test subsets drawn by a seeded permutation; asking for more than exist is an error.

    ``num_rl > 0`` adds a third disjoint subset (RL prompts, never trained on nor evaluated), drawn after the
    other two from the same permutation, so train and test are the same with or without it.
    """
    need = num_train + num_test + num_rl
    if need > len(problems):
        raise ValueError(f"num_train + num_test + num_rl = {need} exceeds {len(problems)} problems")
    order = np.random.default_rng(seed).permutation(len(problems))
    pick = [problems[i] for i in order[:need]]
    train, test = pick[:num_train], pick[num_train : num_train + num_test]
    return (train, test, pick[num_train + num_test :]) if num_rl else (train, test)
