"""CAT objectives against 80-digit mpmath references, SPEC §2.9 tables and the properties of SPEC §6."""

import functools
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from jax.test_util import check_grads

from cat_jax import numerics as nx
from cat_jax import objectives as obj

mpmath.mp.dps = 80

P_GRID = [0.0, 1e-12, 0.01, 0.2, 0.5, 0.99, 1 - 1e-9, 1.0]
LOGP_GRID = [math.log(1e-300), -1e4, -60.0, -2.0, math.log(0.5), -0.01, -1e-9, 0.0]
PASSN_NS = [1, 2, 4, 16, 64, 128, 1024]
MAJORITY_NKS = [(1, 1), (4, 1), (4, 2), (8, 3), (8, 5), (16, 4), (16, 16), (64, 26), (128, 65), (1024, 513)]
TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}


# ----------------------------------------------------------------------------- references


@functools.cache
def _binom(n, i):
    return mpmath.binomial(n, i)


def _pq(x, from_log):
    """Exact (p, 1 - p) from an mpf probability or log-probability (1 - p without cancellation)."""
    if from_log:
        return mpmath.exp(x), -mpmath.expm1(x)
    return x, 1 - x


@functools.cache
def ref_passn(x, n, from_log=False):
    """(S, log S, w_SFT, w_RL) at an exact mpf p (or log p), limits at the endpoints."""
    p, q = _pq(mpmath.mpf(x), from_log)
    if p == 0:
        return 0, -mpmath.inf, 1, n
    if q == 0:
        return 1, 0, (1 if n == 1 else 0), (1 if n == 1 else 0)
    fail = q**n
    s = -mpmath.expm1(n * mpmath.log1p(-p)) if p < 0.5 else 1 - fail
    log_s = mpmath.log(s) if p < 0.5 else mpmath.log1p(-fail)
    w_rl = n * q ** (n - 1)
    return s, log_s, p * w_rl / s, w_rl


@functools.cache
def ref_majority(x, n, k, from_log=False):
    """(B, log B, w_SFT, w_RL) of the fixed-threshold surrogate at an exact mpf p (or log p)."""
    p, q = _pq(mpmath.mpf(x), from_log)
    if p == 0:
        return 0, -mpmath.inf, k, (n if k == 1 else 0)
    if q == 0:
        return 1, 0, (n if k == n else 0), (n if k == n else 0)
    terms = [_binom(n, i) * p**i * q ** (n - i) for i in range(n + 1)]
    upper, lower = mpmath.fsum(terms[k:]), mpmath.fsum(terms[:k])
    log_b = mpmath.log(upper) if upper < 0.5 else mpmath.log1p(-lower)
    w_rl = k * _binom(n, k) * p ** (k - 1) * q ** (n - k)
    return upper, log_b, p * w_rl / upper, w_rl


def assert_close(ours, ref, dtype, what):
    ours = np.asarray(ours, np.float64)
    tiny = float(jnp.finfo(dtype).tiny)
    for o, r, label in zip(ours.ravel(), ref, what, strict=True):
        r = float(r) if abs(r) > mpmath.mpf(10) ** -310 else 0.0
        assert np.isfinite(o) or o == r, f"{label}: got {o}"
        if abs(r) < tiny:  # below the dtype's normal range: only (sub)normal-sized noise is acceptable
            assert abs(o) <= 2 * tiny, f"{label}: got {o}, reference {r}"
            continue
        if math.isinf(r):
            assert o == r, f"{label}: got {o}, reference {r}"
            continue
        rel = abs(o - r) / abs(r)
        assert rel <= TOL[dtype], f"{label}: got {o!r}, reference {r!r}, rel err {rel:.2e}"


def exact_inputs(values, dtype):
    """Inputs rounded to ``dtype`` and the same numbers as exact mpf for the reference."""
    x = np.asarray(values, np.float64).astype(jnp.dtype(dtype))
    return jnp.asarray(x), [mpmath.mpf(float(v)) for v in x]


@pytest.fixture(params=["f64", "f32"])
def dtype(request):
    """Run a test in float64 (x64 enabled) and in float32."""
    if request.param == "f64":
        with jax.enable_x64(True):
            yield jnp.float64
    else:
        yield jnp.float32


def _f32_ok(n):
    # float32 carries ~7 digits: log C(1024, 512) ~ 707 alone has an absolute rounding error of ~4e-5, so the
    # 1e-5 relative target is attainable in float32 only while the log-space terms stay moderate.
    return n <= 128


@pytest.mark.parametrize("n", PASSN_NS)
def test_passn_matches_high_precision(n, dtype):
    if dtype is jnp.float32 and not _f32_ok(n):
        pytest.skip("float32 accuracy for N > 128 is covered by test_float32_large_budget_accuracy")
    p, p_mp = exact_inputs(P_GRID, dtype)
    refs = [ref_passn(v, n) for v in p_mp]
    labels = [f"N={n} p={float(v):.3g}" for v in p_mp]
    assert_close(obj.passn_probability(p, n=n), [r[0] for r in refs], dtype, labels)
    assert_close(obj.passn_sft_weight(p, n=n), [r[2] for r in refs], dtype, labels)
    assert_close(obj.passn_rl_weight(p, n=n), [r[3] for r in refs], dtype, labels)

    lp, lp_mp = exact_inputs(LOGP_GRID, dtype)
    refs = [ref_passn(v, n, True) for v in lp_mp]
    labels = [f"N={n} log p={float(v):.4g}" for v in lp_mp]
    assert_close(obj.passn_log_probability(lp, n=n), [r[1] for r in refs], dtype, labels)
    assert_close(obj.passn_sft_loss(lp, n=n, reduction="none"), [-r[1] for r in refs], dtype, labels)
    assert_close(obj.passn_sft_weight_from_logp(lp, n=n), [r[2] for r in refs], dtype, labels)


@pytest.mark.parametrize(("n", "k"), MAJORITY_NKS)
def test_majority_matches_high_precision(n, k, dtype):
    if dtype is jnp.float32 and not _f32_ok(n):
        pytest.skip("float32 accuracy for N > 128 is covered by test_float32_large_budget_accuracy")
    p, p_mp = exact_inputs(P_GRID, dtype)
    refs = [ref_majority(v, n, k) for v in p_mp]
    labels = [f"N={n} k={k} p={float(v):.3g}" for v in p_mp]
    assert_close(obj.majority_probability(p, n=n, k=k), [r[0] for r in refs], dtype, labels)
    assert_close(obj.majority_sft_weight(p, n=n, k=k), [r[2] for r in refs], dtype, labels)
    assert_close(obj.majority_rl_weight(p, n=n, k=k), [r[3] for r in refs], dtype, labels)

    lp, lp_mp = exact_inputs(LOGP_GRID, dtype)
    refs = [ref_majority(v, n, k, True) for v in lp_mp]
    labels = [f"N={n} k={k} log p={float(v):.4g}" for v in lp_mp]
    assert_close(obj.majority_log_probability(lp, n=n, k=k), [r[1] for r in refs], dtype, labels)
    assert_close(obj.majority_sft_weight_from_logp(lp, n=n, k=k), [r[2] for r in refs], dtype, labels)


def test_float32_large_budget_accuracy():
    """N = 1024 in float32: every value stays within a few times eps * |log-space terms| (~1e-4)."""
    n, k = 1024, 513
    lp, lp_mp = exact_inputs(LOGP_GRID, jnp.float32)
    p, p_mp = exact_inputs(P_GRID, jnp.float32)
    got = {
        "logS": (obj.passn_log_probability(lp, n=n), [ref_passn(v, n, True)[1] for v in lp_mp]),
        "wS": (obj.passn_sft_weight(p, n=n), [ref_passn(v, n)[2] for v in p_mp]),
        "logB": (
            obj.majority_log_probability(lp, n=n, k=k),
            [ref_majority(v, n, k, True)[1] for v in lp_mp],
        ),
        "wB": (obj.majority_sft_weight(p, n=n, k=k), [ref_majority(v, n, k)[2] for v in p_mp]),
        "wRL": (obj.majority_rl_weight(p, n=n, k=k), [ref_majority(v, n, k)[3] for v in p_mp]),
    }
    for name, (ours, ref) in got.items():
        for o, r in zip(np.asarray(ours, np.float64), ref, strict=True):
            r = float(r)
            if abs(r) < 1e-30 or math.isinf(r):
                assert abs(o) < 1e-30 or o == r, (name, o, r)
            else:
                assert abs(o - r) <= 2e-4 * abs(r), (name, o, r)


# ----------------------------------------------------------------------------- SPEC §2.9 tables

PASSN_TABLE = [
    (4, 0.01, 0.03940399, 3.233888199, 0.9849753794, 3.881196),
    (4, 0.1, 0.3439, 1.067404362, 0.8479209072, 2.916),
    (4, 0.3, 0.7599, 0.2745684333, 0.5416502171, 1.372),
    (16, 0.01, 0.1485422289, 1.906885991, 0.9263987605, 13.76093367),
    (16, 0.1, 0.8146979811, 0.2049378097, 0.4043532929, 3.294258114),
    (16, 0.3, 0.9966767069, 0.00332882746, 0.02286427995, 0.07596098416),
    (64, 0.001, 0.06202503617, 2.780217166, 0.9688102076, 60.09048817),
    (64, 0.01, 0.4744035125, 0.7456970273, 0.7162247719, 33.97795475),
    (64, 0.1, 0.9988209815, 0.001179714047, 0.008394027969, 0.08384131255),
]
MAJORITY_TABLE = [
    (8, 3, 0.05, 0.00578821793, 5.151930819, 2.807323408, 0.3249879937),
    (8, 3, 0.2, 0.20308224, 1.594144259, 2.168589041, 2.2020096),
    (8, 3, 0.5, 0.85546875, 0.1561057147, 0.7671232877, 1.3125),
    (8, 3, 0.8, 0.99876864, 0.001232118747, 0.02755905512, 0.0344064),
    (16, 4, 0.2, 0.4018656745, 0.9116373893, 1.991820939, 4.002222325),
    (16, 4, 0.5, 0.989364624, 0.01069233581, 0.1122781042, 0.2221679688),
    (64, 26, 0.2, 0.0001273222624, 8.968789186, 17.12165708, 0.01089984058),
    (64, 26, 0.5, 0.9482890608, 0.0530959067, 0.8941086274, 1.695746861),
    (4, 3, 0.5, 0.3125, 1.16315081, 2.4, 1.5),
    (8, 5, 0.5, 0.36328125, 1.012577951, 3.010752688, 2.1875),
]


@pytest.mark.usefixtures("x64")
def test_spec_tables():
    for n, p, s, loss, w_sft, w_rl in PASSN_TABLE:
        lp = jnp.log(jnp.float64(p))
        np.testing.assert_allclose(
            [
                obj.passn_probability(p, n=n),
                obj.passn_sft_loss(lp, n=n),
                obj.passn_sft_weight(p, n=n),
                obj.passn_sft_weight_from_logp(lp, n=n),
                obj.passn_rl_weight(p, n=n),
            ],
            [s, loss, w_sft, w_sft, w_rl],
            rtol=1e-8,
        )
    for n, k, p, b, loss, w_sft, w_rl in MAJORITY_TABLE:
        lp = jnp.log(jnp.float64(p))
        np.testing.assert_allclose(
            [
                obj.majority_probability(p, n=n, k=k),
                obj.majority_sft_loss(lp, n=n, k=k),
                obj.majority_sft_weight(p, n=n, k=k),
                obj.majority_sft_weight_from_logp(lp, n=n, k=k),
                obj.majority_rl_weight(p, n=n, k=k),
            ],
            [b, loss, w_sft, w_sft, w_rl],
            rtol=1e-8,
        )
    for n, q, w in [
        (2, 0.1, 0.2),
        (2, 0.5, 1),
        (2, 0.9, 1.8),
        (4, 0.5, 0.5),
        (4, 0.9, 2.916),
        (8, 0.5, 0.0625),
    ]:
        np.testing.assert_allclose(obj.bon_rl_weight(jnp.float64(q), n=n), w, rtol=1e-12)
    np.testing.assert_allclose(obj.bon_rl_weight(jnp.float64(0.9), n=8), 3.8263752, rtol=1e-7)


def test_majority_rl_coefficient_regression():
    # N C(N-1, k-1), not N C(N, k) (which would give 3.5).
    assert float(obj.majority_rl_weight(0.5, n=8, k=3)) == pytest.approx(1.3125, rel=1e-6)


# ----------------------------------------------------------------------------- gradients and properties


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("n", "k"), [(1, 1), (4, 1), (16, 1), (8, 3), (16, 4), (64, 26), (16, 16)])
def test_gradient_identity(n, k):
    """d(-log F)/d(log p) = -w_SFT, the identity that makes CAT SFT a re-weighted CE (SPEC §1.2)."""
    lp = jnp.array([-60.0, -12.0, -2.0, -0.5, -0.01], jnp.float64)
    grad = jax.vmap(jax.grad(lambda x: obj.majority_sft_loss(x, n=n, k=k)))(lp)
    np.testing.assert_allclose(grad, -obj.majority_sft_weight_from_logp(lp, n=n, k=k), rtol=2e-10)
    if k == 1:
        grad = jax.vmap(jax.grad(lambda x: obj.passn_sft_loss(x, n=n)))(lp)
        np.testing.assert_allclose(grad, -obj.passn_sft_weight_from_logp(lp, n=n), rtol=2e-10)


@pytest.mark.usefixtures("x64")
def test_check_grads_interior():
    lp = jnp.array([-5.0, -1.0, -0.3, -0.05], jnp.float64)
    p = jnp.array([0.05, 0.3, 0.7, 0.95], jnp.float64)
    for fn, x, kw, order in [
        (obj.majority_log_probability, lp, {"n": 16, "k": 4}, 2),
        (obj.passn_log_probability, lp, {"n": 8}, 2),
        (obj.passn_sft_weight_from_logp, lp, {"n": 16}, 1),
        (obj.majority_sft_weight_from_logp, lp, {"n": 8, "k": 3}, 1),
        (obj.majority_probability, p, {"n": 8, "k": 3}, 1),
        (obj.majority_rl_weight, p, {"n": 8, "k": 3}, 1),
        (obj.passn_sft_weight, p, {"n": 8}, 1),
    ]:
        check_grads(jax.jit(functools.partial(fn, **kw)), (x,), order=order, modes=("rev",))


@pytest.mark.usefixtures("x64")
def test_majority_rl_weight_is_derivative_of_tail_polynomial():
    p = jnp.linspace(0.0, 1.0, 11, dtype=jnp.float64)
    for n in range(1, 9):
        for k in range(1, n + 1):

            def tail(x, n=n, k=k):
                return sum(math.comb(n, i) * x**i * (1 - x) ** (n - i) for i in range(k, n + 1))

            np.testing.assert_allclose(
                obj.majority_rl_weight(p, n=n, k=k), jax.vmap(jax.grad(tail))(p), rtol=1e-12, atol=1e-12
            )


@pytest.mark.parametrize(("n", "k"), [(1, 1), (64, 1), (1024, 1), (64, 26), (1024, 513)])
def test_finite_everywhere(n, k, dtype):
    """Loss, weight and gradient are finite on log p in [-1e4, 0] (no clamping anywhere)."""
    lp = jnp.concatenate([-jnp.logspace(4, -12, 60), jnp.zeros(1)]).astype(dtype)

    @jax.jit
    def everything(lp):
        loss = lambda x: obj.majority_sft_loss(x, n=n, k=k, reduction="sum")
        value, grad = jax.value_and_grad(loss)(lp)
        return {"loss": value, "grad": grad, "w_sft": obj.majority_sft_weight_from_logp(lp, n=n, k=k)}

    for name, v in everything(lp).items():
        assert bool(jnp.all(jnp.isfinite(v))), name


@pytest.mark.parametrize(("n", "k"), [(8, 3), (1024, 513)])
def test_probability_forms_finite_with_finite_gradients(n, k):
    p = jnp.linspace(0, 1, 41)

    @jax.jit
    def everything(p):
        out = {}
        for f in (obj.majority_probability, obj.majority_sft_weight, obj.majority_rl_weight):
            out[f.__name__] = f(p, n=n, k=k)
            out["d" + f.__name__] = jax.grad(lambda x, f=f: jnp.sum(f(x, n=n, k=k)))(p)
        return out

    for name, v in everything(p).items():
        assert bool(jnp.all(jnp.isfinite(v))), name


@pytest.mark.parametrize("n", [1, 4, 64])
def test_passn_tiny_and_certain_endpoints(n, dtype):
    lp = jnp.array([-1000.0, -1e4], dtype)
    loss = obj.passn_sft_loss(lp, n=n, reduction="none")
    np.testing.assert_allclose(loss, -lp - math.log(n), rtol=1e-12 if dtype is jnp.float64 else 1e-6)
    np.testing.assert_array_equal(obj.passn_sft_weight_from_logp(lp, n=n), 1.0)
    np.testing.assert_array_equal(jax.grad(lambda x: obj.passn_sft_loss(x, n=n, reduction="sum"))(lp), -1.0)
    zero = jnp.zeros((), dtype)
    assert float(obj.passn_sft_loss(zero, n=n)) == 0.0
    assert float(jax.grad(lambda x: obj.passn_sft_loss(x, n=n))(zero)) == (-1.0 if n == 1 else 0.0)


def test_majority_tiny_asymptote(dtype):
    lp = jnp.array([-1000.0, -1e4], dtype)
    for n, k in [(8, 3), (64, 26), (1024, 513)]:
        loss = obj.majority_sft_loss(lp, n=n, k=k, reduction="none")
        expected = -k * np.asarray(lp, np.float64) - math.log(math.comb(n, k))
        np.testing.assert_allclose(loss, expected, rtol=1e-12 if dtype is jnp.float64 else 1e-6)
        grad = jax.jit(jax.grad(lambda x, n=n, k=k: obj.majority_sft_loss(x, n=n, k=k, reduction="sum")))(lp)
        np.testing.assert_allclose(grad, -k, rtol=1e-6)


@pytest.mark.usefixtures("x64")
def test_majority_pivot_continuity():
    for n, k in [(8, 5), (64, 26), (128, 65)]:
        pivot = math.log(k / (n + 1))
        lp = jnp.array([np.nextafter(pivot, -np.inf), pivot, np.nextafter(pivot, 0)], jnp.float64)
        f = functools.partial(obj.majority_log_probability, n=n, k=k)
        vals = jax.jit(f)(lp)
        np.testing.assert_allclose(vals, vals[1], rtol=1e-11)
        grads = jax.jit(jax.vmap(jax.grad(f)))(lp)
        np.testing.assert_allclose(grads, grads[1], rtol=1e-11)


@pytest.mark.usefixtures("x64")
def test_k1_equals_passn_and_monotone_in_n():
    p = jnp.linspace(0.001, 0.999, 101, dtype=jnp.float64)
    lp = jnp.log(p)
    for n in (1, 2, 5, 16):
        np.testing.assert_array_equal(obj.majority_probability(p, n=n, k=1), obj.passn_probability(p, n=n))
        np.testing.assert_array_equal(obj.majority_sft_loss(lp, n=n, k=1), obj.passn_sft_loss(lp, n=n))
        np.testing.assert_array_equal(obj.majority_rl_weight(p, n=n, k=1), obj.passn_rl_weight(p, n=n))
    for n in range(1, 64):
        assert bool(jnp.all(obj.passn_probability(p, n=n + 1) >= obj.passn_probability(p, n=n)))
        assert bool(jnp.all(obj.passn_sft_weight(p, n=n + 1) <= obj.passn_sft_weight(p, n=n)))


@pytest.mark.usefixtures("x64")
def test_bon_weight_mirrors_passn_rl_weight():
    q = jnp.linspace(0, 1, 21, dtype=jnp.float64)
    for n in (1, 2, 4, 8, 32):
        np.testing.assert_allclose(obj.bon_rl_weight(1 - q, n=n), obj.passn_rl_weight(q, n=n), rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_from_success_fn_matches_closed_forms():
    p = jnp.linspace(0.01, 0.99, 50, dtype=jnp.float64)
    lp = jnp.log(p)
    for n in (1, 4, 16, 64):
        # The textbook form: its autodiff derivative n (1-x)^(n-1) is accurate on this grid (an expm1 form
        # would not be: JAX differentiates expm1 as expm1(x) + 1, which cancels near p = 1).
        derived = obj.from_success_fn(lambda x, n=n: 1 - (1 - x) ** n)
        closed = obj.get("passn", n=n)
        for field, x in [("rl_weight", p), ("sft_weight", p), ("sft_weight_from_logp", lp), ("sft_loss", lp)]:
            kw = {"reduction": "none"} if field == "sft_loss" else {}
            # -log(1 - (1-p)^n) cancels near p = 1 in the textbook form, hence the tiny atol on the loss.
            atol = 1e-14 if field == "sft_loss" else 0
            np.testing.assert_allclose(
                getattr(derived, field)(x, **kw),
                getattr(closed, field)(x, **kw),
                rtol=1e-9,
                atol=atol,
                err_msg=field,
            )
    for n, k in [(4, 2), (8, 3), (8, 5), (16, 4)]:

        def tail(x, n=n, k=k):
            return sum(math.comb(n, i) * x**i * (1 - x) ** (n - i) for i in range(k, n + 1))

        # The explicit polynomial's autodiff cancels where F' is tiny (p near 1), so this part stops at 0.7.
        pm = jnp.linspace(0.01, 0.7, 40, dtype=jnp.float64)
        derived, closed = obj.from_success_fn(tail), obj.get("majority", n=n, k=k)
        for field, x in [("rl_weight", pm), ("sft_weight", pm), ("sft_weight_from_logp", jnp.log(pm))]:
            np.testing.assert_allclose(getattr(derived, field)(x), getattr(closed, field)(x), rtol=1e-9)


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_branchy_functions_agree_under_jit(self):
        lp = jnp.array([-1e4, -50.0, -3.0, -0.7, -0.69, -1e-6, 0.0])
        p = jnp.array([0.0, 1e-7, 0.1, 0.5, 0.9, 1.0])
        for name, x, kw in [
            ("passn_log_probability", lp, {"n": 16}),
            ("passn_sft_weight_from_logp", lp, {"n": 16}),
            ("passn_sft_weight", p, {"n": 16}),
            ("majority_log_probability", lp, {"n": 16, "k": 4}),
            ("majority_sft_weight_from_logp", lp, {"n": 16, "k": 4}),
            ("majority_probability", p, {"n": 16, "k": 4}),
            ("majority_rl_weight", p, {"n": 16, "k": 4}),
        ]:
            fn = getattr(obj, name)
            got = self.variant(functools.partial(fn, **kw))(x)
            np.testing.assert_allclose(got, fn(x, **kw), rtol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------- dtype, shape, validation


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_computes_in_float32(dtype):
    lp = jnp.array([-3.0, -0.5], dtype)
    p = jnp.array([0.1, 0.5], dtype)
    assert obj.passn_sft_loss(lp, n=4).dtype == jnp.float32
    assert obj.majority_log_probability(lp, n=8, k=3).dtype == jnp.float32
    assert obj.majority_sft_weight(p, n=8, k=3).dtype == jnp.float32
    assert obj.bon_rl_weight(p, n=4).dtype == jnp.float32


@pytest.mark.usefixtures("x64")
def test_float64_kept_and_shapes_preserved():
    lp = -jnp.abs(jax.random.normal(jax.random.key(0), (2, 3, 4), jnp.float64))
    for fn in (obj.passn_log_probability, obj.passn_sft_weight_from_logp):
        out = fn(lp, n=4)
        assert out.shape == lp.shape and out.dtype == jnp.float64
    out = obj.majority_log_probability(lp, n=8, k=3)
    assert out.shape == lp.shape and out.dtype == jnp.float64
    assert obj.majority_sft_loss(lp, n=8, k=3, reduction="none").shape == lp.shape
    np.testing.assert_allclose(
        obj.majority_sft_loss(lp, n=8, k=3, reduction="sum"),
        jnp.sum(obj.majority_sft_loss(lp, n=8, k=3, reduction="none")),
    )


def test_inputs_not_mutated():
    p = np.array([0.1, 0.5, 0.9])
    before = p.copy()
    obj.majority_sft_weight(p, n=8, k=3, validate=True)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: obj.passn_probability(0.5, n=0),
            r"n must be an integer in \[>= 1\]|n must be an integer in >= 1",
        ),
        (lambda: obj.passn_probability(0.5, n=True), "n must be a Python integer"),
        (lambda: obj.majority_probability(0.5, n=4, k=5), r"k must be an integer in \[1, 4\]"),
        (lambda: obj.majority_probability(0.5, n=4, k=0), r"k must be an integer in \[1, 4\]"),
        (lambda: obj.passn_sft_loss(-1.0, n=4, reduction="avg"), "reduction must be one of"),
        (lambda: obj.get("pass@n", n=4), "strategy must be one of"),
        (lambda: obj.get("majority", n=4), "strategy 'majority' got budgets"),
        (lambda: obj.passn_probability(1.5, n=4, validate=True), r"p must lie in \[0, 1\]"),
        (lambda: obj.passn_probability(jnp.nan, n=4, validate=True), r"p must lie in \[0, 1\]"),
        (lambda: obj.passn_sft_loss(0.3, n=4, validate=True), "finite log-probability <= 0"),
        (lambda: obj.majority_log_probability(-jnp.inf, n=4, k=2, validate=True), "finite log-probability"),
        (lambda: obj.bon_rl_weight(-0.1, n=4, validate=True), r"q must lie in \[0, 1\]"),
        (
            lambda: jax.jit(lambda x: obj.passn_probability(x, n=4, validate=True))(0.5),
            "validate=True needs a concrete p",
        ),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_float_budget_rejected():
    # Under the tests' beartype hook the annotation `n: int` rejects 2.0 first; without it, our check does.
    with pytest.raises(Exception, match="n"):
        obj.passn_probability(0.5, n=2.0)
    with pytest.raises(ValueError, match="n must be a Python integer"):
        nx.check_int("n", 2.0, minimum=1)
    with pytest.raises(Exception, match="success_fn"):
        obj.from_success_fn(3.0)


def test_out_of_domain_gives_nan_not_a_clamped_value():
    """Without validate=True, out-of-domain inputs give NaN (a trainer's finite guard stops), not a clamp."""
    bad_p = jnp.array([-0.1, 1.5, jnp.nan])
    for fn, kw in [
        (obj.passn_probability, {"n": 4}),
        (obj.passn_probability, {"n": 1}),
        (obj.passn_sft_weight, {"n": 4}),
        (obj.passn_rl_weight, {"n": 4}),
        (obj.majority_probability, {"n": 8, "k": 3}),
        (obj.majority_sft_weight, {"n": 8, "k": 3}),
        (obj.majority_rl_weight, {"n": 8, "k": 8}),
        (obj.bon_rl_weight, {"n": 4}),
    ]:
        assert bool(jnp.all(jnp.isnan(fn(bad_p, **kw)))), fn.__name__
    bad_lp = jnp.array([0.3, jnp.nan])
    for fn, kw in [
        (obj.passn_log_probability, {"n": 4}),
        (obj.passn_sft_weight_from_logp, {"n": 4}),
        (obj.majority_log_probability, {"n": 8, "k": 3}),
        (obj.majority_sft_weight_from_logp, {"n": 8, "k": 3}),
    ]:
        assert bool(jnp.all(jnp.isnan(fn(bad_lp, **kw)))), fn.__name__
    assert bool(jnp.isnan(obj.passn_sft_loss(bad_lp, n=4)))


def test_strategies_registry():
    assert set(obj.STRATEGIES) == {"ce", "passn", "majority", "bon"}
    ce = obj.get("ce")
    lp = jnp.array([-2.0, -0.1])
    np.testing.assert_allclose(ce.sft_loss(lp, reduction="none"), -lp)
    np.testing.assert_array_equal(ce.sft_weight_from_logp(lp), 1.0)
    bon = obj.get("bon", n=4)
    np.testing.assert_allclose(bon.rl_weight(0.5), 0.5)
    np.testing.assert_allclose(bon.sft_loss(lp), obj.passn_sft_loss(lp, n=4))
    for n, k in itertools.product([4, 8], [1, 2]):
        np.testing.assert_allclose(
            obj.get("majority", n=n, k=k).probability(0.3), obj.majority_probability(0.3, n=n, k=k)
        )
