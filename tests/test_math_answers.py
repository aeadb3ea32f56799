"""Case tables for math_basic_v1 extraction, vote keys and verification (SPEC §3.5)."""

from fractions import Fraction

import pytest

from cat_jax.tasks import math_answers as ma

EXTRACT = [
    ("", "boxed_or_last_number", None),
    ("   \n", "boxed_or_last_number", None),
    (r"\boxed{5}", "boxed_or_last_number", "5"),
    (r"\boxed {5}", "boxed_or_last_number", "5"),
    (r"\fbox{7}", "boxed_or_last_number", "7"),
    (r"\boxed{1} and \boxed{2}", "boxed_or_last_number", "2"),
    (r"\boxed{\frac{1}{2}}", "boxed_or_last_number", r"\frac{1}{2}"),
    (r"\boxed{a\}b}", "boxed_or_last_number", r"a\}b"),
    (r"\boxed{a\\}b}", "boxed_or_last_number", "a\\\\"),
    (r"\boxed{}", "boxed_or_last_number", None),
    (r"3 then \boxed{4", "boxed_or_last_number", None),
    # SPEC §3.5 "digits with optional decimal part": the sentence-final dot is an (empty) decimal part,
    # exactly as the reference math_basic_v1 regex reads it; "42." verifies equal to 42 (CORRECT below).
    ("the answer is 42.", "boxed_or_last_number", "42."),
    ("the answer is 42.\n", "boxed_or_last_number", "42."),
    # ...but a decimal already has its decimal part, so "3.5." is glued to a dot: no numeric token.
    ("so x = 3.5.", "boxed_or_last_number", None),
    ("so x = 3.5 .", "boxed_or_last_number", "3.5"),
    ("the answer is 42, surely", "boxed_or_last_number", "42"),
    ("answer: -7!", "boxed_or_last_number", "-7"),
    # An exponent cannot absorb a trailing dot, so "1e3." is glued to a dot and is no numeric token.
    ("it is 1e3.", "boxed_or_last_number", None),
    ("it is 1e3 .", "boxed_or_last_number", "1e3"),
    ("x = -3.5e-2", "boxed_or_last_number", "-3.5e-2"),
    ("take .25 now", "boxed_or_last_number", ".25"),
    ("v2 and x3", "boxed_or_last_number", None),
    ("1.2.3 and 9", "boxed_or_last_number", "9"),
    ("7 apples", "boxed", None),
    (r"\boxed{7}", "boxed", "7"),
    ("  any text ", "answer_only", "any text"),
    # The last box wins in every mode; answer_only falls back to the whole text only without a box.
    (r"so \boxed{7} ok", "answer_only", "7"),
    (r"\boxed{} 7", "answer_only", None),
    (r"5 \boxed{6", "boxed", None),
]


@pytest.mark.parametrize(("text", "mode", "want"), EXTRACT)
def test_extract(text, mode, want):
    assert ma.extract_answer(text, mode) == want


def test_extract_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        ma.extract_answer("1", "nope")


KEYS = [
    (" 5 ", "5"),
    ("\u22123", "-3"),
    ("$x$", "x"),
    ("$$x$$", "$x$"),
    (r"\left(1,2\right)", "(1,2)"),
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac12"),
    ("a b\tc", "abc"),
    ("X", "X"),
]


@pytest.mark.parametrize(("raw", "key"), KEYS)
def test_vote_key(raw, key):
    assert ma.vote_key(raw) == key


def test_vote_key_keeps_numeric_forms_apart():
    assert ma.vote_key("0.5") != ma.vote_key("1/2")
    assert ma.vote_key("42.") != ma.vote_key("42")  # votes are not pooled; correctness tolerates the dot
    assert ma.vote_key("x") != ma.vote_key("X")


CORRECT = [
    ("0.5", "1/2", True),
    ("1/2", r"\frac{1}{2}", True),
    (r"-\frac{1}{2}", "-0.5", True),
    ("1.00009", "1", True),
    ("1.0001", "1", False),
    ("5e-1", "0.5", True),
    ("1e1001", "1e1001", True),
    ("1e1001", "1e1000", False),
    ("2", r"so \boxed{2}", True),
    ("3", r"so \boxed{2}", False),
    ("x+1", "x+1", True),
    ("x+1", "1+x", False),
    ("", "1", False),
    ("$ $", "1", False),
    ("nan", "nan", False),
    ("inf", "inf", False),
    ("Infinity", "Infinity", False),
    (None, "1", False),
    ("1/0", "1/0", True),
    ("$5$", "5", True),
    ("42.", "42", True),
]


@pytest.mark.parametrize(("ans", "ref", "want"), CORRECT)
def test_is_correct(ans, ref, want):
    assert ma.is_correct(ans, ref) is want


def _unchecked(fn):
    """The function without the test suite's runtime signature check, so its own error is what raises."""
    return getattr(fn, "__wrapped__", fn)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: _unchecked(ma.extract_answer)(123), "completion must be a string, got int 123"),
        (lambda: _unchecked(ma.vote_key)(2), "answer must be a string, got int 2"),
        (lambda: _unchecked(ma.is_correct)(1, "1"), "answer must be a string or None, got int 1"),
        (lambda: _unchecked(ma.reference_key)(1), "reference must be a string, got int 1"),
    ],
)
def test_non_strings_raise_type_error_naming_the_argument(call, match):
    with pytest.raises(TypeError, match=match):
        call()
    with pytest.raises(TypeError):  # also through the public (runtime-checked in tests) names
        ma.vote_key(2)
    with pytest.raises(TypeError):
        ma.is_correct("1", 1)


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ("", "reference answer is empty"),
        (" ", "reference answer is empty"),
        ("$ $", "reference answer is empty"),
        (r"\boxed{}", "empty or unterminated"),
        (r"\boxed{", "empty or unterminated"),
        (r"so \boxed{ }", "empty or unterminated"),
    ],
)
def test_empty_or_unparseable_reference_is_an_error(reference, match):
    with pytest.raises(ValueError, match=match):
        ma.reference_key(reference)
    for answer in ("1", None, ""):
        with pytest.raises(ValueError, match=match):
            ma.is_correct(answer, reference)


def test_empty_vote_key_is_invalid_like_none():
    assert ma.vote_key("$ $") is None and ma.vote_key("   ") is None and ma.vote_key("$$") is None
    keys = [[ma.vote_key(a) for a in ("7", "$ $", "7", " ")] + [""]]
    ids, valid = ma.cluster_answers(keys)
    assert ids.tolist() == [[0, -1, 0, -1, -1]] and valid.tolist() == [[True, False, True, False, False]]


def test_parse_scalar():
    assert ma.parse_scalar("3") == 3
    assert ma.parse_scalar("-1.25") == Fraction(-5, 4)
    assert ma.parse_scalar("1e5") == 100000
    assert ma.parse_scalar("1e123456") is None
    assert ma.parse_scalar("1" * 129) is None
    assert ma.parse_scalar("1/2/3") is None
    assert ma.parse_scalar(r"\frac{a}{2}") is None


def test_gsm8k():
    assert ma.extract_gsm8k("a\n#### 72") == "72"
    assert ma.extract_gsm8k("#### 1 #### 2,000") == "2000"
    assert ma.extract_gsm8k("####   ") is None
    assert ma.extract_gsm8k("72") is None


def test_cluster_answers():
    ids, valid = ma.cluster_answers([["a", "b", "a", None], [None, None, None, None]])
    assert ids.tolist() == [[0, 1, 0, -1], [-1, -1, -1, -1]]
    assert valid.tolist() == [[True, True, True, False], [False] * 4]
    with pytest.raises(ValueError, match="row 1"):
        ma.cluster_answers([["a"], ["a", "b"]])
