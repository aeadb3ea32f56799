"""Bad inputs of cat_jax.diagnostics: rows of docs/errors.md (see tests/errors/__init__.py)."""

import numpy as np

from cat_jax import diagnostics as dia

from . import DOMAIN, STATIC, UNKNOWN, raises

# fmt: off
CASES = [
    raises("diagnostics.sensitivity", DOMAIN, "p not summing to 1",
           lambda: dia.sensitivity(np.array([0.5, 0.6]), 0, n=4),
           r"p must be a probability vector \(>= 0, sums to 1\)"),
    raises("diagnostics.sensitivity", UNKNOWN, 'strategy="vote"',
           lambda: dia.sensitivity(np.array([0.5, 0.5]), 0, n=4, strategy="vote"),
           r"strategy must be one of"),
    raises("diagnostics.sensitivity", DOMAIN, "target = 5 with 2 categories",
           lambda: dia.sensitivity(np.array([0.5, 0.5]), 5, n=4),
           r"target must be an integer in \[0, 1\], got 5"),
    raises("diagnostics.sensitivity", STATIC, 'strategy="best_of_n" without rewards',
           lambda: dia.sensitivity(np.array([0.5, 0.5]), 0, n=4, strategy="best_of_n"),
           r"rewards are required for strategy='best_of_n'"),
    raises("diagnostics.plus_ratio_to_rho", DOMAIN, "r = 0.3 (outside (0.5, 1])",
           lambda: dia.plus_ratio_to_rho([0.3]),
           r"r must lie in \(0\.5, 1\]"),
    raises("diagnostics.sensitivity_mc", STATIC, "trials=1",
           lambda: dia.sensitivity_mc(np.array([0.5, 0.5]), 0, n=4, trials=1),
           r"trials must be an integer in >= 2, got 1"),
    raises("diagnostics.passn_weight_cosine_table", STATIC, "ns=(0, 4)",
           lambda: dia.passn_weight_cosine_table((0, 4)),
           r"n must be an integer in >= 1, got 0"),
]
# fmt: on
