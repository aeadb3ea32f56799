"""Exact estimators vs brute-force enumeration, SPEC §3.4/§3.5 examples, invariances, jit, bad input."""

import contextlib
import functools
import itertools
import math
from collections import Counter

import chex
import jax
import numpy as np
import pytest

from cat_jax import operators as op
from cat_jax.reporting import plot_scaling_curves

# ----------------------------------------------------------------------------- brute force references


def _plurality(ids, valid, seq, ties):
    """Winner id of the ordered draw ``seq`` (first occurrence breaks ties), or None."""
    c = Counter(ids[i] for i in seq if valid[i])
    if not c:
        return None
    top = max(c.values())
    tied = [a for a in c if c[a] == top]
    if len(tied) > 1 and ties == "fail":
        return None
    return next(ids[i] for i in seq if valid[i] and ids[i] in tied)


def brute_majority(ids, correct, valid, k, ties, ordered):
    """Maj@k by enumerating every ordered draw (``ordered``) or every subset with the 1/m tie share."""
    n = len(ids)
    ok = {ids[i]: correct[i] for i in range(n) if valid[i]}
    if ordered:
        draws = list(itertools.permutations(range(n), k))
        return sum(ok[w] for s in draws if (w := _plurality(ids, valid, s, ties)) is not None) / len(draws)
    total = 0.0
    subsets = list(itertools.combinations(range(n), k))
    for s in subsets:
        c = Counter(ids[i] for i in s if valid[i])
        if not c:
            continue
        top = max(c.values())
        tied = [a for a in c if c[a] == top]
        if ties == "fail" and len(tied) > 1:
            continue
        total += sum(ok[a] for a in tied) / len(tied)
    return total / len(subsets)


def brute_pass(correct, k):
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


def brute_best(rewards, k, replacement):
    n = len(rewards)
    draws = itertools.product(range(n), repeat=k) if replacement else itertools.combinations(range(n), k)
    vals = [max(rewards[i] for i in s) for s in draws]
    return sum(vals) / len(vals)


def random_pools(n, b, seed):
    """Pools with few clusters (ties likely), invalid samples and cluster-constant correctness."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=(b, n)).astype(np.int32)
    valid = rng.random((b, n)) < 0.8
    valid[0] = False  # an all-invalid problem
    cluster_ok = rng.random((b, 4)) < 0.5
    correct = np.take_along_axis(cluster_ok, ids, axis=1)
    rewards = np.round(rng.normal(size=(b, n)), 1)  # rounding creates ties; negative values included
    return ids, correct, valid, rewards


@functools.cache
def _curves(n, ties, x64=False):
    ids, correct, valid, _ = random_pools(n, 6, seed=n)
    with jax.enable_x64(x64):
        c = op.scaling_curve(op.majority_at_k, ids, correct, valid=valid, ties=ties)
        return np.asarray(c.values, np.float64)


# ----------------------------------------------------------------------------- exact estimators


@pytest.mark.parametrize("ties", ["first", "fail"])
@pytest.mark.parametrize("n", [5, 7])
def test_majority_equals_enumeration_of_ordered_draws(n, ties):
    ids, correct, valid, _ = random_pools(n, 6, seed=n)
    got = _curves(n, ties)
    for b in range(ids.shape[0]):
        for k in range(1, n + 1):
            want = brute_majority(ids[b], correct[b], valid[b], k, ties, ordered=True)
            assert got[b, k - 1] == pytest.approx(want, abs=2e-6), (b, k)


@pytest.mark.parametrize("ties", ["first", "fail"])
def test_majority_equals_enumeration_n9_x64(ties):
    n = 9
    ids, correct, valid, _ = random_pools(n, 6, seed=n)
    got = _curves(n, ties, x64=True)
    for b in range(ids.shape[0]):
        for k in range(1, n + 1):
            want = brute_majority(ids[b], correct[b], valid[b], k, ties, ordered=False)
            assert got[b, k - 1] == pytest.approx(want, abs=1e-12), (b, k)


@pytest.mark.parametrize("n", [6, 9])
def test_pass_and_best_equal_enumeration(n):
    _, correct, _, rewards = random_pools(n, 5, seed=10 + n)
    ks = tuple(range(1, n + 1))
    p = op.scaling_curve(op.pass_at_k, correct, ks=ks).values
    bo = op.scaling_curve(op.best_of_k, rewards, ks=ks).values
    bw = op.scaling_curve(op.best_of_k, rewards, ks=ks[:4], replacement=True).values
    for b in range(correct.shape[0]):
        for k in ks:
            assert p[b, k - 1] == pytest.approx(brute_pass(correct[b], k), abs=1e-6)
            assert bo[b, k - 1] == pytest.approx(brute_best(rewards[b], k, False), abs=1e-5)
            if k <= 4:
                assert bw[b, k - 1] == pytest.approx(brute_best(rewards[b], k, True), abs=1e-5)


def test_permutation_invariance():
    ids, correct, valid, rewards = random_pools(7, 6, seed=3)
    perm = np.random.default_rng(0).permutation(7)
    for est, args, kw in [
        (op.majority_at_k, (ids, correct), {"valid": valid}),
        (op.pass_at_k, (correct,), {}),
        (op.best_of_k, (rewards,), {}),
    ]:
        a = op.scaling_curve(est, *args, **kw).values
        pargs = tuple(x[:, perm] for x in args)
        pkw = {key: v[:, perm] for key, v in kw.items()}
        np.testing.assert_allclose(op.scaling_curve(est, *pargs, **pkw).values, a, atol=2e-6)


def test_k1_is_mean_and_kn_is_apply_form():
    n = 7
    ids, correct, valid, rewards = random_pools(n, 6, seed=n)  # the pools of _curves(n, ...)
    np.testing.assert_allclose(op.pass_at_k(correct, k=1), correct.mean(1), rtol=1e-6)
    np.testing.assert_allclose(op.best_of_k(rewards, k=1), rewards.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(op.best_of_k(rewards, k=1, replacement=True), rewards.mean(1), atol=1e-5)
    for ties in ("first", "fail"):
        np.testing.assert_allclose(_curves(n, ties)[:, 0], (correct & valid).mean(1), atol=1e-6)
    assert (np.asarray(op.pass_at_k(correct, k=n)) == np.asarray(op.pass_at_n(correct))).all()
    np.testing.assert_allclose(op.best_of_k(rewards, k=n), op.best_of_n(rewards)[1], rtol=1e-6)
    winner, has = op.majority_vote(ids, valid=valid, ties="fail")
    hit = np.asarray(has) & np.array(
        [
            correct[b][list(ids[b]).index(w)] if h else False
            for b, (w, h) in enumerate(zip(np.asarray(winner), np.asarray(has), strict=True))
        ]
    )
    np.testing.assert_allclose(_curves(n, "fail")[:, -1], hit.astype(float), atol=1e-6)


def test_full_pool_tie_is_half_and_distinct_correct_forms_are_not_pooled():
    # Problem 0: a full-pool tie between a correct and a wrong answer. Problem 1: "1/2" x2 and "0.5" x2 are
    # both correct but different answers, "3" x3 is wrong and wins the plurality.
    ids = np.array([[1, 1, 1, 2, 2, 2, 3], [1, 1, 2, 2, 3, 3, 3]], np.int32)
    ok = np.array([[True] * 3 + [False] * 4, [True] * 4 + [False] * 3])
    np.testing.assert_allclose(op.majority_at_k(ids, ok, k=7), [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(op.majority_at_k(ids, ok, k=7, ties="fail"), [0.0, 0.0], atol=1e-6)
    assert np.asarray(op.pass_at_k(ok, k=7)).tolist() == [1.0, 1.0]


def test_spec_examples():
    def pool(n, c):
        return np.arange(n)[None, :] < c

    assert float(op.pass_at_k(pool(4, 1), k=2)[0]) == pytest.approx(0.5, rel=1e-6)
    assert float(op.pass_at_k(pool(64, 5), k=16)[0]) == pytest.approx(0.7754211679, rel=1e-6)
    assert float(op.pass_at_k(pool(64, 10), k=8)[0]) == pytest.approx(0.7649283966, rel=1e-6)
    # A small value keeps its digits (1 - (1 - x) in float32 would keep ~3).
    assert float(op.pass_at_k(pool(100_000, 1), k=2)[0]) == pytest.approx(2e-5, rel=1e-5)
    assert float(op.best_of_k(np.array([[-2.0, 4.0]]), k=2, replacement=True)[0]) == 2.5


def test_best_of_k_with_replacement_accepts_any_k_without_replacement_k_le_n():
    r = np.array([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    for k in (4, 7):  # k i.i.d. draws from a pool of 3: defined for any k >= 1
        got = np.asarray(op.best_of_k(r, k=k, replacement=True))
        np.testing.assert_allclose(got, [brute_best(row, k, True) for row in r], rtol=1e-6)
    curve = op.scaling_curve(op.best_of_k, r, ks=[1, 3, 5], replacement=True)
    np.testing.assert_allclose(curve.values[:, 2], op.best_of_k(r, k=5, replacement=True), rtol=1e-6)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\], got 4"):
        op.best_of_k(r, k=4)
    with pytest.raises(ValueError, match=r"ks must be an integer in \[1, 3\], got 5"):
        op.scaling_curve(op.best_of_k, r, ks=[1, 5])
    with pytest.raises(ValueError, match=r"k must be an integer in >= 1, got 0"):
        op.best_of_k(r, k=0, replacement=True)


def test_scoring_fixture_spec6():
    # 3 problems x 4 attempts; problem 0 has an invalid attempt that stays in the pool.
    ids = np.array([[1, 1, 2, 3], [5, 5, 5, 6], [7, 8, 8, 9]], np.int32)
    valid = np.array([[True, True, True, False], [True] * 4, [True] * 4])
    ok = np.array([[True, True, False, False], [True, True, True, False], [False] * 4])
    p = op.scaling_curve(op.pass_at_k, ok, ks=(1, 2, 4))
    np.testing.assert_allclose(p.mean, [5 / 12, 11 / 18, 2 / 3], rtol=1e-6)
    m = op.scaling_curve(op.majority_at_k, ids, ok, valid=valid, ks=(4,))
    np.testing.assert_allclose(m.mean, [2 / 3], rtol=1e-6)
    np.testing.assert_allclose(p.se[2], np.std([1, 1, 0], ddof=1) / np.sqrt(3), rtol=1e-6)


def test_scaling_curve_generic_estimator_and_single_problem_se():
    r = np.array([[0.0, 1.0, 3.0]])
    c = op.scaling_curve(lambda x, *, k: op.best_of_k(x, k=k), r, ks=[1, 3])
    assert c.ks == (1, 3)
    np.testing.assert_allclose(c.values, [[4 / 3, 3.0]], rtol=1e-6)
    assert np.isnan(np.asarray(c.se)).all()


def test_apply_form_operators():
    ids = np.array([[4, 4, 9, 9], [1, 2, 3, 3], [5, 5, 5, 5]], np.int32)
    valid = np.array([[True, True, True, True], [True, True, False, False], [False] * 4])
    w, has = op.majority_vote(ids, valid=valid)
    assert np.asarray(w).tolist() == [4, 1, -1] and np.asarray(has).tolist() == [True, True, False]
    w, has = op.majority_vote(ids, valid=valid, ties="fail")
    assert np.asarray(has).tolist() == [False, False, False]
    i, v = op.best_of_n(np.array([[-1.0, -0.5, -0.5]]))
    assert int(i[0]) == 1 and float(v[0]) == -0.5


# ----------------------------------------------------------------------------- jit and compile counts


def test_jit_matches_eager_and_traces_once_per_shape():
    n = 7
    ids, correct, valid, rewards = random_pools(n, 6, seed=n)  # the pools of _curves(n, ...)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def curves(ids, correct, valid, rewards):
        return (
            op.scaling_curve(op.majority_at_k, ids, correct, valid=valid, max_clusters=4).values,
            op.majority_at_k(ids, correct, k=3, valid=valid, ties="fail"),
            op.pass_at_k(correct, k=2),
            op.best_of_k(rewards, k=3, replacement=True),
        )

    got = curves(ids, correct, valid, rewards)
    curves(ids[::-1], correct[::-1], valid[::-1], rewards[::-1])  # same shapes: no retrace
    np.testing.assert_allclose(got[0], _curves(n, "first"), atol=2e-6)
    np.testing.assert_allclose(got[1], _curves(n, "fail")[:, 2], atol=2e-6)
    np.testing.assert_allclose(got[2], op.pass_at_k(correct, k=2), rtol=1e-6)
    np.testing.assert_allclose(got[3], op.best_of_k(rewards, k=3, replacement=True), rtol=1e-6)


# ----------------------------------------------------------------------------- bad input


@contextlib.contextmanager
def unchecked():
    """Temporarily call the library's functions without the runtime annotation checks of conftest."""
    names = ["pass_at_k", "majority_at_k", "best_of_k"]
    saved = {name: getattr(op, name) for name in names}
    try:
        for name in names:
            setattr(op, name, getattr(saved[name], "__wrapped__", saved[name]))
        yield
    finally:
        for name, fn in saved.items():
            setattr(op, name, fn)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: op.pass_at_k(np.ones((2, 3), bool), k=4), "k must be an integer in"),
        (lambda: op.pass_at_k(np.ones((2, 3), bool), k=0), "k must be an integer in"),
        (lambda: op.pass_at_k(np.ones((2, 3), bool), k=True), "k must be a Python integer"),
        (lambda: op.pass_at_k(np.ones((3,), bool), k=1), "correct must be a .B, N. array"),
        (
            lambda: op.majority_at_k(np.zeros((2, 3), np.int32), np.ones((2, 4), bool), k=1),
            "correct must have",
        ),
        (lambda: op.majority_at_k(np.zeros((2, 3), np.int32), np.ones((2, 3), bool), k=1, ties="x"), "ties"),
        (lambda: op.majority_at_k(np.array([[1, 1]], np.int32), np.array([[True, False]]), k=1), "disagrees"),
        (
            lambda: op.majority_at_k(
                np.array([[1, 2]], np.int32), np.ones((1, 2), bool), k=1, max_clusters=1
            ),
            "max_clusters",
        ),
        (lambda: op.best_of_k(np.array([[1.0, np.nan]]), k=1), "rewards must be finite"),
        (lambda: op.scaling_curve(op.pass_at_k, np.ones((1, 3), bool), ks=[1, 5]), "ks must be"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    # Without the tests' jaxtyping hook (which would reject some of these first, as a TypeCheckError).
    with unchecked(), pytest.raises(ValueError, match=match):
        call()


def test_invalid_samples_in_a_cluster_do_not_count_for_disagreement():
    ids = np.array([[1, 1]], np.int32)
    # The invalid duplicate id is ignored: no disagreement error, and it never wins.
    v = op.majority_at_k(ids, np.array([[True, False]]), k=2, valid=np.array([[True, False]]))
    assert float(v[0]) == pytest.approx(1.0, abs=1e-6)


def test_plot_helper_writes_png(tmp_path):
    c = op.scaling_curve(op.pass_at_k, np.array([[True, False, False, False], [True, True, False, False]]))
    fig = plot_scaling_curves({"a": c, "b": c}, ylabel="pass@k", path=str(tmp_path / "c.png"), scale=100)
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert fig.axes[0].get_xscale() == "log"
    assert math.isclose(fig.axes[0].lines[0].get_ydata()[-1], 100.0)
