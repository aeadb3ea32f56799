"""Group advantages, Pass@k group advantage, Best-of-N quantiles, reward-history FIFO (SPEC §2.3, §2.6)."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import advantages as adv

# Tests compile many tiny programs once each: XLA's cheapest backend pipeline halves compile time.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def test_group_advantages_formula_zero_mean_and_row_independence():
    r = np.array([[1.0, 0.0, 0.0, 1.0], [0.3, 2.0, -1.0, 0.5], [1.0, 1.0, 1.0, 1.0]], np.float32)
    a = np.asarray(adv.group_advantages(r))
    want = (r - r.mean(-1, keepdims=True)) / (r.std(-1, ddof=1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.sum(-1), 0.0, atol=1e-5)
    # Each row depends on its own rewards only.
    a0 = np.asarray(adv.group_advantages(r[:1]))
    np.testing.assert_allclose(a[:1], a0, rtol=1e-6)
    np.testing.assert_array_equal(a[2], 0.0)


def test_all_wrong_penalty_rows_and_clip():
    r = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    a = np.asarray(adv.group_advantages(r, all_wrong_penalty=0.5))
    np.testing.assert_array_equal(a[0], -0.5)
    np.testing.assert_array_equal(a[1], 0.0)
    np.testing.assert_allclose(a[2], [1.5, -0.5, -0.5, -0.5], rtol=1e-3)
    c = np.asarray(adv.group_advantages(r, all_wrong_penalty=0.5, clip=1.0))
    np.testing.assert_allclose(c[2], [1.0, -0.5, -0.5, -0.5], rtol=1e-3)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="rewards"):
        adv.group_advantages(jnp.array([[0.5, 0.0]]), all_wrong_penalty=0.5)
    with pytest.raises(ValueError, match="M"):
        adv.group_advantages(jnp.array([[1.0], [0.0]]))
    with pytest.raises(ValueError, match="eps"):
        adv.group_advantages(jnp.ones((1, 2)), eps=-1.0)
    # An all-equal group has std 0: the group estimator needs eps > 0 or its advantages are NaN.
    for eps in (0.0, -1e-4):
        with pytest.raises(ValueError, match=r"eps must be > 0 for the group estimator"):
            adv.AdvantageConfig(eps=eps)
        with pytest.raises(ValueError, match=r"eps must be > 0 for the group estimator"):
            adv.group_advantages(jnp.ones((1, 2)), eps=eps)
    assert adv.AdvantageConfig(estimator="passk", k=2, eps=0.0).eps == 0.0  # divides only where std > 0
    with pytest.raises(ValueError, match=r"eps must be >= 0, got -1"):
        adv.AdvantageConfig(estimator="passk", eps=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        adv.AdvantageConfig(estimator="ppo")
    with pytest.raises(ValueError, match="estimator"):
        adv.get("nope")
    with pytest.raises(ValueError, match="filter_zero_variance"):
        adv.AdvantageConfig(all_wrong_penalty=0.5, filter_zero_variance=True)
    with pytest.raises(ValueError, match="k"):
        adv.passk_group_advantages(jnp.ones((1, 3)), k=4)
    with pytest.raises(ValueError, match="M"):
        adv.compute_advantages(jnp.ones((2, 1)), config=adv.AdvantageConfig())


def test_non_binary_under_jit_is_nan_not_silent():
    f = jit(lambda r: adv.group_advantages(r, all_wrong_penalty=0.5))
    assert np.isnan(np.asarray(f(jnp.array([[0.5, 0.0]])))).all()


def test_compute_advantages_filter_metric_and_detached():
    r = jnp.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    cfg = adv.AdvantageConfig(filter_zero_variance=True)

    @jit
    def run(x):
        a, m = adv.compute_advantages(x, config=cfg)
        a_full, _ = adv.compute_advantages(x, config=adv.AdvantageConfig())
        g = jax.grad(lambda y: jnp.sum(adv.compute_advantages(y, config=adv.AdvantageConfig())[0] * y))(x)
        return a, m, a_full, g, adv.group_advantages(x[:1]), adv.informative_groups(x)

    a, m, a_full, g, a_row0, informative = run(r)
    assert float(m["advantages/informative_groups"]) == 0.5
    np.testing.assert_array_equal(np.asarray(a[1:3]), 0.0)
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(a_row0)[0])
    np.testing.assert_array_equal(np.asarray(g), np.asarray(a_full))  # no gradient through A itself
    np.testing.assert_array_equal(np.asarray(informative), [True, False, False, True])


def _brute_passk(row, k):
    m = len(row)
    subsets = list(itertools.combinations(range(m), k))
    group = np.array([max(row[j] for j in s) for s in subsets], np.float64)
    mean, std = group.mean(), group.std()
    if std == 0:
        return np.zeros(m)
    z = (group - mean) / std
    return np.array([np.mean([z[g] for g, s in enumerate(subsets) if i in s]) for i in range(m)])


@pytest.mark.parametrize("m", [2, 3, 5, 6])
def test_passk_group_advantage_equals_subset_enumeration(m, x64):
    rows = np.array([[1.0] * c + [0.0] * (m - c) for c in range(m + 1)])
    rows = np.stack([np.random.default_rng(c).permutation(row) for c, row in enumerate(rows)])
    every_k = jit(lambda r: [adv.passk_group_advantages(r, k=k) for k in range(1, m + 1)])(jnp.asarray(rows))
    for k, got in enumerate(map(np.asarray, every_k), start=1):
        want = np.stack([_brute_passk(row, k) for row in rows])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=f"m={m} k={k}")


def test_passk_with_k1_is_population_standardised():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0, 1.0]])
    want = (r - r.mean()) / r.std()
    np.testing.assert_allclose(np.asarray(adv.passk_group_advantages(r, k=1)), np.asarray(want), rtol=1e-5)


def test_within_prompt_quantiles_examples_and_ties():
    q = adv.within_prompt_quantiles(jnp.array([[2.0, 2.0, 9.0], [3.0, 1.0, 2.0]]))
    np.testing.assert_allclose(np.asarray(q), [[0.25, 0.25, 0.75], [0.75, 0.25, 0.5]])
    # Never ranks across prompts.
    q2 = adv.within_prompt_quantiles(jnp.array([[2.0, 2.0, 9.0], [100.0, 100.0, 100.0]]))
    np.testing.assert_allclose(np.asarray(q2[0]), [0.25, 0.25, 0.75])
    np.testing.assert_allclose(np.asarray(q2[1]), 0.25)


def test_reward_history_example_empty_and_query_does_not_mutate():
    empty = adv.RewardHistory.create(capacity=10)
    h = jit(empty.append)(jnp.array([2.0, 4.0, 6.0]))
    before = jax.tree.map(np.asarray, h)
    query = jit(lambda hist, r: (hist.quantiles(r), hist.quantiles(r[:, :1] + 6.0)))
    q0, _ = query(empty, jnp.array([[1.0, 5.0]]))
    np.testing.assert_array_equal(np.asarray(q0), 0.5)
    q, q7 = query(h, jnp.array([[1.0, 2.0]]))
    np.testing.assert_allclose(np.asarray(q), [[0.2, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q7), [[0.8]], rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, h))


def test_reward_history_fifo_capacity_and_clip():
    @jit
    def run():
        h1 = adv.RewardHistory.create(capacity=4).append(jnp.array([[10.0, 11.0, 12.0]]))
        h2 = h1.append(jnp.array([[0.0, 1.0]]))  # 10.0 falls out
        h3 = h2.append(jnp.arange(6.0).reshape(2, 3))  # more than capacity: only the newest 4 stay
        big = adv.RewardHistory.create(capacity=2000).append(jnp.zeros(2000))
        return h2, h3, big.quantiles(jnp.array([[-1.0, 1.0]]))

    h2, h3, q = run()
    assert int(h2.count) == 4
    assert sorted(np.asarray(h2.buffer).tolist()) == [0.0, 1.0, 11.0, 12.0]
    assert sorted(np.asarray(h3.buffer).tolist()) == [2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(np.asarray(q), [[0.001, 0.999]])


def test_reward_history_is_a_pytree_usable_in_jit():
    @jit
    def step(h, r):
        return h.quantiles(r), h.append(r)

    h = adv.RewardHistory.create(capacity=8)
    q0, h = step(h, jnp.array([[1.0, 2.0]]))
    q1, h = step(h, jnp.array([[1.5, 3.0]]))
    np.testing.assert_array_equal(np.asarray(q0), 0.5)
    np.testing.assert_allclose(np.asarray(q1), [[2 / 4, 3 / 4]], rtol=1e-6)
    assert int(h.count) == 4 and len(jax.tree.leaves(h)) == 3
    assert math.isclose(float(h.quantiles(jnp.array([[9.0]]))[0, 0]), 5 / 6, rel_tol=1e-6)


def test_passk_no_signal_groups_are_exactly_zero_in_float32_under_jit():
    r = jnp.array([[0.0] * 8, [1.0] * 8, [1.0] * 6 + [0.0] * 2])
    every_k = jit(lambda x: [adv.passk_group_advantages(x, k=k) for k in range(1, 9)])(r)
    for k, a in enumerate(map(np.asarray, every_k), start=1):
        assert not a[:2].any(), k
        assert a[2].any() == (k <= 2), k  # with 2 wrong, k >= 3 subsets always contain a success
