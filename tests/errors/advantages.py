"""Bad inputs of cat_jax.advantages: rows of docs/errors.md (see tests/errors/__init__.py)."""

import numpy as np

from cat_jax import advantages as adv

from . import DOMAIN, EMPTY, NONFINITE, SHAPE, STATIC, UNKNOWN, all_nan, raises, returns

binary = np.array([[1.0, 0.0], [0.0, 0.0]])

# fmt: off
CASES = [
    raises("advantages.group_advantages", SHAPE, "a scalar reward",
           lambda: adv.group_advantages(np.float32(1.0)),
           r"rewards must have shape \[\.\.\., M\], got a scalar"),
    raises("advantages.group_advantages", EMPTY, "rewards of shape [B, 0]",
           lambda: adv.group_advantages(np.zeros((2, 0))),
           r"M \(rewards\.shape\[-1\]\) must be an integer in >= 2, got 0"),
    raises("advantages.group_advantages", STATIC, "eps=-1", lambda: adv.group_advantages(binary, eps=-1.0),
           r"eps must be > 0 for the group estimator"),
    raises("advantages.AdvantageConfig", STATIC, "eps=0 (an all-equal group divides by 0)",
           lambda: adv.AdvantageConfig(eps=0.0), r"eps must be > 0 for the group estimator"),
    raises("advantages.group_advantages", DOMAIN, "reward 0.5 with all_wrong_penalty > 0",
           lambda: adv.group_advantages(np.array([[0.5, 0.0]]), all_wrong_penalty=0.5),
           r"rewards must be exactly 0 or 1"),
    returns("advantages.group_advantages", NONFINITE, "a NaN reward (no all_wrong_penalty)",
            lambda: adv.group_advantages(np.array([[1.0, np.nan]])),
            "NaN advantages for that prompt (a trainer's non-finite guard stops on them)", all_nan),
    raises("advantages.passk_group_advantages", STATIC, "k > M (k=3, M=2)",
           lambda: adv.passk_group_advantages(binary, k=3),
           r"k must be an integer in \[1, 2\]"),
    raises("advantages.AdvantageConfig", STATIC, "all_wrong_penalty with filter_zero_variance",
           lambda: adv.AdvantageConfig(all_wrong_penalty=0.5, filter_zero_variance=True),
           r"all_wrong_penalty > 0 contradicts filter_zero_variance=True"),
    raises("advantages.AdvantageConfig", UNKNOWN, 'estimator="grpo"',
           lambda: adv.AdvantageConfig(estimator="grpo"),
           r"estimator must be one of"),
    raises("advantages.RewardHistory.create", STATIC, "capacity=0",
           lambda: adv.RewardHistory.create(capacity=0),
           r"capacity must be an integer in >= 1"),
    raises("advantages.within_prompt_quantiles", NONFINITE, "a NaN reward",
           lambda: adv.within_prompt_quantiles(np.array([[1.0, np.nan]])),
           r"rewards must be finite to rank them, got \[nan\]"),
    raises("advantages.compute_advantages", STATIC, "config as a dict",
           lambda: adv.compute_advantages(binary, config={}),
           r"config must be an AdvantageConfig, got dict"),
]
# fmt: on
