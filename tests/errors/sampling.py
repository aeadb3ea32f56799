"""Bad inputs of cat_jax.sampling: rows of docs/errors.md (see tests/errors/__init__.py)."""

import functools

import jax
import jax.numpy as jnp

from cat_jax import sampling as smp
from cat_jax.models import llama

from . import DOMAIN, SHAPE, STATIC, UNKNOWN, raises


@functools.cache
def _tiny():
    config = llama.LlamaConfig.tiny()
    graphdef, params = llama.abstract(config)
    return config, llama.decoder(graphdef), params


def _sample(**over):
    """``sample`` on the tiny Llama, ``over`` replacing arguments. Its checks run before the model does, so
    the parameters are shapes only (``llama.abstract``): no model is initialised for a call that never runs.
    """
    config, apply, params = _tiny()
    kw = {
        "prompts": jnp.array([[5, 6, 7, 0]]),
        "lengths": jnp.array([3]),
        "cache": llama.init_cache(config, 1, 4 + 2),
        "num_samples": 2,
        "max_new_tokens": 2,
        "strategy": smp.Temperature(1.0),
    } | over
    args = (apply, params, kw.pop("cache"), kw.pop("prompts"), kw.pop("lengths"), jax.random.key(0))
    return smp.sample(*args, **kw)


# fmt: off
CASES = [
    raises("sampling.Temperature", DOMAIN, "temperature=0", lambda: smp.Temperature(0.0),
           r"temperature must be a float > 0 for sampling, got 0\.0; use Greedy\(\) for argmax"),
    raises("sampling.TopP", DOMAIN, "p=1.5", lambda: smp.TopP(1.5),
           r"top-p must be in \(0, 1\], got p=1\.5; use p=1 to disable the filter"),
    raises("sampling.TopK", STATIC, "k=-1", lambda: smp.TopK(-1), r"k must be an integer in >= 0, got -1"),
    raises("sampling.strategy_for", DOMAIN, "top_p=1.5", lambda: smp.strategy_for(top_p=1.5),
           r"top-p must be in \(0, 1\], got p=1\.5"),
    raises("sampling.sample", STATIC, "num_samples=0", lambda: _sample(num_samples=0),
           r"num_samples must be an integer in >= 1, got 0"),
    raises("sampling.sample", UNKNOWN, 'strategy="greedy" (a string)', lambda: _sample(strategy="greedy"),
           r"strategy must be one of Greedy, Temperature, TopK, TopP; got 'greedy'"),
    raises("sampling.sample", DOMAIN, "a prompt length of 0", lambda: _sample(lengths=jnp.array([0])),
           r"prompt lengths must be in \[1, 4\] \(right padding\), got \[0\]"),
    raises("sampling.sample", SHAPE, "a KV cache with fewer slots than prompt + max_new_tokens",
           lambda: _sample(max_new_tokens=8),
           r"cache"),
]
# fmt: on
