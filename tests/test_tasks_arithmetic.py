"""Synthetic arithmetic tasks: exact answers, checker, difficulty knobs, splits."""

import pytest

from cat_jax.tasks import arithmetic as ar


def test_multiplication_space():
    probs = ar.multiplication_problems(2)
    assert len(probs) == 8100
    assert all(len(p.answer) == 4 and int(p.answer) == eval(p.prompt[:-1].replace("x", "*")) for p in probs)
    # Many distinct answers, so wrong answers can cluster without being trivially few.
    assert len({p.answer for p in probs}) > 2000


def test_operand_grids_are_the_eager_lists_made_on_demand():
    for make, grid in (
        (ar.multiplication_problem, ar.multiplication_problems),
        (ar.addition_problem, ar.addition_problems),
    ):
        r = range(10, 100)
        eager = [make(a, b, 2) for a in r for b in r]  # the fixed order: a major, b minor
        lazy = grid(2)
        assert len(lazy) == len(eager) == 8100 and list(lazy) == eager
        assert lazy[-1] == eager[-1] and lazy[5:40:7] == eager[5:40:7] and lazy[::-999] == eager[::-999]
        with pytest.raises(IndexError, match="out of range for 8100"):
            lazy[8100]
    assert len(ar.addition_problems(3)) == 810_000 and ar.addition_problems(3)[901].prompt == "101+101="


def test_checker_exact():
    p = ar.multiplication_problem(10, 10)
    assert p.answer == "0100"
    assert ar.check(p, "0100") and ar.check(p, " 0100 ")
    assert not ar.check(p, "100") and not ar.check(p, None)


def test_modular_chain():
    p = ar.modular_chain_problem(50, [("*", 3), ("-", 60), ("+", 9)], 97)
    assert p.prompt == "50*3-60+9m97="
    assert int(p.answer) == ((50 * 3 % 97 - 60) % 97 + 9) % 97
    assert len(p.answer) == 2 and p.solution.endswith(";" + p.answer)
    with pytest.raises(ValueError, match="operator"):
        ar.modular_chain_problem(1, [("/", 2)], 7)


def test_sample_chains_seeded_distinct():
    a = ar.sample_modular_chains(300, steps=2, modulus=97, seed=3)
    assert a == ar.sample_modular_chains(300, steps=2, modulus=97, seed=3)
    assert len({p.prompt for p in a}) == 300
    assert len({p.answer for p in a}) > 50
    with pytest.raises(ValueError, match="distinct"):
        ar.sample_modular_chains(10**6, steps=1, max_operand=3)


def test_split_disjoint():
    tr, te = ar.split_problems(ar.multiplication_problems(), 3000, 1000, seed=0)
    assert len(tr) == 3000 and len(te) == 1000
    assert not {p.prompt for p in tr} & {p.prompt for p in te}
    with pytest.raises(ValueError, match="exceeds"):
        ar.split_problems(tr, 3000, 1)
