"""Bad inputs of cat_jax.evaluation and cat_jax.reporting: rows of docs/errors.md (see tests/errors)."""

import numpy as np

from cat_jax import evaluation as ev
from cat_jax import operators as ops
from cat_jax import reporting, sampling

from . import DOMAIN, SHAPE, STATIC, raises

ok3 = np.array([[True, True, False]])

# fmt: off
CASES = [
    raises("sampling.SampleConfig", DOMAIN, "top_p=0", lambda: sampling.SampleConfig(top_p=0.0),
           r"top-p must be in \(0, 1\], got p=0\.0"),
    raises("evaluation.generate", SHAPE, "prompts of shape [P]",
           lambda: ev.generate(None, None, None, np.zeros(4), np.zeros(1), None, sampling.SampleConfig()),
           r"prompts must be \[B, P\] with lengths \[B\]; got \(4,\) and \(1,\)"),
    raises("evaluation.curves", STATIC, "ks=[1, 4] with N=3 samples",
           lambda: ev.curves(ev.Scored(correct=np.ones((2, 3), bool)), [1, 4]),
           r"ks must be an integer in \[1, 3\], got 4"),
    raises("reporting.markdown_table", STATIC, "a budget the curve does not have",
           lambda: reporting.markdown_table({"ce": ops.scaling_curve(ops.pass_at_k, ok3)}, [1, 8]),
           r"curve 'ce' has no budgets \[8\]; it has ks=\[1, 2, 3\]"),
]
# fmt: on
