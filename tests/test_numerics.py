"""Numerical primitives: accuracy against mpmath, NaN-free gradients, dtype policy."""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from cat_jax import numerics as nx


@pytest.mark.usefixtures("x64")
def test_log1mexp_accuracy_and_gradient():
    u = jnp.array([-1e4, -700.0, -40.0, -1.0, -math.log(2), -0.5, -1e-5, -1e-300], jnp.float64)
    got = jax.jit(nx.log1mexp)(u)
    with mpmath.workdps(60):
        ref = [
            float(mpmath.log(-mpmath.expm1(x)) if x > -1 else mpmath.log1p(-mpmath.exp(x)))
            for x in (mpmath.mpf(float(v)) for v in u)
        ]
    np.testing.assert_allclose(got, ref, rtol=1e-14)
    grad = jax.jit(jax.vmap(jax.grad(nx.log1mexp)))(u)
    assert bool(jnp.all(jnp.isfinite(grad)))
    assert float(nx.log1mexp(jnp.float64(0.0))) == -math.inf


def test_safe_where_keeps_gradients_finite():
    x = jnp.array([0.0, 1.0, 2.0])
    f = lambda v: jnp.sum(nx.safe_where(v > 0, v, jnp.log, lambda a: a, true_safe=1.0, false_safe=0.0))
    np.testing.assert_allclose(jax.grad(f)(x), [1.0, 1.0, 0.5])
    naive = lambda v: jnp.sum(jnp.where(v > 0, jnp.log(v), v))
    assert not bool(jnp.all(jnp.isfinite(jax.grad(naive)(x))))  # what safe_where exists to avoid


def test_logsumexp_masked():
    x = jnp.log(jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    mask = jnp.array([[True, False, True], [False, False, False]])
    out = nx.logsumexp_masked(x, mask)
    np.testing.assert_allclose(out[0], math.log(4.0), rtol=1e-6)
    assert float(out[1]) == -math.inf
    g = jax.grad(lambda v: jnp.sum(jnp.where(jnp.isfinite(nx.logsumexp_masked(v, mask)), 1.0, 0.0)))(x)
    assert bool(jnp.all(jnp.isfinite(g)))
    g = jax.grad(lambda v: nx.logsumexp_masked(v, mask)[0])(x)
    np.testing.assert_allclose(g[0], [0.25, 0.0, 0.75], rtol=1e-6)


def test_log_binomials():
    for n in (0, 1, 5, 64, 1024):
        row = nx.log_binomial_row(n)
        assert row[0] == 0.0 and row[-1] == 0.0 and row.shape == (n + 1,)
    np.testing.assert_allclose(
        np.exp(nx.log_binomial_row(10)), [math.comb(10, i) for i in range(11)], rtol=1e-12
    )
    np.testing.assert_allclose(
        nx.log_comb(jnp.array([10.0, 10.0]), jnp.array([3.0, 11.0])), [math.log(120), -math.inf], rtol=1e-6
    )


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (jnp.bfloat16, jnp.float32),
        (jnp.float16, jnp.float32),
        (jnp.float32, jnp.float32),
        (jnp.int32, jnp.float32),
    ],
)
def test_dtype_policy(dtype, expected):
    assert nx.compute_dtype(jnp.zeros(2, dtype)) == expected


def test_dtype_policy_keeps_float64(x64):
    assert nx.as_float(jnp.zeros(2, jnp.float64)).dtype == jnp.float64


@pytest.mark.parametrize(
    ("value", "message"),
    [(True, "Python integer"), (1.0, "Python integer"), (-1, r"\[>= 0\]|>= 0"), ("3", "Python integer")],
)
def test_check_int(value, message):
    with pytest.raises(ValueError, match=message):
        nx.check_int("n", value, minimum=0)


def test_check_choice_lists_options():
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'none', 'sum'\], got 'avg'"):
        nx.check_choice("reduction", "avg", ("none", "mean", "sum"))
