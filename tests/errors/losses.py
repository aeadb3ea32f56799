"""Bad inputs of cat_jax.losses: rows of docs/errors.md (see tests/errors/__init__.py)."""

import jax.numpy as jnp
import numpy as np

from cat_jax import losses as los

from . import DOMAIN, DTYPE, EMPTY, SHAPE, STATIC, UNKNOWN, all_nan, raises, returns

labels = np.array([[-100, 5, 6]])

# fmt: off
CASES = [
    raises("losses.check_supervision", DTYPE, "float labels",
           lambda: los.check_supervision(labels.astype(float)),
           r"labels must be an integer array \[\.\.\., L\], got float64\[1, 3\]"),
    raises("losses.check_supervision", DOMAIN, "a label id >= vocab_size",
           lambda: los.check_supervision(labels, vocab_size=6),
           r"labels must be -100 or in \[0, 6\), got \[6\]"),
    raises("losses.check_supervision", DOMAIN, "a supervised label at position 0",
           lambda: los.check_supervision(np.array([[5, 6]])),
           r"labels at position 0 must be -100: no logit predicts the first token"),
    raises("losses.check_supervision", SHAPE, "mask [1, 2] vs labels [1, 3]",
           lambda: los.check_supervision(labels, np.ones((1, 2))),
           r"mask must have the labels' shape \(1, 3\), got \(1, 2\)"),
    raises("losses.check_supervision", EMPTY, "a row without any target",
           lambda: los.check_supervision(np.array([[-100, -100]])),
           r"labels: every row needs >= 1 target, rows \[0\] have none"),
    raises("losses.SFTObjective", UNKNOWN, 'strategy="pass"', lambda: los.SFTObjective(strategy="pass"),
           r"strategy must be one of"),
    raises("losses.SFTObjective", STATIC, 'strategy="passn", n=4, k=2',
           lambda: los.SFTObjective(strategy="passn", n=4, k=2),
           r"k is only used by strategy='majority', got k=2"),
    raises("losses.SFTObjective", STATIC, 'reduction="mean"', lambda: los.SFTObjective(reduction="mean"),
           r"reduction must be one of \['sequence_mean', 'token_mean'\], got 'mean'"),
    raises("losses.PolicyLossConfig", STATIC, "clip_ratio=1.5", lambda: los.PolicyLossConfig(clip_ratio=1.5),
           r"clip_ratio must be in \(0, 1\), got 1\.5"),
    raises("losses.PolicyLossConfig", UNKNOWN, 'surrogate="ppo"',
           lambda: los.PolicyLossConfig(surrogate="ppo"),
           r"surrogate must be one of"),
    raises("losses.make_sft_loss_fn", STATIC, 'objective="passn" (a string)',
           lambda: los.make_sft_loss_fn(None, objective="passn"),
           r"objective must be an SFTObjective, got str"),
    raises("logprobs.token_log_probs", DOMAIN, "temperature=0",
           lambda: los.token_log_probs(jnp.zeros((1, 3, 5)), jnp.zeros((1, 3), int), temperature=0),
           r"temperature must be a number > 0, got 0"),
    raises("losses.token_log_probs", SHAPE, "labels [1, 2] vs logits [1, 3, V]",
           lambda: los.token_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[0, 1]])),
           r"labels must have shape \(1, 3\) \(logits without V\), got \(1, 2\)"),
    returns("losses.token_log_probs", DOMAIN, "a label id >= V (no validation)",
            lambda: los.token_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[-100, 7, 1]])),
            "NaN at that position; completion_log_probs(validate=True) and check_supervision raise instead",
            lambda x: bool(np.isnan(np.asarray(x)[0, 1]))),
    raises("losses.completion_log_probs", DOMAIN, "a label id >= V, validate=True",
           lambda: los.completion_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[-100, 7, 1]]), validate=True),
           r"labels must be -100 or in \[0, 5\), got \[7\]"),
    returns("losses.sft_loss", EMPTY, "a row without any target (no validation)",
            lambda: los.sft_loss(jnp.zeros((1, 3, 5)), jnp.array([[-100, -100, -100]]),
                                 objective=los.SFTObjective())[0],
            "NaN loss (0/0); check_supervision raises instead", all_nan),
    raises("losses.policy_loss_terms", STATIC, 'surrogate="clipped" without old log-probs',
           lambda: los.policy_loss_terms(jnp.zeros((1, 3)), jnp.ones((1, 3), bool), jnp.zeros(1), jnp.ones(1),
                                         config=los.PolicyLossConfig(surrogate="clipped")),
           r"old \(token log-probs of the sampling policy\) is required by surrogate='clipped'"),
    raises("losses.make_rl_loss_fn", SHAPE, "a batch without mask, advantages, weights",
           lambda: los.make_rl_loss_fn(None, config=los.PolicyLossConfig())(None, {"tokens": 1}, None),
           r"batch is missing \['mask', 'advantages', 'weights'\]"),
    raises("losses.make_plurality_sft_loss_fn", STATIC, "n=0",
           lambda: los.make_plurality_sft_loss_fn(None, n=0),
           r"n must be an integer in >= 1, got 0"),
]
# fmt: on
