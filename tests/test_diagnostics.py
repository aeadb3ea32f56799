"""Exact plurality win probability (vs enumeration, finite differences) and the rho diagnostics."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import diagnostics as dg
from cat_jax.plurality import majority_exact_sft_loss, plurality_win_probability, win_polynomial


def enumerate_win(p, target, n, ties):
    """Sum over every multinomial outcome of (C answers + invalid) with the tie rule."""
    probs = [*p, 1 - sum(p)]
    c = len(p)
    total = 0.0
    for counts in itertools.product(range(n + 1), repeat=c + 1):
        if sum(counts) != n:
            continue
        mult = math.factorial(n) / math.prod(math.factorial(x) for x in counts)
        pr = mult * math.prod(q**x for q, x in zip(probs, counts, strict=True))
        votes = counts[:c]
        top = max(votes)
        if top == 0 or votes[target] != top:
            continue
        m = sum(v == top for v in votes)
        total += pr * (1.0 if m == 1 else (1 / m if ties == "first" else 0.0))
    return total


PROBS = np.array([[0.5, 0.3, 0.2], [0.2, 0.35, 0.25], [0.1, 0.1, 0.1], [0.6, 0.0, 0.3]])
TARGET = np.array([0, 2, 1, 0])


@pytest.mark.parametrize("ties", ["first", "fail"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_plurality_equals_multinomial_enumeration(n, ties, x64):
    got = plurality_win_probability(jnp.asarray(PROBS), jnp.asarray(TARGET), n=n, ties=ties)
    want = [enumerate_win(p, t, n, ties) for p, t in zip(PROBS, TARGET, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-13)


def test_plurality_float32_and_larger_n():
    got = plurality_win_probability(jnp.asarray(PROBS[:2], jnp.float32), jnp.asarray(TARGET[:2]), n=6)
    want = [enumerate_win(p, t, 6, "first") for p, t in zip(PROBS[:2], TARGET[:2], strict=True)]
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_plurality_gradient_matches_finite_differences(x64):
    p = jnp.asarray(PROBS[:2])
    t = jnp.asarray(TARGET[:2])
    h = 1e-6
    steps = h * jnp.eye(6).reshape(6, 2, 3)
    for ties in ("first",):  # "fail" is the same code with the tie weight w = 0
        f = jax.jit(
            lambda q, ties=ties: jnp.sum(plurality_win_probability(q, t, n=5, ties=ties, validate=False))
        )
        g = np.asarray(jax.grad(f)(p)).ravel()
        fd = [(f(p + e) - f(p - e)) / (2 * h) for e in steps]
        np.testing.assert_allclose(g, fd, atol=1e-7)


def test_plurality_n1_and_bad_input():
    v = plurality_win_probability(jnp.array([[0.3, 0.5]]), jnp.array([1]), n=1)
    assert float(v[0]) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="probs"):
        plurality_win_probability(jnp.array([[0.7, 0.6]]), jnp.array([0]), n=3)
    with pytest.raises(ValueError, match="ties"):
        plurality_win_probability(jnp.array([[0.5, 0.5]]), jnp.array([0]), n=3, ties="random")
    with pytest.raises(ValueError, match="target"):
        plurality_win_probability(jnp.array([[0.5, 0.5]]), jnp.array([2]), n=3)


def test_majority_exact_sft_loss_pushes_rivals_down():
    lp = jnp.log(jnp.array([[0.4, 0.35, 0.15]]))
    loss = majority_exact_sft_loss(lp, jnp.array([0]), n=4)
    p_win = plurality_win_probability(jnp.exp(lp), jnp.array([0]), n=4)
    assert float(loss) == pytest.approx(-math.log(float(p_win[0])), rel=1e-5)
    g = jax.grad(lambda x: majority_exact_sft_loss(x, jnp.array([0]), n=4))(lp)
    assert float(g[0, 0]) < 0 < float(g[0, 1])  # raise the target, lower the strongest rival
    per = majority_exact_sft_loss(jnp.concatenate([lp, lp]), jnp.array([0, 1]), n=4, reduction="none")
    assert per.shape == (2,) and float(per[1]) > float(per[0])


# ----------------------------------------------------------------------------- sensitivities and rho


def test_sensitivity_spec_example():
    for fn in (dg.sensitivity, lambda *a, **k: dg.sensitivity_mc(*a, trials=200, **k)):
        d = fn(jnp.array([0.2, 0.8]), 0, n=1)
        np.testing.assert_allclose(d.sensitivities, [1.0, 0.0], atol=1e-6)
        assert d.rho == pytest.approx(1.0) and d.c_rival == pytest.approx(0.0)


CASES = [
    ("plurality", np.array([0.3, 0.25, 0.2, 0.15, 0.1]), 0, 8, None),
    ("best_of_n", np.array([0.3, 0.25, 0.2, 0.15, 0.1]), 2, 8, np.array([5.0, 1.0, 3.0, 2.0, 4.0])),
]


@pytest.mark.parametrize("strategy, p, target, n, rewards", CASES)
def test_exact_and_monte_carlo_agree(strategy, p, target, n, rewards):
    ex = dg.sensitivity(p, target, n=n, strategy=strategy, rewards=rewards)
    mc = dg.sensitivity_mc(p, target, n=n, strategy=strategy, rewards=rewards, trials=10000)
    assert np.all(np.abs(ex.sensitivities - mc.sensitivities) <= 4.5 * mc.mc_se + 1e-6)
    # Examples of SPEC §4.1: 0 <= C <= a and rho >= 1.
    assert 0 <= ex.c_rival <= ex.a and ex.rho >= 1
    assert ex.total_derivative == pytest.approx(ex.a - ex.c_rival)
    again = dg.sensitivity_mc(p, target, n=n, strategy=strategy, rewards=rewards, trials=10000)
    np.testing.assert_array_equal(again.sensitivities, mc.sensitivities)  # fixed seed: identical


def test_exact_sensitivity_is_derivative_of_win_probability(x64):
    p = np.array([0.45, 0.35, 0.2])
    d = dg.sensitivity(p, 0, n=5)
    f = lambda q: float(
        win_polynomial(jnp.asarray(q)[None], jnp.zeros(1), jnp.array([0]), n=5, ties="fail")[0]
    )
    h = 1e-6
    for j in range(3):
        e = np.eye(3)[j] * h
        assert d.sensitivities[j] == pytest.approx((f(p + e) - f(p - e)) / (2 * h), abs=1e-7)


def test_rho_undefined_is_reported_not_clipped():
    # The total derivative is positive on every proper distribution tried; check the reporting path directly.
    d = dg._summary(np.array([1.0, 2.0]), np.array([0.5, 0.5]), 0, "strict_plurality", "exact")
    assert d.total_derivative == pytest.approx(-1.0) and d.rho is None and "rho is undefined" in d.reason


def test_sensitivity_bad_input():
    with pytest.raises(ValueError, match="p must be a probability vector"):
        dg.sensitivity(np.array([0.5, 0.6]), 0, n=2)
    with pytest.raises(ValueError, match="target"):
        dg.sensitivity(np.array([0.5, 0.5]), 2, n=2)
    with pytest.raises(ValueError, match=r"p\[target\]"):
        dg.sensitivity(np.array([1.0, 0.0]), 0, n=2)
    with pytest.raises(ValueError, match="rewards"):
        dg.sensitivity(np.array([0.5, 0.5]), 0, n=2, strategy="best_of_n", rewards=np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="strategy"):
        dg.sensitivity(np.array([0.5, 0.5]), 0, n=2, strategy="pass")


def test_plus_ratio_conversion():
    np.testing.assert_allclose(dg.plus_ratio_to_rho([1.0, 0.75, 0.6]), [1.0, 1.5, 3.0])
    for bad in (0.5, 1.2, float("nan")):
        with pytest.raises(ValueError, match=r"\(0.5, 1\]"):
            dg.plus_ratio_to_rho([bad])


def test_cosine_table_matches_spec():
    want = np.array(
        [
            [1, 0.7409, 0.4180, 0.2160],
            [0.7409, 1, 0.7757, 0.4423],
            [0.4180, 0.7757, 1, 0.7775],
            [0.2160, 0.4423, 0.7775, 1],
        ]
    )
    np.testing.assert_allclose(dg.passn_weight_cosine_table((1, 4, 16, 64)), want, atol=1e-4)
