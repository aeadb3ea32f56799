"""The jitted CAT RL step: scoring, every weight strategy end to end on a tiny model, KL, history."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama
from cat_jax.testing import tiny_model

EOS = 2


def test_exact_match_scores():
    comp = jnp.array([[[5, 6, EOS, 0], [5, 6, EOS, 0], [5, 7, EOS, 0], [5, 6, 6, 6]]])
    mask = jnp.array([[[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]]], bool)
    batch = {
        "targets": jnp.array([[5, 6, EOS]]),
        "target_lengths": jnp.array([3]),
        "stop_token": jnp.array([EOS]),
    }
    s = rl.exact_match_scores(comp, mask, batch)
    np.testing.assert_array_equal(s.rewards, [[1, 1, 0, 0]])
    np.testing.assert_array_equal(s.valid, [[True, True, True, False]])
    np.testing.assert_array_equal(s.answer_ids, [[0, 0, 2, 3]])


MODEL = tiny_model(
    vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
)
BATCH = {
    "prompts": jnp.array([[1, 5, 6, 0], [1, 7, 8, 9]], jnp.int32),
    "lengths": jnp.array([3, 4], jnp.int32),
    "targets": jnp.array([[3, EOS], [4, EOS]], jnp.int32),
    "target_lengths": jnp.array([2, 2], jnp.int32),
    "stop_token": jnp.array([EOS, EOS], jnp.int32),
}
ROLLOUT = sampling.SampleConfig(num_samples=4, max_new_tokens=3, temperature=1.0)


def _step(weights, *, kl=0.0, penalty=0.0, surrogate="reinforce"):
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-2))
    fn = rl.make_rl_step(
        MODEL.apply,
        tx,
        functools.partial(llama.init_cache, MODEL.config),
        rollout=ROLLOUT,
        weights=weights,
        advantages=adv.AdvantageConfig(all_wrong_penalty=penalty),
        loss=losses.PolicyLossConfig(kl_beta=kl, surrogate=surrogate),
        stop_tokens=(EOS,),
    )
    return tx, jax.jit(fn)


@pytest.mark.parametrize(
    "weights",
    # Each configuration compiles the whole rollout + update (~15 s on 2 cores): the two with the most
    # moving parts here; every strategy's weights are unit-tested in test_weights.py.
    [
        wts.WeightConfig(strategy="majority", n=4, probability="empirical", normalize=True, clip=10.0),
        wts.WeightConfig(strategy="bon", n=4, quantile="history", normalize=True),
        # One p per prompt: the reference answer (batch targets) teacher-forced under the current policy.
        wts.WeightConfig(strategy="passn", n=4, form="log", probability="exact"),
    ],
    ids=["majority-raw", "bon-history", "passn-exact"],
)
def test_rl_step_runs_and_updates(weights):
    tx, step = _step(weights, penalty=0.5 if weights.strategy == "majority" else 0.0)
    extra = {"history": adv.RewardHistory.create(16)} if weights.strategy == "bon" else {}
    state = train_lib.TrainState.create(MODEL.params, tx, seed=0, extra=extra)
    state, metrics = step(state, BATCH)
    state2, metrics2 = step(state, BATCH)
    assert int(state2.step) == 2 and bool(metrics2["train/finite"])
    for name, v in metrics2.items():
        assert bool(jnp.all(jnp.isfinite(jnp.asarray(v, jnp.float32)))), name
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), MODEL.params, state2.params)
    # An all-equal-reward batch can leave the policy term at zero; the first step must still be well-formed.
    assert any(jax.tree.leaves(changed)) or float(metrics["advantages/abs_mean"]) == 0.0
    if weights.strategy == "bon":
        assert int(state2.extra["history"].count) == 2 * 2 * 4


def test_kl_is_zero_at_the_reference_and_ratio_is_one():
    tx, step = _step(wts.WeightConfig(), kl=0.1, surrogate="clipped")
    state = train_lib.TrainState.create(MODEL.params, tx, seed=0, extra={"reference": MODEL.params})
    _, metrics = step(state, BATCH)
    assert abs(float(metrics["rl/kl"])) < 1e-6
    # One update per batch with old = current parameters: the sequence ratio is exactly 1 (SPEC §2.7 note).
    assert abs(float(metrics["rl/ratio"]) - 1.0) < 1e-5


def test_rollout_config_validation():
    with pytest.raises(ValueError, match="num_samples must be an integer in >= 2, got 1"):
        rl.make_rl_step(
            MODEL.apply,
            train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-2)),
            functools.partial(llama.init_cache, MODEL.config),
            rollout=sampling.SampleConfig(num_samples=1, max_new_tokens=3),
            weights=wts.WeightConfig(),
            advantages=adv.AdvantageConfig(),
            loss=losses.PolicyLossConfig(),
        )
    with pytest.raises(ValueError, match="temperature"):
        sampling.SampleConfig(temperature=0.0)
