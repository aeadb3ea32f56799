"""The CAT RL weight pipeline (SPEC §2.5), normalisation rules (§2.4) and the PKPO reward transforms."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import advantages as adv
from cat_jax import objectives as obj
from cat_jax import weights as W

# Tests compile many tiny programs once each: XLA's cheapest backend pipeline halves compile time.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# Value tests go through jit (one compile is cheaper than op-by-op dispatch); validation tests stay eager.
cat_weights = jit(W.cat_weights, static_argnames=("config",))


@pytest.mark.parametrize(
    ("n", "c", "m", "k"), [(8, 0, 8, 2), (8, 1, 8, 2), (8, 3, 8, 4), (8, 8, 8, 5), (4, 8, 8, 3)]
)
def test_dynamic_majority_threshold_table(n, c, m, k):
    assert int(W.majority_thresholds(jnp.array(c), n=n, m=m)) == k


def _majority_inputs():
    # Prompt 0: keys (None, None, yes, yes), the two invalid answers wrong -> one "None" category of 2.
    # Prompt 1: wrong answers 3, 3, 5 and one invalid; one correct.
    ids = jnp.array([[0, 0, 7, 7], [3, 3, 5, 9]])
    valid = jnp.array([[False, False, True, True], [True, True, True, False]])
    rewards = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    return rewards, ids, valid


def test_strongest_wrong_answer_with_invalid_answers_sharing_none():
    rewards, ids, valid = _majority_inputs()
    # Row 2: distinct invalid answers are still one category. Row 3: a correct rollout is never a rival.
    ids = jnp.concatenate([ids, jnp.array([[1, 2, 3, 1], [1, 1, 1, 2]])])
    valid = jnp.concatenate([valid, jnp.array([[False, False, False, True], [True, True, True, True]])])
    correct = jnp.concatenate([rewards == 1, jnp.array([[False] * 4, [True, True, False, False]])])
    c = jit(W.strongest_wrong_count)(ids, valid, correct)
    assert c.tolist() == [2, 2, 3, 1]
    ks = W.majority_thresholds(c[:2], n=8, m=4)
    assert ks.tolist() == [5, 5]  # keys (None, None, yes, yes), N = 8 -> 5; invalids stay in M


@pytest.mark.parametrize("form", ["raw", "log"])
def test_majority_weights_equal_binomial_expressions_with_laplace_p(form, x64):
    rewards, ids, valid = _majority_inputs()
    cfg = W.WeightConfig(strategy="majority", n=8, form=form, probability="empirical")
    w, stats = cat_weights(rewards, config=cfg, answer_ids=ids, answer_valid=valid)
    assert float(stats["weights/k_mean"]) == 5.0
    for row, succ in enumerate([2, 0]):
        p, n, k = (succ + 1) / 6, 8, 5
        pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
        raw = n * math.comb(n - 1, k - 1) * p ** (k - 1) * (1 - p) ** (n - k)
        want = raw if form == "raw" else k * pmf[k] / sum(pmf[k:])
        np.testing.assert_allclose(np.asarray(w[row]), want, rtol=1e-12)


@pytest.mark.parametrize("form", ["raw", "log"])
def test_passn_weights_equal_closed_forms_with_sequence_p(form, x64):
    logp = jnp.array([[-0.1, -2.0, -60.0], [-1e-12, -0.7, -5.0]])
    rewards = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    cfg = W.WeightConfig(strategy="passn", n=4, form=form, clip=50.0)
    w, stats = cat_weights(rewards, logp, config=cfg)
    p = np.clip(np.exp(np.clip(np.asarray(logp), -50, 0)), 1e-10, 1 - 1e-10)
    want = 4 * (1 - p) ** 3 if form == "raw" else 4 * p * (1 - p) ** 3 / -np.expm1(4 * np.log1p(-p))
    np.testing.assert_allclose(np.asarray(w), want, rtol=1e-9)
    assert float(stats["weights/normalized"]) == 0.0


def test_bon_weights_within_prompt_and_history():
    r = jnp.array([[2.0, 2.0, 9.0], [0.0, 1.0, 2.0]])
    w, _ = cat_weights(r, config=W.WeightConfig(strategy="bon", n=4))
    q = np.asarray(adv.within_prompt_quantiles(r))
    np.testing.assert_allclose(np.asarray(w), 4 * q**3, rtol=1e-6)
    hist = adv.RewardHistory.create(16).append(jnp.array([2.0, 4.0, 6.0]))
    cfg = W.WeightConfig(strategy="bon", n=2, quantile="history")
    wh, _ = cat_weights(jnp.array([[1.0, 2.0]]), config=cfg, history=hist)
    np.testing.assert_allclose(np.asarray(wh), [[0.4, 0.4]], rtol=1e-6)
    with pytest.raises(ValueError, match="history"):
        cat_weights(r, config=cfg)


def test_normalisation_rules():
    r2 = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    cfg = W.WeightConfig(strategy="passn", n=4, probability="empirical", normalize=True)
    raw, _ = cat_weights(r2, config=dataclass_replace(cfg, normalize=False))
    w, s = cat_weights(r2, config=cfg)
    assert float(s["weights/normalized"]) == 1.0
    np.testing.assert_allclose(float(jnp.mean(w)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(w[0, 0] / w[1, 0]), float(raw[0, 0] / raw[1, 0]), rtol=1e-6)
    np.testing.assert_allclose(float(s["weights/raw_mean"]), float(jnp.mean(raw)), rtol=1e-6)
    # One prompt with empirical probabilities: a per-prompt constant would cancel, so it stays raw.
    w1, s1 = cat_weights(r2[:1], config=cfg)
    assert float(s1["weights/normalized"]) == 0.0
    np.testing.assert_allclose(np.asarray(w1), np.asarray(raw[:1]), rtol=1e-6)
    # ... but one prompt with sequence probabilities is normalised (weights differ within the prompt).
    ws, ss = cat_weights(
        r2[:1],
        jnp.array([[-0.1, -1.0, -2.0, -3.0]]),
        config=W.WeightConfig(strategy="passn", n=4, normalize=True),
    )
    assert float(ss["weights/normalized"]) == 1.0
    np.testing.assert_allclose(float(jnp.mean(ws)), 1.0, rtol=1e-6)
    # All-zero weights stay zero (all-correct prompts of majority with p near 1 and clip to 0 ...).
    _, sz = cat_weights(jnp.ones((2, 3)), config=W.WeightConfig(strategy="bon", n=3, normalize=True))
    assert float(sz["weights/normalized"]) == 1.0  # bon: ties at the bottom get q = 1/4, not zero
    z, applied = W.mean_normalize(jnp.zeros((2, 3)))
    assert not bool(applied) and not np.asarray(z).any()
    # Standard never normalises; clip is applied before normalising.
    wstd, sstd = cat_weights(r2, config=W.WeightConfig(normalize=True))
    assert float(sstd["weights/normalized"]) == 0.0 and np.all(np.asarray(wstd) == 1)
    wc, sc = cat_weights(r2, config=dataclass_replace(cfg, clip=1.0, normalize=False))
    assert float(jnp.max(wc)) == 1.0 and float(sc["weights/raw_mean"]) <= 1.0


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_normalisation_extreme_scales_float64(x64):
    for scale in (1e300, 1e-300):
        w, applied = W.mean_normalize(jnp.array([3.0, 6.0, 12.0]) * scale)
        assert bool(applied)
        np.testing.assert_allclose(np.asarray(w), [3 / 7, 6 / 7, 12 / 7], rtol=1e-14)


def test_underflowing_weights_are_not_normalised(x64):
    # p is clamped to 1 - 1e-10; N (1 - p)^{127} = 128e-1270 underflows to 0 in float64.
    cfg = W.WeightConfig(strategy="passn", n=128, normalize=True)
    w, s = cat_weights(jnp.ones((2, 2)), jnp.zeros((2, 2)), config=cfg)
    assert float(s["weights/normalized"]) == 0.0
    np.testing.assert_array_equal(np.asarray(w), 0.0)


def test_config_and_input_validation():
    for kw, name in [
        ({"strategy": "passk"}, "strategy"),
        ({"strategy": "passn", "n": 4, "form": "sqrt"}, "form"),
        ({"strategy": "passn", "n": 4, "probability": "laplace"}, "probability"),
        ({"n": 4}, "n"),
        ({"strategy": "majority", "n": 1}, "n"),
        ({"strategy": "bon", "n": 4, "form": "log"}, "form"),
        ({"strategy": "bon", "n": 4, "quantile": "global"}, "quantile"),
        ({"strategy": "passn", "n": 4, "clip": 0.0}, "clip"),
        ({"strategy": "passn", "n": True}, "n"),
    ]:
        with pytest.raises(ValueError, match=name):
            W.WeightConfig(**kw)
    cfg = W.WeightConfig(strategy="passn", n=4, probability="empirical")
    with pytest.raises(ValueError, match="rewards"):
        W.cat_weights(jnp.array([[0.5, 1.0]]), config=cfg)
    with pytest.raises(ValueError, match="rewards"):
        W.cat_weights(
            jnp.array([[2.0, 1.0]]),
            config=W.WeightConfig(strategy="majority", n=4),
            answer_ids=jnp.zeros((1, 2), int),
            answer_valid=jnp.ones((1, 2), bool),
        )
    with pytest.raises(ValueError, match="answer_ids"):
        W.cat_weights(jnp.ones((1, 2)), config=W.WeightConfig(strategy="majority", n=4))
    with pytest.raises(ValueError, match="old_logp"):
        W.cat_weights(jnp.ones((1, 2)), config=W.WeightConfig(strategy="passn", n=4))


def test_jit_nan_on_non_binary_and_detached():
    cfg = W.WeightConfig(strategy="passn", n=4, normalize=True)
    f = jit(lambda r, lp: W.cat_weights(r, lp, config=cfg)[0])
    assert np.isnan(np.asarray(f(jnp.array([[0.5, 1.0], [0.0, 1.0]]), -jnp.ones((2, 2))))).all()
    lp = jnp.array([[-0.1, -0.5], [-1.0, -2.0]])
    g = jit(jax.grad(lambda x: jnp.sum(W.cat_weights(jnp.ones((2, 2)), x, config=cfg)[0])))(lp)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# ----------------------------------------------------------------------------- PKPO vs enumeration


def _brute_pkpo(row, k):
    m = len(row)
    subsets = list(itertools.combinations(range(m), k))
    return np.array([sum(max(row[j] for j in s) for s in subsets if i in s) for i in range(m)]) / len(subsets)


@pytest.mark.parametrize("m", [1, 3, 5, 6])
def test_pkpo_pass_equals_subset_enumeration(m, x64):
    rows = np.stack([np.random.default_rng(c).permutation([1.0] * c + [0.0] * (m - c)) for c in range(m + 1)])
    every_k = jit(lambda r: [W.pkpo_pass_rewards(r, k=k) for k in range(1, m + 1)])(jnp.asarray(rows))
    for k, got in enumerate(map(np.asarray, every_k), start=1):
        want = np.stack([_brute_pkpo(row, k) for row in rows])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"m={m} k={k}")
        # mean_i s_i = (k / M) * unbiased pass@k  (Chen et al. 2021 estimator)
        c = rows.sum(-1)
        passk = 1 - np.array([math.comb(m - int(ci), k) for ci in c]) / math.comb(m, k)
        np.testing.assert_allclose(got.mean(-1), passk * k / m, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_pkpo_max_equals_subset_enumeration_with_ties(m, x64):
    rng = np.random.default_rng(m)
    rows = np.concatenate([rng.normal(size=(3, m)), rng.integers(0, 3, size=(3, m)).astype(float)])
    every_k = jit(lambda r: [W.pkpo_max_rewards(r, k=k) for k in range(1, m + 1)])(jnp.asarray(rows))
    for k, got in enumerate(map(np.asarray, every_k), start=1):
        want = np.stack([_brute_pkpo(row, k) for row in rows])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"m={m} k={k}")
    binary = jnp.asarray((rows[3:] > 0).astype(float))
    np.testing.assert_allclose(
        np.asarray(W.pkpo_max_rewards(binary, k=2)), np.asarray(W.pkpo_pass_rewards(binary, k=2)), rtol=1e-12
    )


def test_transforms_by_name():
    r = jnp.array([[1.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        np.asarray(W.get_transform("pkpo_pass")(r, k=2)), np.asarray(W.pkpo_pass_rewards(r, k=2))
    )
    with pytest.raises(ValueError, match="transform"):
        W.get_transform("pkpo")
    with pytest.raises(ValueError, match="rewards"):
        W.pkpo_pass_rewards(jnp.array([[0.5, 1.0]]), k=1)
    with pytest.raises(ValueError, match="k"):
        W.pkpo_max_rewards(r, k=4)


def test_bon_weight_of_complement_quantile_is_passn_weight():
    q = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(
        np.asarray(obj.bon_rl_weight(1 - q, n=5)),
        np.asarray(obj.passn_rl_weight(q, n=5)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_exact_probability_is_one_p_per_prompt_from_the_reference_answer():
    r = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ref = jnp.log(jnp.array([0.5, 0.02]))
    cfg = W.WeightConfig(strategy="passn", n=4, probability="exact")
    w, _ = W.cat_weights(r, None, config=cfg, reference_logp=ref)
    want = obj.passn_rl_weight(jnp.array([0.5, 0.02]), n=4)
    np.testing.assert_allclose(w, jnp.broadcast_to(want[:, None], r.shape), rtol=1e-6)
    # Zero-sum within a group: every completion of a prompt carries the same weight, right or wrong.
    assert bool(jnp.all(w == w[:, :1]))
    with pytest.raises(ValueError, match="reference_logp must be given"):
        W.cat_weights(r, None, config=cfg)
