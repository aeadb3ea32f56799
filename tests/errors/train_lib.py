"""Bad inputs of cat_jax.train_lib: rows of docs/errors.md (see tests/errors/__init__.py)."""

import tempfile

import jax.numpy as jnp
import optax

from cat_jax import train_lib as tl

from . import DOMAIN, MISSING, NONFINITE, STATIC, UNKNOWN, raises


def _train_loop(**over):
    """``train_loop`` of two steps whose loss is NaN, in a temporary workdir, ``over`` replacing arguments."""
    state = tl.TrainState.create({"w": jnp.zeros(2)}, optax.sgd(0.1), seed=0)

    def nan_step(state, batch):
        return state, {"loss/total": jnp.nan, "train/finite": jnp.asarray(False)}

    with tempfile.TemporaryDirectory() as d:
        kw = {"num_steps": 2, "workdir": d, "progress": False} | over
        return tl.train_loop(state, nan_step, lambda step: None, **kw)


# fmt: off
CASES = [
    raises("train_lib.OptimizerConfig", UNKNOWN, 'schedule="step"',
           lambda: tl.OptimizerConfig(schedule="step"),
           r"schedule must be one of \['constant', 'cosine', 'linear'\], got 'step'"),
    raises("train_lib.OptimizerConfig", STATIC, 'schedule="cosine" without total_steps',
           lambda: tl.OptimizerConfig(schedule="cosine"),
           r"schedule='cosine' needs total_steps > warmup_steps, got total_steps=0, warmup_steps=0"),
    raises("train_lib.OptimizerConfig", DOMAIN, "lr=0", lambda: tl.OptimizerConfig(lr=0.0),
           r"lr must be > 0, got 0\.0"),
    raises("train_lib.OptimizerConfig", NONFINITE, "lr=nan", lambda: tl.OptimizerConfig(lr=float("nan")),
           r"lr must be > 0, got nan"),
    raises("train_lib.OptimizerConfig", STATIC, "clip_norm=0", lambda: tl.OptimizerConfig(clip_norm=0.0),
           r"clip_norm must be > 0 or None, got 0\.0"),
    raises("train_lib.OptimizerConfig", STATIC, "accum_steps=0", lambda: tl.OptimizerConfig(accum_steps=0),
           r"accum_steps must be an integer in >= 1, got 0"),
    raises("train_lib.TrainState.create", STATIC, "seed=-1",
           lambda: tl.TrainState.create({}, optax.sgd(0.1), seed=-1),
           r"seed must be an integer in >= 0, got -1"),
    raises("train_lib.Checkpointer", MISSING, 'workdir="/dev/null/run" (not a directory)',
           lambda: tl.Checkpointer("/dev/null/run"),
           r"workdir '/dev/null/run' is not writable \(Not a directory\); choose another --workdir",
           exc=OSError),
    raises("train_lib.Checkpointer", STATIC, "keep=0", lambda: tl.Checkpointer("/dev/null/run", keep=0),
           r"keep must be an integer in >= 1, got 0"),
    raises("train_lib.Checkpointer", UNKNOWN, 'best_mode="low"',
           lambda: tl.Checkpointer("/dev/null/run", best_mode="low"),
           r"best_mode must be one of \['max', 'min'\], got 'low'"),
    raises("train_lib.train_loop", STATIC, "checkpoint_every=0", lambda: _train_loop(checkpoint_every=0),
           r"checkpoint_every must be an integer in >= 1"),
    raises("train_lib.train_loop", NONFINITE, "a step whose loss is NaN", _train_loop,
           r"non-finite loss or gradient at step 0 \(loss=nan\); the state was not updated and the last "
           r"checkpoint is intact",
           exc=FloatingPointError),
    raises("train_lib.MetricWriter", STATIC, "resume_step=-1",
           lambda: tl.MetricWriter("/dev/null/run", resume_step=-1),
           r"resume_step must be an integer in >= 0, got -1"),
]
# fmt: on
