"""Property-based checks of the objectives (hypothesis, derandomised 'ci' profile from conftest).

Every quantity a property needs is computed by one jitted function per budget (and dtype), so the file pays
a few compiles and each hypothesis example costs one dispatch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cat_jax import objectives as obj

# (N, k): CE (1, 1), Pass@N (k = 1), Majority around the pivot, and the k = N branch. Each budget costs
# one compile per dtype (~1-3 s on 2 cores), so float64 checks a subset.
BUDGETS = [(1, 1), (4, 1), (8, 3), (64, 26), (128, 65), (16, 16)]
BUDGETS64 = [(1, 1), (4, 1), (8, 3), (128, 65), (16, 16)]
SIZE = 16
LOGP = hnp.arrays(np.float32, (SIZE,), elements=st.floats(-1e4, 0.0, width=32))
PROBS = hnp.arrays(np.float32, (SIZE,), elements=st.floats(0.0, 1.0, width=32))
LOGP64 = hnp.arrays(np.float64, (SIZE,), elements=st.floats(-1e4, 0.0))
# Open interval: at p in {0, 1} the closed forms use their continuous extensions, autodiff does not.
PROBS64 = hnp.arrays(np.float64, (SIZE,), elements=st.floats(1e-8, 1 - 1e-8))


def _value_and_grad(fn, x):
    """Elementwise values and derivatives in one backward pass (the functions are elementwise)."""
    (_, values), grad = jax.value_and_grad(lambda y: (jnp.sum(fn(y)), fn(y)), has_aux=True)(x)
    return values, grad


@functools.cache
def bundle(n, k):
    """All per-element quantities at budget (n, k) of ``log p`` values ``lp`` and probabilities ``p``.

    The log-forms run once on ``lp`` and ``log p`` together (one graph, fewer compiles' worth of XLA).
    """
    maj = obj.get("majority", n=n, k=k)

    @jax.jit
    def f(lp, p):
        safe = jnp.where(p > 1e-30, p, 0.5)  # the log of a float32 subnormal loses its digits
        x = jnp.concatenate([lp, jnp.log(safe)])
        loss, grad = _value_and_grad(lambda y: maj.sft_loss(y, reduction="none"), x)
        w_lp, log_b = maj.sft_weight_from_logp(x), maj.log_probability(x)
        b, db = _value_and_grad(maj.probability, jnp.concatenate([p, safe]))
        out = {"loss": loss[:SIZE], "grad": grad[:SIZE], "w_lp": w_lp[:SIZE], "w_lp_of_p": w_lp[SIZE:]}
        out |= {"log_b_of_p": log_b[SIZE:], "probability": b[:SIZE], "b_of_safe": b[SIZE:]}
        out |= {"d_probability": db[:SIZE], "sft_weight": maj.sft_weight(p), "rl_weight": maj.rl_weight(p)}
        out["passn"] = obj.passn_probability(p, n=n)
        out["passn_more"] = obj.passn_probability(p, n=n + 1)
        out["passn_w"] = obj.passn_sft_weight(p, n=n)
        out["passn_w_more"] = obj.passn_sft_weight(p, n=n + 1)
        out["b_more"] = obj.majority_probability(p, n=n + 1, k=k)
        if k < n:
            out["b_harder"] = obj.majority_probability(p, n=n, k=k + 1)
        return out

    return f


def run(n, k, lp=None, p=None, dtype=np.float32):
    lp = np.zeros(SIZE, dtype) if lp is None else lp
    p = np.full(SIZE, 0.5, dtype) if p is None else p
    return {
        key: np.asarray(v, np.float64) for key, v in bundle(n, k)(jnp.asarray(lp), jnp.asarray(p)).items()
    }


@given(lp=LOGP, budget=st.sampled_from(BUDGETS))
def test_finite_loss_weight_and_gradient(lp, budget):
    n, k = budget
    out = run(n, k, lp=lp)
    loss, grad, w = out["loss"], out["grad"], out["w_lp"]
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)) and np.all(np.isfinite(w))
    assert np.all(loss >= 0)
    # w_SFT = k C(N,k) / sum_{i>=k} C(N,i) (p/(1-p))^{i-k}: at most k (its tiny-p limit), never negative.
    assert np.all((w >= 0) & (w <= k * (1 + 1e-5)))
    # Gradient identity d(-log B)/d log p = -w_SFT, to float32 accuracy.
    np.testing.assert_allclose(grad, -w, rtol=2e-3, atol=1e-6)
    if n == 1:  # N = 1 is cross-entropy: loss -log p, weight 1
        np.testing.assert_allclose(loss, -lp.astype(np.float64), rtol=1e-6)
        assert np.all(w == 1)


@given(lp=LOGP, budget=st.sampled_from(BUDGETS))
def test_loss_and_weight_monotone_in_logp(lp, budget):
    """A likelier target never costs more, and pulls no harder: -log F and w_SFT fall as log p rises."""
    out = run(*budget, lp=np.sort(lp))
    loss, w = out["loss"], out["w_lp"]
    assert np.all(np.diff(loss) <= 1e-5 * np.abs(loss[:-1]) + 1e-5)
    assert np.all(np.diff(w) <= 1e-4)


@given(p=PROBS, budget=st.sampled_from(BUDGETS))
def test_probability_forms(p, budget):
    n, k = budget
    out = run(n, k, p=p)
    for name in ("probability", "d_probability", "sft_weight", "rl_weight"):
        assert np.all(np.isfinite(out[name])) and np.all(out[name] >= 0), name
    b, s = out["probability"], out["passn"]
    assert np.all(b <= 1)
    tol = 1e-5
    # k = 1 reduces to Pass@N; at least k votes implies at least one; more votes help, a higher bar hurts.
    if k == 1:
        np.testing.assert_allclose(b, s, rtol=1e-6, atol=0)
    assert np.all(b <= s * (1 + tol) + 1e-30)
    assert np.all(b <= out["b_more"] * (1 + tol) + 1e-30)
    if k < n:
        assert np.all(out["b_harder"] <= b * (1 + tol) + 1e-30)
    # Pass@N: a larger budget succeeds more often and re-weights less (w(0) = 1 for every N).
    assert np.all(out["passn_more"] >= s * (1 - 1e-6))
    assert np.all(out["passn_w_more"] <= out["passn_w"] * (1 + tol) + 1e-30)
    # The p-form and the log p-form are separate code paths; they must give the same numbers.
    np.testing.assert_allclose(
        out["sft_weight"][p > 1e-30], out["w_lp_of_p"][p > 1e-30], rtol=2e-4, atol=2e-4
    )
    np.testing.assert_allclose(np.exp(out["log_b_of_p"]), out["b_of_safe"], rtol=2e-4, atol=1e-30)


@given(p=hnp.arrays(np.float32, (SIZE,), elements=st.floats(0.0009765625, 0.99951171875, width=32)))
def test_majority_monotone_in_p(p):
    p = np.sort(p)
    for n, k in BUDGETS:
        b = run(n, k, p=p)["probability"]
        assert np.all(np.diff(b) >= -1e-6), (n, k)


@given(lp=LOGP64, p=PROBS64, budget=st.sampled_from(BUDGETS64))
def test_float64_identities(lp, p, budget):
    """float64 stays float64, is finite on [-1e4, 0], and the identities hold to ~1e-9."""
    n, k = budget
    with jax.enable_x64(True):
        out = run(n, k, lp=lp, p=p, dtype=np.float64)
        assert bundle(n, k)(jnp.asarray(lp), jnp.asarray(p))["loss"].dtype == jnp.float64
    for key in ("loss", "grad", "w_lp"):
        assert np.all(np.isfinite(out[key])), key
    np.testing.assert_allclose(out["grad"], -out["w_lp"], rtol=1e-9, atol=1e-12)
    # w_RL = F'(p) by autodiff of F, and w_SFT F = p w_RL.
    np.testing.assert_allclose(out["d_probability"], out["rl_weight"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out["sft_weight"] * out["probability"], p * out["rl_weight"], rtol=1e-8)
