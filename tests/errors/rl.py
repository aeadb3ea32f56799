"""Bad inputs of cat_jax.rl: rows of docs/errors.md (see tests/errors/__init__.py)."""

from cat_jax import advantages as adv
from cat_jax import losses as los
from cat_jax import rl, sampling
from cat_jax import weights as wts

from . import DOMAIN, STATIC, raises

# fmt: off
CASES = [
    raises("rl.make_rl_step", STATIC, "rollout num_samples=1 (no group to compare)",
           lambda: rl.make_rl_step(None, None, None,
                                   rollout=sampling.SampleConfig(num_samples=1, max_new_tokens=4),
                                   weights=wts.WeightConfig(), advantages=adv.AdvantageConfig(),
                                   loss=los.PolicyLossConfig()),
           r"num_samples must be an integer in >= 2, got 1"),
    raises("sampling.SampleConfig", DOMAIN, "temperature=0",
           lambda: sampling.SampleConfig(num_samples=4, max_new_tokens=4, temperature=0.0),
           r"temperature must be a float > 0 for sampling"),
    raises("rl.make_rl_step", STATIC, "transform_k=9 > num_samples=4",
           lambda: rl.make_rl_step(None, None, None,
                                   rollout=sampling.SampleConfig(num_samples=4, max_new_tokens=4),
                                   weights=wts.WeightConfig(), advantages=adv.AdvantageConfig(),
                                   loss=los.PolicyLossConfig(), reward_transform="pkpo_pass", transform_k=9),
           r"transform_k must be an integer in \[1, 4\], got 9"),
]
# fmt: on
