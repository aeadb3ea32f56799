"""Completion log-probs, CAT SFT losses and the RL policy loss (SPEC §2.4, §2.7, §3.2, §6)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import losses as L
from cat_jax import objectives as obj
from cat_jax.testing import ragged_sequences

# Tests compile many tiny programs once each: XLA's cheapest backend pipeline halves compile time.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

V, D = 11, 6


def tiny_params(seed=0, scale=1.0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    dtype = jnp.zeros(()).dtype if not jax.config.jax_enable_x64 else jnp.float64
    return {
        "emb": jax.random.normal(k1, (V, D), dtype) * scale,
        "out": jax.random.normal(k2, (D, V), dtype) * scale,
    }


def tiny_apply(params, tokens, positions, cache):
    """A causal toy LM: logits at t depend on the running mean of the embeddings of tokens 0..t."""
    e = params["emb"][tokens]
    h = jnp.cumsum(e, axis=-2) / (positions[..., None] + 1).astype(e.dtype)
    return jnp.tanh(h) @ params["out"], cache


_sequences = ragged_sequences  # four prompt + completion rows of unequal lengths


# ----------------------------------------------------------------------------- SFT


def test_sft_objective_validation():
    for kw, name in [
        ({"strategy": "bon"}, "strategy"),
        ({"reduction": "mean"}, "reduction"),
        ({"strategy": "ce", "n": 4}, "n"),
        ({"strategy": "majority", "n": 4, "k": 5}, "k"),
        ({"strategy": "passn", "n": 4, "k": 2}, "k"),
        ({"strategy": "passn", "n": 0}, "n"),
    ]:
        with pytest.raises(ValueError, match=name):
            L.SFTObjective(**kw)


def test_sft_sequence_losses_and_denominators():
    lp = jnp.log(jnp.array([0.5, 0.2]))
    seq = jit(L.sft_sequence_losses, static_argnames="objective")
    np.testing.assert_allclose(np.asarray(seq(lp, objective=L.SFTObjective())), -np.asarray(lp))
    # SPEC §2.9 reference values of -log B_{8,3}(p).
    majority = L.SFTObjective("majority", n=8, k=3)
    np.testing.assert_allclose(
        np.asarray(seq(lp, objective=majority)), [0.1561057147, 1.594144259], rtol=1e-5
    )
    _, labels = _sequences()
    labels = np.concatenate([labels, np.full((1, labels.shape[1]), -100, np.int32)])  # a padding row
    assert int(L.sft_denominator(labels, reduction="sequence_mean")) == 4
    assert int(L.sft_denominator(labels, reduction="token_mean")) == 10


OBJECTIVES = [L.SFTObjective(), L.SFTObjective("passn", n=4), L.SFTObjective("majority", n=8, k=3)]


def _all_grads(loss_fn):
    """value_and_grad over several batches of different shapes in one compiled call (compiles dominate)."""
    vg = jax.value_and_grad(loss_fn, has_aux=True)
    return jit(lambda params, batches: [vg(params, b, None) for b in batches])


def _assert_sum_equals(results):
    (loss, _), g = results[0]
    total, gsum = 0.0, jax.tree.map(jnp.zeros_like, g)
    for (li, _), gi in results[1:]:
        total, gsum = total + li, jax.tree.map(jnp.add, gsum, gi)
    np.testing.assert_allclose(float(total), float(loss), rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), gsum, g)


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.strategy)
def test_sft_micro_batch_equivalence(objective, x64):
    """One batch of 4 equals two micro-batches of 2 (unequal lengths, the first padded only to its own
    longest row) for both reductions, when each micro-batch is divided by the window's denominator."""
    params = tiny_params()
    tokens, labels = _sequences()
    f = _all_grads(L.make_sft_loss_fn(tiny_apply, objective=objective))
    for reduction in L.SFT_REDUCTIONS:
        d = L.sft_denominator(labels, reduction=reduction)
        batches = [
            {"tokens": tokens, "labels": labels, "denominator": d},
            {"tokens": tokens[:2, :5], "labels": labels[:2, :5], "denominator": d},
            {"tokens": tokens[2:], "labels": labels[2:], "denominator": d},
        ]
        _assert_sum_equals(f(params, batches))


def test_sft_loss_gradient_is_weighted_ce():
    """d loss / d log p_i = -w_SFT(p_i) / D: the CAT SFT loss re-weights CE per sequence."""
    objective = L.SFTObjective("passn", n=4)
    tokens, labels = _sequences()
    logits = jax.random.normal(jax.random.key(3), (*tokens.shape, V))

    @jit
    def run(z):
        lp, _ = L.completion_log_probs(z, labels)
        g = jax.grad(lambda x: jnp.sum(L.sft_sequence_losses(x, objective=objective)) / 4)(lp)
        loss, m = L.sft_loss(z, labels, objective=objective)  # default D: this batch's 4 sequences
        return lp, g, obj.passn_sft_weight_from_logp(lp, n=4), obj.passn_sft_loss(lp, n=4), loss, m

    _, g, w, mean_loss, loss, m = run(logits)
    np.testing.assert_allclose(np.asarray(g), -np.asarray(w) / 4, rtol=1e-5)
    assert float(m["sft/target_tokens"]) == 10
    np.testing.assert_allclose(float(loss), float(mean_loss), rtol=1e-6)
    np.testing.assert_allclose(float(m["sft/weight"]), float(jnp.mean(w)), rtol=1e-5)


# ----------------------------------------------------------------------------- RL


@pytest.mark.parametrize(("cur", "old", "a", "want"), [(-0.1, -1.0, 1.0, -1.2), (-2.0, -1.0, -1.0, 0.8)])
def test_clipped_surrogate_values(cur, old, a, want):
    cfg = L.PolicyLossConfig(surrogate="clipped")
    mask = jnp.array([[False, True]])
    per, _ = L.policy_loss_terms(
        jnp.array([[0.0, cur]]), mask, jnp.array([a]), jnp.ones(1), config=cfg, old=jnp.array([[0.0, old]])
    )
    np.testing.assert_allclose(float(per[0]), want, rtol=1e-6)


def test_policy_gradient_on_masked_tokens_is_minus_a_w_and_nothing_flows_elsewhere():
    cur = jnp.array([[0.0, -0.3, -1.2, -0.4], [0.0, -2.0, 0.0, 0.0]])
    mask = jnp.array([[False, True, True, False], [False, True, False, False]])
    adv, w = jnp.array([1.5, -0.5]), jnp.array([2.0, 3.0])
    cfg = L.PolicyLossConfig()

    def total(c, a, ww):
        return jnp.sum(L.policy_loss_terms(c, mask, a, ww, config=cfg)[0])

    gc, ga, gw = jax.grad(total, argnums=(0, 1, 2))(cur, adv, w)
    want = -np.asarray(adv * w)[:, None] * np.asarray(mask)
    np.testing.assert_allclose(np.asarray(gc), want, rtol=1e-6)
    assert not np.asarray(ga).any() and not np.asarray(gw).any()


def test_k3_kl_nonnegative_zero_at_reference_and_no_gradient_into_reference():
    cfg = L.PolicyLossConfig(kl_beta=1.0)
    mask = jnp.array([[False, True, True, True], [False, True, True, False]])
    cur = -jax.random.uniform(jax.random.key(4), (2, 4)) * 3
    ref = -jax.random.uniform(jax.random.key(5), (2, 4)) * 3
    zero = jnp.zeros(2)

    def kl(c, r):
        return L.policy_loss_terms(c, mask, zero, zero, config=cfg, reference=r)[0]

    @jit
    def run(c, r):
        g_at_ref = jax.grad(lambda x: jnp.sum(kl(x, jax.lax.stop_gradient(x))))(c)
        return kl(c, r), kl(c, c), g_at_ref, jax.grad(lambda x: jnp.sum(kl(c, x)))(r)

    kl_cur_ref, kl_at_ref, g_at_ref, g_ref = run(cur, ref)
    assert np.all(np.asarray(kl_cur_ref) >= 0)
    np.testing.assert_array_equal(np.asarray(kl_at_ref), 0.0)
    np.testing.assert_array_equal(np.asarray(g_at_ref), 0.0)
    np.testing.assert_array_equal(np.asarray(g_ref), 0.0)
    # Token mean per completion: sum over masked tokens / their count.
    d = np.where(np.asarray(mask), np.asarray(ref) - np.asarray(cur), 0.0)
    want = (np.expm1(d) - d).sum(-1) / np.asarray(mask).sum(-1)
    np.testing.assert_allclose(np.asarray(kl_cur_ref), want, rtol=1e-5)


def _rl_batch(params, old_params, ref_params):
    tokens, labels = _sequences()
    mask = labels != -100
    scored = jit(
        lambda ps: [L.model_token_log_probs(tiny_apply, p, tokens, np.where(mask, tokens, -100)) for p in ps]
    )
    old, ref = scored([old_params, ref_params])
    return {
        "tokens": tokens,
        "mask": mask,
        "advantages": np.array([1.0, -0.5, 0.7, -1.2]),
        "weights": np.array([0.5, 2.0, 1.0, 3.0]),
        "old_log_probs": np.asarray(old),
        "ref_log_probs": np.asarray(ref),
        "num_completions": 4,
    }


@pytest.mark.parametrize("surrogate", L.SURROGATES)
def test_rl_micro_batch_equivalence_and_prompt_major_shapes(surrogate, x64):
    params = tiny_params()
    perturb = lambda p, s: jax.tree.map(
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(s), x.shape, x.dtype), p
    )
    batch = _rl_batch(params, perturb(params, 7), perturb(params, 8))
    cfg = L.PolicyLossConfig(surrogate="clipped", kl_beta=0.05)
    fn = L.make_rl_loss_fn(tiny_apply, config=cfg)
    parts = [
        {k: (v[rows, :length] if np.ndim(v) == 2 else v[rows]) if np.ndim(v) else v for k, v in batch.items()}
        for rows, length in ((slice(0, 2), 5), (slice(2, 4), 7))
    ]
    # [B, M, L] prompt-major input gives the same loss and gradient as the flat [B*M, L] batch.
    bm = {k: (np.reshape(v, (2, 2, *np.shape(v)[1:])) if np.ndim(v) else v) for k, v in batch.items()}
    *results, ((loss_bm, _), g_bm) = _all_grads(fn)(params, [batch, *parts, bm])
    (loss, m), g = results[0]
    assert "rl/kl" in m and (surrogate == "reinforce" or "rl/ratio" in m)
    _assert_sum_equals(results)
    np.testing.assert_allclose(float(loss_bm), float(loss), rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), g_bm, g)


def test_rl_loss_normalises_by_total_completions_and_validates():
    params = tiny_params()
    batch = _rl_batch(params, params, params)
    fn = L.make_rl_loss_fn(tiny_apply, config=L.PolicyLossConfig())
    fc = L.make_rl_loss_fn(tiny_apply, config=L.PolicyLossConfig(surrogate="clipped"))

    @jit
    def run(p, b):
        l4, _ = fn(p, b, None)
        l8, _ = fn(p, {**b, "num_completions": 8}, None)
        return l4, l8, jax.grad(lambda q: fn(q, b, None)[0])(p), jax.grad(lambda q: fc(q, b, None)[0])(p)

    l4, l8, g_r, g_c = run(params, batch)
    np.testing.assert_allclose(float(l8), float(l4) / 2, rtol=1e-6)
    # With old = current the clipped surrogate has REINFORCE's gradient (ratio 1, SPEC §2.7 note).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_r, g_c)
    with pytest.raises(ValueError, match="old_log_probs"):
        fc(params, {k: v for k, v in batch.items() if k != "old_log_probs"}, None)
    with pytest.raises(ValueError, match="surrogate"):
        L.PolicyLossConfig(surrogate="ppo")
    with pytest.raises(ValueError, match="kl_beta"):
        L.PolicyLossConfig(kl_beta=-1.0)


@pytest.mark.slow  # ~15 s of compiles; the fast tier checks the scorer itself (test_logprobs) and test_rl
def test_rl_loss_shared_prompt_layout_equals_joined_rows():
    """Each prompt run once for its M completions: the loss and gradient of the joined rows (clipped surrogate
    and KL, so old and reference log-probs in both layouts too; REINFORCE: test_frozen_base, test_rl)."""
    from cat_jax import logprobs, sampling
    from cat_jax.models import llama
    from cat_jax.testing import tiny_model

    m = tiny_model(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
    )
    make_cache = functools.partial(llama.init_cache, m.config)
    prompts = jnp.array([[1, 5, 6, 0], [1, 7, 8, 9]], jnp.int32)
    lengths = jnp.array([3, 4], jnp.int32)
    completions = jax.random.randint(jax.random.key(0), (2, 3, 4), 0, 16)
    mask = jnp.arange(4)[None, None, :] < jnp.array([[4, 2, 1], [3, 4, 2]])[..., None]
    old_params, ref_params = (
        jax.tree.map(lambda x, s=s: x + 0.01 * jax.random.normal(jax.random.key(s), x.shape), m.params)
        for s in (7, 8)
    )
    cfg = L.PolicyLossConfig(surrogate="clipped", kl_beta=0.05)
    fn = L.make_rl_loss_fn(m.apply, config=cfg, make_cache=make_cache)
    common = {"advantages": jnp.array([[1.0, -0.5, 0.7], [-1.2, 0.3, 0.4]]), "weights": jnp.ones((2, 3))}
    tokens, tmask = sampling.join(prompts, lengths, completions, mask)
    score = lambda p: logprobs.shared_prompt_log_probs(
        m.apply, p, make_cache, prompts, lengths, completions, mask
    )
    joined_score = lambda p: sampling.sequence_log_probs(m.apply, p, tokens, tmask)
    old_s, ref_s, old_j, ref_j = jit(lambda ps: [f(p) for f in (score, joined_score) for p in ps])(
        (old_params, ref_params)
    )
    shared = {**common, "prompts": prompts, "lengths": lengths, "completions": completions, "mask": mask}
    shared |= {"old_log_probs": old_s, "ref_log_probs": ref_s}
    joined = {**common, "tokens": tokens, "mask": tmask, "old_log_probs": old_j, "ref_log_probs": ref_j}
    run = jit(lambda p, b: jax.value_and_grad(lambda q: fn(q, b, None), has_aux=True)(p))
    (loss_s, met_s), g_s = run(m.params, shared)
    (loss_j, met_j), g_j = run(m.params, joined)
    np.testing.assert_allclose(loss_s, loss_j, rtol=1e-5)
    np.testing.assert_allclose(met_s["rl/kl"], met_j["rl/kl"], rtol=1e-4, atol=1e-7)
    for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g_j), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))
    with pytest.raises(ValueError, match="needs make_rl_loss_fn"):
        L.make_rl_loss_fn(m.apply, config=cfg)(m.params, shared, None)
