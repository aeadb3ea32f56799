"""Bad inputs of cat_jax.objectives: rows of docs/errors.md (see tests/errors/__init__.py)."""

import functools

import jax
import jax.numpy as jnp

from cat_jax import objectives as obj

from . import DOMAIN, DTYPE, EMPTY, NONFINITE, STATIC, UNKNOWN, all_nan, raises, returns

lp = jnp.array([-0.1, -2.3])

# fmt: off
CASES = [
    raises("objectives.passn_sft_loss", STATIC, "n=0", lambda: obj.passn_sft_loss(lp, n=0),
           r"n must be an integer in >= 1, got 0"),
    raises("objectives.passn_sft_loss", STATIC, "n=4.0", lambda: obj.passn_sft_loss(lp, n=4.0),
           r"n must be a Python integer, got 4\.0 \(float\)"),
    raises("objectives.passn_sft_loss", STATIC, 'reduction="avg"',
           lambda: obj.passn_sft_loss(lp, n=4, reduction="avg"),
           r"reduction must be one of \['mean', 'none', 'sum'\], got 'avg'"),
    raises("objectives.passn_sft_loss", STATIC, "n traced under jit (not static)",
           lambda: jax.jit(obj.passn_sft_loss)(lp, n=4),
           r"n must be a Python integer"),
    raises("objectives.passn_sft_loss", DOMAIN, "log p > 0 (a positive NLL), validate=True",
           lambda: obj.passn_sft_loss(jnp.array([2.3]), n=4, validate=True),
           r"log_p must be a finite log-probability <= 0 \(summed, not a positive NLL\)"),
    raises("objectives.passn_sft_loss", NONFINITE, "log p = NaN or -inf, validate=True",
           lambda: obj.passn_sft_loss(jnp.array([jnp.nan, -jnp.inf]), n=4, validate=True),
           r"log_p must be a finite log-probability <= 0"),
    returns("objectives.passn_sft_loss", DOMAIN, "log p > 0, default validate=False (also under jit)",
            lambda: obj.passn_sft_loss(jnp.array([2.3]), n=4),
            "NaN (documented: out-of-domain values give NaN, never a clamped number)", all_nan),
    returns("objectives.passn_sft_loss", DTYPE, "integer or boolean log p",
            lambda: obj.passn_sft_loss(jnp.array([0, -1]), n=4, reduction="none"),
            "computed in JAX's default float (int/bool -> float32; float16/bfloat16 -> float32)",
            lambda x: str(x.dtype) == "float32"),
    returns("objectives.passn_sft_loss", EMPTY, 'log p of shape [0], reduction="mean"',
            lambda: obj.passn_sft_loss(jnp.zeros((0,)), n=4),
            'NaN, as jnp.mean of nothing ("sum" gives 0, "none" an empty array)', all_nan),
    raises("objectives.passn_sft_loss", DTYPE, "complex log p",
           lambda: obj.passn_sft_loss(jnp.array([-1 + 1j]), n=2),
           r"expected real numbers, got dtype complex64"),
    raises("objectives.majority_sft_loss", STATIC, "k > n (n=4, k=5)",
           lambda: obj.majority_sft_loss(lp, n=4, k=5),
           r"k must be an integer in \[1, 4\], got 5"),
    raises("objectives.passn_probability", DOMAIN, "p = 1.5, validate=True",
           lambda: obj.passn_probability(1.5, n=4, validate=True),
           r"p must lie in \[0, 1\] and not be NaN; got \[1\.5\]"),
    returns("objectives.passn_probability", DOMAIN, "p = 1.5 under jit",
            lambda: jax.jit(functools.partial(obj.passn_probability, n=4))(jnp.array([1.5])),
            "NaN (no clamping; a trainer's non-finite guard stops on it)", all_nan),
    raises("objectives.majority_rl_weight", NONFINITE, "p = NaN, validate=True",
           lambda: obj.majority_rl_weight(jnp.array([jnp.nan]), n=8, k=3, validate=True),
           r"p must lie in \[0, 1\] and not be NaN; got \[nan\]"),
    raises("objectives.bon_rl_weight", DOMAIN, "q = -0.1, validate=True",
           lambda: obj.bon_rl_weight(-0.1, n=4, validate=True),
           r"q must lie in \[0, 1\]"),
    raises("objectives.passn_sft_weight_from_logp", STATIC, "validate=True inside jit",
           lambda: jax.jit(functools.partial(obj.passn_sft_weight_from_logp, n=4, validate=True))(lp),
           r"validate=True needs a concrete log_p, but it is traced"),
    raises("objectives.get", UNKNOWN, 'get("pass", n=4)', lambda: obj.get("pass", n=4),
           r"strategy must be one of \['bon', 'ce', 'majority', 'passn'\], got 'pass'"),
    raises("objectives.get", STATIC, 'get("majority", n=8) (k missing)', lambda: obj.get("majority", n=8),
           r"strategy 'majority' got budgets \['n'\]: .*missing 1 required keyword-only argument: 'k'"),
    raises("objectives.from_success_fn", STATIC, "success_fn=0.5 (not callable)",
           lambda: obj.from_success_fn(0.5),
           r"success_fn must be callable, got float"),
]
# fmt: on
