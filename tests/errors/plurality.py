"""Bad inputs of cat_jax.plurality: rows of docs/errors.md (see tests/errors/__init__.py)."""

import jax.numpy as jnp
import numpy as np

from cat_jax import plurality as plu

from . import DOMAIN, NONFINITE, SHAPE, STATIC, raises

# fmt: off
CASES = [
    raises("plurality.plurality_win_probability", SHAPE, "probs of shape [C]",
           lambda: plu.plurality_win_probability(np.array([0.5, 0.5]), np.array([0]), n=4),
           r"probs must be a \[B, C\] array, got shape \(2,\)"),
    raises("plurality.plurality_win_probability", DOMAIN, "probs summing to 1.5",
           lambda: plu.plurality_win_probability(np.array([[1.0, 0.5]]), np.array([0]), n=4),
           r"probs must"),
    raises("plurality.plurality_win_probability", DOMAIN, "target = 2 with C = 2 answers",
           lambda: plu.plurality_win_probability(np.array([[0.5, 0.5]]), np.array([2]), n=4),
           r"target must index one of the 2 answers, got \[2\]"),
    raises("plurality.plurality_win_probability", NONFINITE, "a NaN probability",
           lambda: plu.plurality_win_probability(np.array([[np.nan, 0.5]]), np.array([0]), n=4),
           r"probs must be >= 0 with rows summing to at most 1"),
    raises("plurality.plurality_win_probability", STATIC, "n=4.0",
           lambda: plu.plurality_win_probability(np.array([[0.5, 0.5]]), np.array([0]), n=4.0),
           r"n must be a Python integer, got 4\.0 \(float\)"),
    raises("plurality.majority_exact_sft_loss", STATIC, 'reduction="avg"',
           lambda: plu.majority_exact_sft_loss(jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([0]), n=4,
                                               reduction="avg"),
           r"reduction must be one of"),
]
# fmt: on
