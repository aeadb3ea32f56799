"""Bad inputs of cat_jax.numerics: rows of docs/errors.md (see tests/errors/__init__.py)."""

import jax.numpy as jnp

from cat_jax import numerics

from . import DOMAIN, STATIC, all_nan, raises, returns

# fmt: off
CASES = [
    returns("numerics.log1mexp", DOMAIN, "u = 0.5 > 0", lambda: numerics.log1mexp(jnp.asarray(0.5)),
            "NaN (defined for u <= 0; never clamped)", all_nan),
    raises("numerics.log_binomial_row", STATIC, "n=-1", lambda: numerics.log_binomial_row(-1),
           r"n must be an integer in >= 0, got -1"),
]
# fmt: on
