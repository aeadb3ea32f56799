"""Property-based checks of the objectives (hypothesis, derandomised 'ci' profile from conftest)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cat_jax import objectives as obj

BUDGETS = [(1, 1), (2, 1), (4, 2), (8, 3), (16, 4), (64, 26), (128, 65)]
LOGP = hnp.arrays(np.float32, (16,), elements=st.floats(-1e4, 0.0, width=32))
PROBS = hnp.arrays(np.float32, (16,), elements=st.floats(0.0, 1.0, width=32))


@functools.cache
def compiled(name, n, k):
    fn = getattr(obj, name)
    kw = {"n": n} if name.startswith("passn") else {"n": n, "k": k}
    f = functools.partial(fn, **kw)
    if name.endswith("sft_loss"):
        f = functools.partial(f, reduction="none")
    return jax.jit(f)


@functools.cache
def compiled_loss_grad(n, k):
    return jax.jit(jax.vmap(jax.value_and_grad(lambda x: obj.majority_sft_loss(x, n=n, k=k))))


@given(lp=LOGP, budget=st.sampled_from(BUDGETS))
def test_finite_loss_weight_and_gradient(lp, budget):
    n, k = budget
    loss, grad = compiled_loss_grad(n, k)(jnp.asarray(lp))
    w = compiled("majority_sft_weight_from_logp", n, k)(jnp.asarray(lp))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(w))
    assert np.all(np.asarray(loss) >= 0) and np.all(np.asarray(w) >= 0)
    # Gradient identity d(-log B)/d log p = -w_SFT, to float32 accuracy.
    np.testing.assert_allclose(grad, -w, rtol=2e-3, atol=1e-6)


@given(p=PROBS, budget=st.sampled_from(BUDGETS))
def test_values_in_range_and_k1_reduction(p, budget):
    n, k = budget
    p = jnp.asarray(p)
    b = compiled("majority_probability", n, k)(p)
    assert np.all((np.asarray(b) >= 0) & (np.asarray(b) <= 1))
    np.testing.assert_allclose(
        compiled("majority_probability", n, 1)(p), compiled("passn_probability", n, 1)(p), rtol=1e-6, atol=0
    )
    # B_{N,k} never exceeds Pass@N: at least k votes implies at least one.
    assert np.all(np.asarray(b) <= np.asarray(compiled("passn_probability", n, 1)(p)) * (1 + 1e-5) + 1e-30)


@given(
    p=hnp.arrays(np.float32, (16,), elements=st.floats(0.0009765625, 0.99951171875, width=32)),
    n=st.integers(1, 63),
)
def test_monotone_in_budget(p, n):
    p = jnp.asarray(p)
    s_n, s_n1 = (compiled("passn_probability", m, 1)(p) for m in (n, n + 1))
    w_n, w_n1 = (compiled("passn_sft_weight", m, 1)(p) for m in (n, n + 1))
    assert np.all(np.asarray(s_n1) >= np.asarray(s_n) * (1 - 1e-6))
    assert np.all(np.asarray(w_n1) <= np.asarray(w_n) * (1 + 1e-5) + 1e-30)


@given(p=hnp.arrays(np.float32, (16,), elements=st.floats(0.0009765625, 0.99951171875, width=32)))
def test_majority_monotone_in_p(p):
    p = jnp.sort(jnp.asarray(p))
    for n, k in BUDGETS:
        b = np.asarray(compiled("majority_probability", n, k)(p))
        assert np.all(np.diff(b) >= -1e-6), (n, k)
