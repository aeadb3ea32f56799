r"""CAT SFT: train a policy with CE, Pass@N or Majority objectives, then evaluate its test-time scaling.

One run is one phase. A warm-up is a CE run; a branch is a run whose ``init_from`` names the warm-up's
workdir, so every branch starts from the same weights with a fresh optimizer and schedule (SPEC §3.2)::

    python -m experiments.sft --config=configs/sft/arith.py:warmup --workdir=/tmp/cat/warmup
    python -m experiments.sft --config=configs/sft/arith.py:passn16 --workdir=/tmp/cat/passn16 \
        --config.init_from=/tmp/cat/warmup

Each run auto-resumes from its workdir, writes ``metrics.jsonl`` while training and ``results.json``
(pass@k / maj@k curves with standard errors on held-out problems, exact estimators) at the end.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cat_jax import losses, train_lib
from cat_jax.tasks.task_data import TaskData
from experiments import cli, common


def objective_from_config(cfg: ml_collections.ConfigDict) -> losses.SFTObjective:
    return losses.SFTObjective(strategy=cfg.strategy, n=int(cfg.n), k=int(cfg.k), reduction=cfg.reduction)


def loss_and_examples(cfg: ml_collections.ConfigDict, apply, data: TaskData):
    """The loss of ``objective`` and ``examples(rows) -> batch`` of a batch of train rows it reads.

    ``strategy="plurality"`` is the exact Majority-Vote objective over the task's whole answer set (every
    candidate answer is scored after each prompt, so only tasks with a small finite answer set run it);
    ``ce`` / ``passn`` / ``majority`` read the plain sequences.
    """
    if cfg.strategy == "plurality":
        if int(cfg.k) != 1:
            raise ValueError(f"objective.k is not used by strategy='plurality'; set it to 1, got {cfg.k}")
        if cfg.reduction != "sequence_mean":  # the loss is per prompt: no token-level window to average
            raise ValueError(
                f"strategy='plurality' supports reduction='sequence_mean' only, got {cfg.reduction!r}"
            )
        data.candidate_batch(np.arange(1))  # a task without an enumerated answer set fails here, not mid-run
        loss = losses.make_plurality_sft_loss_fn(apply, n=int(cfg.n))
        return loss, lambda rows: {k: jnp.asarray(v) for k, v in data.candidate_batch(rows["index"]).items()}
    loss = losses.make_sft_loss_fn(apply, objective=objective_from_config(cfg))
    return loss, lambda rows: {"tokens": jnp.asarray(rows["tokens"]), "labels": jnp.asarray(rows["labels"])}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train one SFT phase from ``config`` in ``workdir`` (auto-resume), evaluate it, return the results."""

    def build(phase: common.Phase) -> common.Training:
        loss_fn, examples = loss_and_examples(config.objective, phase.apply, phase.data)
        rows = phase.data.batches(int(config.batch_size), seed=int(config.seed)).sharded(phase.shard)
        num_steps = math.ceil(float(config.epochs) * rows.per_epoch)
        tx = train_lib.make_optimizer(common.optimizer_config(config.opt, total_steps=num_steps))
        step = jax.jit(train_lib.make_train_step(loss_fn, tx), donate_argnums=0)
        state = train_lib.TrainState.create(phase.params, tx, seed=int(config.seed))
        step = common.with_frozen_step(step, phase.frozen)
        return common.Training(state, step, lambda i: examples(rows(i)), num_steps)

    return common.run_phase(
        config, workdir, build, objective=config.objective.to_dict(), epochs=float(config.epochs)
    )


if __name__ == "__main__":
    cli.program(run)
