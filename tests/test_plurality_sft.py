"""The exact plurality SFT loss_fn on a finite candidate set: value, finite gradients, rivals pushed down."""

import jax
import jax.numpy as jnp
import numpy as np

from cat_jax import losses, plurality, train_lib
from cat_jax.testing import tiny_model

MODEL = tiny_model(
    vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1
)


def _batch():
    prompt = [1, 5, 6]
    answers = [[7, 2], [8, 2], [9, 2]]  # three candidate answers, each followed by EOS (2)
    toks = np.array([[prompt + a for a in answers]] * 2, np.int32)  # [b=2, C=3, L=5]
    labels = np.where(np.arange(5)[None, None, :] >= 3, toks, -100).astype(np.int32)
    return {"candidate_tokens": toks, "candidate_labels": labels, "target": np.array([0, 1], np.int32)}


def test_value_matches_plurality_and_training_helps_target():
    loss_fn = losses.make_plurality_sft_loss_fn(MODEL.apply, n=5)
    batch = _batch()
    loss, metrics = jax.jit(loss_fn)(MODEL.params, batch, None)
    tokens = jnp.asarray(batch["candidate_tokens"]).reshape(6, 5)
    logits, _ = MODEL.apply(MODEL.params, tokens, jnp.broadcast_to(jnp.arange(5)[None], (6, 5)), None)
    lp, _ = losses.completion_log_probs(logits, jnp.asarray(batch["candidate_labels"]).reshape(6, 5))
    expected = plurality.majority_exact_sft_loss(lp.reshape(2, 3), batch["target"], n=5)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert 0 < float(metrics["sft/answer_mass"]) <= 1

    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=3e-2))
    step = jax.jit(train_lib.make_train_step(loss_fn, tx))
    state = train_lib.TrainState.create(MODEL.params, tx, seed=0)
    first = None
    for _ in range(5):
        state, m = step(state, batch)
        assert bool(m["train/finite"])
        first = float(m["loss/total"]) if first is None else first
    assert float(m["loss/total"]) < first
