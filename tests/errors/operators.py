"""Bad inputs of cat_jax.operators: rows of docs/errors.md (see tests/errors/__init__.py)."""

import numpy as np

from cat_jax import operators as ops

from . import DOMAIN, DTYPE, EMPTY, NONFINITE, SHAPE, STATIC, raises, returns

ids = np.array([[1, 1, 2]], np.int32)
ok3 = np.array([[True, True, False]])

# fmt: off
CASES = [
    raises("operators.pass_at_k", SHAPE, "correct of shape [N] (no problem axis)",
           lambda: ops.pass_at_k(np.ones(3, bool), k=1),
           r"correct must be a \[B, N\] array with N >= 1 samples per problem, got shape \(3,\)"),
    raises("operators.pass_at_k", EMPTY, "correct of shape [B, 0]",
           lambda: ops.pass_at_k(np.ones((2, 0), bool), k=1),
           r"correct must be a \[B, N\] array with N >= 1 samples per problem, got shape \(2, 0\)"),
    raises("operators.pass_at_k", STATIC, "k > n (k=5, n=3)", lambda: ops.pass_at_k(ok3, k=5),
           r"k must be an integer in \[1, 3\], got 5"),
    raises("operators.pass_at_k", DTYPE, "correct as floats (0.3, 1.0, 0.0)",
           lambda: ops.pass_at_k(np.array([[0.3, 1.0, 0.0]]), k=1),
           r"correct must be boolean or exactly 0/1"),
    raises("operators.pass_at_k", NONFINITE, "correct containing NaN",
           lambda: ops.pass_at_k(np.array([[np.nan, 1.0]]), k=1),
           r"correct must be boolean or exactly 0/1, got \[nan\]"),
    raises("operators.pass_at_k", STATIC, "k=True", lambda: ops.pass_at_k(ok3, k=True),
           r"k must be a Python integer, got True \(bool\)"),
    returns("operators.pass_at_k", EMPTY, "correct of shape [0, N] (no problems)",
            lambda: ops.pass_at_k(np.zeros((0, 3), bool), k=1),
            "an empty [0] array", lambda x: x.shape == (0,)),
    raises("operators.majority_at_k", DTYPE, "answer_ids as floats",
           lambda: ops.majority_at_k(ids.astype(float), ok3, k=2),
           r"answer_ids must be integer cluster labels, got dtype float"),
    raises("operators.majority_at_k", SHAPE, "correct [1, 2] vs answer_ids [1, 3]",
           lambda: ops.majority_at_k(ids, ok3[:, :2], k=2),
           r"correct must have the shape of answer_ids \(1, 3\), got \(1, 2\)"),
    raises("operators.majority_at_k", STATIC, 'ties="random"',
           lambda: ops.majority_at_k(ids, ok3, k=2, ties="random"),
           r"ties must be one of \['fail', 'first'\], got 'random'"),
    raises("operators.majority_at_k", DOMAIN, "one answer id marked both correct and wrong",
           lambda: ops.majority_at_k(ids, np.array([[True, False, False]]), k=2),
           r"correct disagrees with answer_ids inside one cluster: problem 0, answer id 1"),
    raises("operators.majority_at_k", STATIC, "max_clusters below the distinct answers",
           lambda: ops.majority_at_k(ids, ok3, k=2, max_clusters=1),
           r"max_clusters=1 but a problem has 2 distinct valid answers"),
    raises("operators.best_of_k", NONFINITE, "a NaN reward",
           lambda: ops.best_of_k(np.array([[1.0, np.nan]]), k=1),
           r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): nan"),
    raises("operators.best_of_k", NONFINITE, "an inf reward",
           lambda: ops.best_of_k(np.array([[1.0, np.inf]]), k=1),
           r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): inf"),
    raises("operators.scaling_curve", STATIC, "ks=[1, 5] with n=3",
           lambda: ops.scaling_curve(ops.pass_at_k, ok3, ks=[1, 5]),
           r"ks must be an integer in \[1, 3\], got 5"),
    raises("operators.scaling_curve", EMPTY, "ks=[]", lambda: ops.scaling_curve(ops.pass_at_k, ok3, ks=[]),
           r"ks must name at least one budget"),
    raises("operators.majority_vote", SHAPE, "answer_ids of shape [N]",
           lambda: ops.majority_vote(np.array([1, 2])),
           r"answer_ids must be a \[B, N\] array"),
    raises("operators.best_of_n", NONFINITE, "a NaN reward", lambda: ops.best_of_n(np.array([[1.0, np.nan]])),
           r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): nan"),
]
# fmt: on
