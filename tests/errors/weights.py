"""Bad inputs of cat_jax.weights: rows of docs/errors.md (see tests/errors/__init__.py)."""

import jax.numpy as jnp
import numpy as np

from cat_jax import weights as wts

from . import DOMAIN, EMPTY, NONFINITE, SHAPE, STATIC, UNKNOWN, raises, returns

binary = np.array([[1.0, 0.0], [0.0, 0.0]])
pn = wts.WeightConfig(strategy="passn", n=4)
exact = wts.WeightConfig(strategy="passn", n=4, probability="exact")

# fmt: off
CASES = [
    raises("weights.mean_normalize", EMPTY, "an empty weight array",
           lambda: wts.mean_normalize(np.zeros((0,), np.float32)),
           r"w must hold at least one weight to normalise, got an empty array"),
    raises("weights.WeightConfig", UNKNOWN, 'strategy="pass"', lambda: wts.WeightConfig(strategy="pass"),
           r"strategy must be one of \['bon', 'majority', 'passn', 'standard'\], got 'pass'"),
    raises("weights.WeightConfig", STATIC, 'strategy="standard", n=4',
           lambda: wts.WeightConfig(strategy="standard", n=4),
           r"n must be 1 with strategy='standard'"),
    raises("weights.WeightConfig", STATIC, "clip=0",
           lambda: wts.WeightConfig(strategy="passn", n=4, clip=0.0),
           r"clip must be a number > 0 or None, got 0\.0"),
    raises("weights.WeightConfig", STATIC, 'strategy="majority", n=1',
           lambda: wts.WeightConfig(strategy="majority", n=1),
           r"n must be >= 2 with strategy='majority', got n=1"),
    raises("weights.WeightConfig", STATIC, 'strategy="bon", form="log"',
           lambda: wts.WeightConfig(strategy="bon", n=4, form="log"),
           r"form must be 'raw' with strategy='bon' \(rank weight only\), got 'log'"),
    raises("weights.cat_weights", SHAPE, "reference_logp [B, M] with probability='exact' (one p per prompt)",
           lambda: wts.cat_weights(binary, config=exact, reference_logp=np.zeros((2, 2))),
           r"reference_logp must have shape \[B\] = \(2,\), got \(2, 2\)"),
    raises("weights.cat_weights", SHAPE, "rewards of shape [M]",
           lambda: wts.cat_weights(np.ones(4), config=pn),
           r"rewards must have shape \[B, M\], got \(4,\)"),
    raises("weights.cat_weights", DOMAIN, "reward 0.5 with strategy='passn' (needs a verifier)",
           lambda: wts.cat_weights(np.array([[1.0, 0.5]]), np.zeros((1, 2)), config=pn),
           r"rewards must be exactly 0 or 1 \(strategy='passn' needs a binary verifier\); got \[0\.5\]"),
    raises("weights.cat_weights", NONFINITE, "a NaN reward with strategy='passn'",
           lambda: wts.cat_weights(np.array([[1.0, np.nan]]), np.zeros((1, 2)), config=pn),
           r"rewards must be exactly 0 or 1 .*got \[nan\]"),
    raises("weights.cat_weights", STATIC, "probability='sequence' without old_logp",
           lambda: wts.cat_weights(binary, config=pn),
           r"old_logp must be given with probability='sequence'"),
    raises("weights.cat_weights", SHAPE, "old_logp [2, 1] vs rewards [2, 2]",
           lambda: wts.cat_weights(binary, np.zeros((2, 1)), config=pn),
           r"old_logp must have the rewards' shape \(2, 2\), got \(2, 1\)"),
    raises("weights.cat_weights", STATIC, "strategy='majority' without answer_ids",
           lambda: wts.cat_weights(
               binary, config=wts.WeightConfig(strategy="majority", n=4, probability="empirical")),
           r"answer_ids and answer_valid must be given with strategy='majority'"),
    raises("weights.cat_weights", STATIC, "config as a dict", lambda: wts.cat_weights(binary, config={}),
           r"config must be a WeightConfig, got dict"),
    raises("weights.cat_weights", NONFINITE, "a NaN reward with strategy='bon'",
           lambda: wts.cat_weights(np.array([[1.0, np.nan]]), config=wts.WeightConfig(strategy="bon", n=4)),
           r"rewards must be finite to rank them, got \[nan\]"),
    raises("weights.pkpo_pass_rewards", STATIC, "k > M (k=3, M=2)",
           lambda: wts.pkpo_pass_rewards(binary, k=3),
           r"k must be an integer in \[1, 2\], got 3"),
    raises("weights.get_transform", UNKNOWN, '"pkpo"', lambda: wts.get_transform("pkpo"),
           r"transform must be one of"),
    returns("weights.sequence_probability", DOMAIN, "old_logp = 0.5 > 0",
            lambda: wts.sequence_probability(jnp.array([0.5])),
            "p = 1: SPEC §2.5 clips log p_old to [-50, 0] and p to [1e-10, 1 - 1e-10] (the reference's rule)",
            lambda x: float(x[0]) == 1.0),
]
# fmt: on
