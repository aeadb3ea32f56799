r"""MATH answer extraction, vote keys and verification (``math_basic_v1``, SPEC §3.5); GSM8K ``####`` answers.

>>> extract_answer(r"so \boxed{\frac{1}{2}} and 7")
'\\frac{1}{2}'
>>> extract_answer("x = -3.5e2, done."), extract_answer(r"\boxed{}"), extract_answer("no digits")
('-3.5e2', None, None)
>>> is_correct("0.5", "1/2"), vote_key("0.5") == vote_key("1/2"), is_correct("nan", "nan")
(True, False, False)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from jaxtyping import Bool, Int

MODES = ("boxed_or_last_number", "boxed", "answer_only")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_SCALAR = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d+))?")
_FRAC = re.compile(r"([-+]?)\\frac\{([^{}]+)\}\{([^{}]+)\}")
_TOL = Fraction(1, 10_000)


def _text(name: str, value, *, optional: bool = False) -> str | None:
    """``value`` if it is a string (or None when ``optional``); otherwise a TypeError naming the argument."""
    if isinstance(value, str) or (optional and value is None):
        return value
    allowed = "a string or None" if optional else "a string"
    raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")


def _escaped(text: str, i: int) -> bool:
    n = 0
    while i - 1 - n >= 0 and text[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def _last_box(text: str) -> tuple[bool, str | None]:
    """(found, content); content None when the last box is unterminated or empty."""
    matches = list(_BOX.finditer(text))
    if not matches:
        return False, None
    depth, start = 1, matches[-1].end()
    for i in range(start, len(text)):
        c = text[i]
        if c in "{}" and _escaped(text, i):
            continue
        depth += 1 if c == "{" else -1 if c == "}" else 0
        if depth == 0:
            content = text[start:i].strip()
            return True, content or None
    return True, None


def extract_answer(completion: str, mode: str = "boxed_or_last_number") -> str | None:
    r"""Final answer of a completion, or None when invalid.

    In every mode the last ``\boxed{`` / ``\fbox{`` wins and is read to its matching brace (escaped
    braces ignored); an empty or unterminated last box is invalid with no fallback. Without a box,
    ``boxed_or_last_number`` takes the last numeric token not glued to letters, digits or dots (digits with
    an optional decimal part, so a sentence-final ``42.`` reads ``42.``, which verifies equal to ``42``);
    ``boxed`` gives None; ``answer_only`` takes the whole stripped text.

    >>> extract_answer(r"\boxed{1} then \fbox {\{a\}}")
    '\\{a\\}'
    >>> extract_answer(r"\boxed{2} \boxed{3"), extract_answer("v2 is 12.", mode="boxed")
    (None, None)
    >>> extract_answer("  x+1 ", mode="answer_only"), extract_answer("a1 .5 b")
    ('x+1', '.5')
    """
    _text("completion", completion)
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; expected one of {MODES}")
    if not completion.strip():
        return None
    found, content = _last_box(completion)
    # A box wins in every mode (SPEC §3.5 step 2); the modes differ only in the fallback without one.
    if found or mode == "boxed":
        return content
    if mode == "answer_only":
        return completion.strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def vote_key(answer: str) -> str | None:
    r"""Vote key: strip, unicode minus, one ``$..$`` pair off, no ``\left``/``\right``, ``\frac``, no spaces.

    An answer that normalises to nothing (``"$ $"``) has no key: None, invalid in a vote like an answer
    that could not be extracted.

    >>> vote_key(r" $\left( \dfrac{1}{2} \right)$ "), vote_key("−3"), vote_key("$ $")
    ('(\\frac{1}{2})', '-3', None)
    """
    s = _text("answer", answer).strip().replace("\u2212", "-")
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1]
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return "".join(s.split()) or None


def _decimal(s: str) -> Fraction | None:
    m = _SCALAR.fullmatch(s)
    if m is None or len(s) > 128:
        return None
    if m.group(1) is not None and (len(m.group(1)) > 5 or abs(int(m.group(1))) > 1000):
        return None
    return Fraction(s)


def parse_scalar(s: str) -> Fraction | None:
    r"""Exact rational of an integer/decimal/scientific, ``a/b`` or ``±\frac{a}{b}`` string, else None.

    >>> parse_scalar("-\\frac{3}{4}"), parse_scalar("1e1001"), parse_scalar("1/0")
    (Fraction(-3, 4), None, None)
    """
    if (v := _decimal(s)) is not None:
        return v
    parts = None
    if s.count("/") == 1:
        parts = ("", *s.split("/"))
    elif (m := _FRAC.fullmatch(s)) is not None:
        parts = m.groups()
    if parts is None:
        return None
    a, b = _decimal(parts[1]), _decimal(parts[2])
    if a is None or b is None or b == 0:
        return None
    return -(a / b) if parts[0] == "-" else a / b


def reference_key(reference: str) -> str:
    r"""Normalised reference answer (its last box's content, if it has one) as :func:`is_correct` reads it.

    Raises ``ValueError`` when it is empty or its last box is empty or unterminated (every answer would be
    scored wrong), ``TypeError`` when it is not a string; data preparation calls it to reject such problems.

    >>> reference_key(r"so \boxed{\dfrac{1}{2}}"), reference_key(" 7 ")
    ('\\frac{1}{2}', '7')
    """
    found, content = _last_box(_text("reference", reference))
    if found and content is None:
        raise ValueError(f"reference answer has an empty or unterminated \\boxed{{}}: {reference!r}")
    key = vote_key(content if found else reference)
    if key is None:
        raise ValueError(f"reference answer is empty: {reference!r}")
    return key


def is_correct(answer: str | None, reference: str) -> bool:
    r"""Verify an extracted answer against a reference (boxed content if the reference has a box).

    Empty or nan/inf answers are wrong; two scalars match when equal or strictly within 1e-4; otherwise the
    normalised strings must be equal. A reference that is empty, or whose last box is empty or unterminated,
    is an error (``ValueError``): every answer would silently be scored wrong.

    >>> is_correct("1.00005", "1"), is_correct("1.0001", "1"), is_correct(r"\boxed{x}", r"so \boxed{x}")
    (True, False, False)
    >>> is_correct("x", r"so \boxed{x}"), is_correct("inf", "inf"), is_correct(r"\dfrac12", r"\frac12")
    (True, False, True)
    """
    _text("answer", answer, optional=True)
    b = reference_key(reference)
    a = None if answer is None else vote_key(answer)
    bad = {"nan", "inf", "infinity", "+inf", "-inf", "+infinity", "-infinity", "-nan", "+nan"}
    if a is None or a.lower() in bad or b.lower() in bad:
        return False
    va, vb = parse_scalar(a), parse_scalar(b)
    if va is not None and vb is not None:
        return va == vb or abs(va - vb) < _TOL
    return a == b


def extract_gsm8k(text: str) -> str | None:
    """GSM8K final answer: the text after the last ``####``, commas and spaces removed; None without one.

    >>> extract_gsm8k("3 + 4 = 7\\n#### 1,234 "), extract_gsm8k("no marker")
    ('1234', None)
    """
    if "####" not in text:
        return None
    ans = text.rsplit("####", 1)[1].strip().replace(",", "")
    return "".join(ans.split()) or None


def cluster_answers(
    keys: Sequence[Sequence[str | None]],
) -> tuple[Int[np.ndarray, "b n"], Bool[np.ndarray, "b n"]]:
    """Integer cluster ids per row (first-occurrence order) and a valid mask; None (and empty) keys are
    invalid (id -1).

    >>> ids, valid = cluster_answers([["7", None, "7", "8"]])
    >>> ids.tolist(), valid.tolist()
    ([[0, -1, 0, 1]], [[True, False, True, True]])
    """
    rows = len(keys)
    n = len(keys[0]) if rows else 0
    ids = np.full((rows, n), -1, dtype=np.int32)
    valid = np.zeros((rows, n), dtype=bool)
    for i, row in enumerate(keys):
        if len(row) != n:
            raise ValueError(f"row {i} has {len(row)} answers, expected {n}")
        table: dict[str, int] = {}
        for j, k in enumerate(row):
            if k is not None and k != "":  # an empty key is no answer (vote_key never returns one)
                ids[i, j] = table.setdefault(k, len(table))
                valid[i, j] = True
    return ids, valid
