"""Bad inputs of the RL update's shared-prompt layout (cat_jax.losses.make_rl_loss_fn): rows of
docs/errors.md (see tests/errors/__init__.py)."""

import jax.numpy as jnp

from cat_jax import losses as los

from . import STATIC, raises

shared = {
    "prompts": jnp.ones((1, 2), jnp.int32),
    "lengths": jnp.ones((1,), jnp.int32),
    "completions": jnp.ones((1, 2, 2), jnp.int32),
    "mask": jnp.ones((1, 2, 2), bool),
    "advantages": jnp.zeros((1, 2)),
    "weights": jnp.ones((1, 2)),
}

# fmt: off
CASES = [
    raises("losses.make_rl_loss_fn", STATIC, "a shared-prompt batch without make_cache",
           lambda: los.make_rl_loss_fn(None, config=los.PolicyLossConfig())(None, shared, None),
           r"a shared-prompt batch \(prompts, lengths, completions\) needs make_rl_loss_fn\(\.\.\., "
           r"make_cache=\.\.\.\)"),
]
# fmt: on
