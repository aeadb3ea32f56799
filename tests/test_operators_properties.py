"""Property-based checks of the exact estimators (hypothesis, derandomised 'ci' profile from conftest).

Random small pools (n in {1, 3, 6} samples, at most 4 answer clusters, invalid samples, ties in rewards)
are compared with brute-force enumeration of every draw; larger pools check invariances and bounds. Every
estimator is jitted once per pool shape outside the properties, so an example costs a dispatch, not a compile.
"""

import functools
import itertools
from collections import Counter

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cat_jax import operators as op

B = 3  # problems per drawn pool
CLUSTERS = 4  # answer ids are drawn from 0..3, so max_clusters=4 bounds every pool
# Few pool sizes, shared by all properties: each size costs one compile (~2-5 s on 2 cores).
SMALL_N = (1, 3, 6)
LARGE_N = 16
REWARD_VALUES = (-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5)  # a few values so ties are common


@st.composite
def pools(draw, sizes=SMALL_N):
    """``(ids, correct, valid, rewards)`` of shape [B, n]; correctness is constant inside a cluster."""
    n = draw(st.sampled_from(sizes))
    ids = draw(hnp.arrays(np.int32, (B, n), elements=st.integers(0, CLUSTERS - 1)))
    valid = draw(hnp.arrays(np.bool_, (B, n)))
    cluster_ok = draw(hnp.arrays(np.bool_, (B, CLUSTERS)))
    correct = np.take_along_axis(cluster_ok, ids, axis=1)
    rewards = draw(
        hnp.arrays(
            np.float32,
            (B, n),
            elements=st.one_of(st.sampled_from(REWARD_VALUES), st.floats(-100, 100, width=32)),
        )
    )
    return ids, correct, valid, rewards


@functools.cache
def curves(n: int):
    """One jitted function per pool size: every estimator's whole curve k = 1..n."""
    ks = tuple(range(1, n + 1))
    slots = min(CLUSTERS, n)

    @jax.jit
    def f(ids, correct, valid, rewards):
        def maj(ties):
            return op.scaling_curve(
                op.majority_at_k, ids, correct, valid=valid, ties=ties, ks=ks, max_clusters=slots
            ).values

        return {
            "maj_first": maj("first"),
            "maj_fail": maj("fail"),
            "pass": op.scaling_curve(op.pass_at_k, correct, ks=ks).values,
            "best": op.scaling_curve(op.best_of_k, rewards, ks=ks).values,
            "best_repl": op.scaling_curve(op.best_of_k, rewards, ks=ks, replacement=True).values,
        }

    return f


def evaluate(ids, correct, valid, rewards):
    out = curves(ids.shape[1])(ids, correct, valid, rewards)
    return {key: np.asarray(v, np.float64) for key, v in out.items()}


# ----------------------------------------------------------------------------- brute force


def brute_majority(ids, correct, valid, k, ties):
    """Maj@k over every ordered draw of k distinct samples (the reference protocol, first occurrence wins)."""
    ok = {ids[i]: correct[i] for i in range(len(ids)) if valid[i]}
    wins = total = 0
    for seq in itertools.permutations(range(len(ids)), k):
        total += 1
        votes = Counter(ids[i] for i in seq if valid[i])
        if not votes:
            continue
        top = max(votes.values())
        tied = [a for a in votes if votes[a] == top]
        if ties == "fail" and len(tied) > 1:
            continue
        wins += ok[next(ids[i] for i in seq if valid[i] and ids[i] in tied)]
    return wins / total


def brute_pass(correct, k):
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


def brute_best(rewards, k, replacement):
    n = len(rewards)
    draws = itertools.product(range(n), repeat=k) if replacement else itertools.combinations(range(n), k)
    vals = [max(float(rewards[i]) for i in s) for s in draws]
    return sum(vals) / len(vals)


# ----------------------------------------------------------------------------- properties


@settings(max_examples=25)
@given(pool=pools())
def test_every_estimator_equals_enumeration(pool):
    ids, correct, valid, rewards = pool
    got = evaluate(*pool)
    n = ids.shape[1]
    for b in range(B):
        row = (ids[b].tolist(), correct[b].tolist(), valid[b].tolist())
        scale = max(1.0, float(np.abs(rewards[b]).max()))
        for k in range(1, n + 1):
            for ties in ("first", "fail"):
                want = brute_majority(*row, k, ties)
                assert abs(got[f"maj_{ties}"][b, k - 1] - want) < 2e-6, (ties, b, k)
            assert abs(got["pass"][b, k - 1] - brute_pass(correct[b], k)) < 1e-6, (b, k)
            assert abs(got["best"][b, k - 1] - brute_best(rewards[b], k, False)) < 2e-6 * scale, (b, k)
            if k <= 4:  # n^k ordered draws with replacement
                want = brute_best(rewards[b], k, True)
                assert abs(got["best_repl"][b, k - 1] - want) < 2e-6 * scale, (b, k)


@given(pool=pools(sizes=(6, LARGE_N)), data=st.data())
def test_permutation_invariance(pool, data):
    ids, correct, valid, rewards = pool
    perm = np.asarray(data.draw(st.permutations(range(ids.shape[1]))))
    got = evaluate(*pool)
    moved = evaluate(ids[:, perm], correct[:, perm], valid[:, perm], rewards[:, perm])
    for key, v in got.items():
        scale = max(1.0, float(np.abs(rewards).max())) if key.startswith("best") else 1.0
        np.testing.assert_allclose(moved[key], v, rtol=0, atol=2e-6 * scale, err_msg=key)


@given(pool=pools(sizes=(1, 6, LARGE_N)))
def test_bounds_and_monotone_budgets(pool):
    _, correct, valid, rewards = pool
    got = evaluate(*pool)
    # Documented float32 accuracy of Maj@k: values may leave [0, 1] by ~1e-6.
    for key in ("maj_first", "maj_fail", "pass"):
        assert np.all(got[key] >= -2e-6) and np.all(got[key] <= 1 + 2e-6), key
    # More samples never hurt Pass@k or the expected maximum (Maj@k may go down: it is not monotone in k).
    assert np.all(np.diff(got["pass"], axis=1) >= -1e-6)
    r = rewards.astype(np.float64)
    tol = 2e-6 * max(1.0, float(np.abs(r).max()))
    for key in ("best", "best_repl"):
        v = got[key]
        assert np.all(v >= r.mean(1, keepdims=True) - tol) and np.all(v <= r.max(1, keepdims=True) + tol), key
        assert np.all(np.diff(v, axis=1) >= -tol), key
        np.testing.assert_allclose(v[:, 0], r.mean(1), atol=tol)  # k = 1 is the pool mean
    np.testing.assert_allclose(got["best"][:, -1], r.max(1), atol=tol)  # k = n without replacement: max
    # Maj@k can only count valid, correct votes: no correct valid sample means 0, and it is below Pass@k.
    none_ok = ~(correct & valid).any(1)
    assert np.all(np.abs(got["maj_first"][none_ok]) < 2e-6)
    assert np.all(got["maj_fail"] <= got["maj_first"] + 2e-6)
    assert np.all(got["maj_first"] <= got["pass"] + 2e-6)
