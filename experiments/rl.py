r"""CAT RL: sample M completions per prompt, score them, weight by the CAT objective, one update per batch.

Starts from a warm-up's final parameters (``init_from``; SPEC §3.3) and trains with one jitted step per
batch of prompts (:func:`cat_jax.rl.make_rl_step`)::

    python -m experiments.rl --config=configs/rl/arith.py:passn4_log --workdir=/tmp/cat/rl_passn4 \
        --config.init_from=/tmp/cat/warmup

Auto-resumes from its workdir; writes ``metrics.jsonl`` and, at the end, ``results.json`` with exact pass@k /
maj@k curves on held-out problems.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections

from cat_jax import advantages as adv
from cat_jax import losses, models, rl, sampling, train_lib
from cat_jax import weights as wts
from experiments import cli, common


def scheduled_step(make_step, schedule: list[tuple[int, int]], *, metric: str):
    """A host-side step that jits ``make_step(value)`` once per scheduled value and dispatches on the step."""
    compiled = {}

    def step(state, batch, *frozen):
        value = common.value_at(schedule, int(jax.device_get(state.step)))
        if value not in compiled:
            compiled[value] = jax.jit(make_step(value), donate_argnums=0)
        state, metrics = compiled[value](state, batch, *frozen)
        return state, {**metrics, metric: value}

    return step


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train CAT RL from ``config`` in ``workdir`` (auto-resume), evaluate, return the results."""
    return common.run_phase(
        config, workdir, functools.partial(_training, config), weights=config.weights.to_dict()
    )


def _training(config: ml_collections.ConfigDict, phase: common.Phase) -> common.Training:
    """The RL step (one jitted step per scheduled budget), its state and the prompt batches."""
    data, apply = phase.data, phase.apply
    num_steps = int(config.steps)
    tx = train_lib.make_optimizer(common.optimizer_config(config.opt, total_steps=num_steps))
    weights = wts.WeightConfig(**config.weights.to_dict())
    loss_cfg = losses.PolicyLossConfig(**config.loss.to_dict())
    # The aligned budget may follow a schedule: N of the CAT weights, or k of the PKPO transform.
    schedules_k = weights.strategy == "standard" and config.reward.transform != "identity"
    default = int(config.reward.k) if schedules_k else weights.n
    schedule = common.parse_schedule(config.n_schedule, default)

    def make_step(value: int):
        w = weights if schedules_k else dataclasses.replace(weights, n=value)
        return rl.make_rl_step(
            apply,
            tx,
            functools.partial(models.init_cache, phase.model_cfg),
            rollout=sampling.SampleConfig(max_new_tokens=data.max_new_tokens, **config.rollout.to_dict()),
            weights=w,
            advantages=adv.AdvantageConfig(**config.advantages.to_dict()),
            loss=loss_cfg,
            reward_transform=config.reward.transform,
            transform_k=value if schedules_k else int(config.reward.k),
            score_fn=data.rl_score_fn(),
            micro_batches=int(config.micro_batches),
            stop_tokens=data.stop_tokens,
            pad_id=data.pad_id,
        )

    step = common.with_frozen_step(scheduled_step(make_step, schedule, metric="schedule/value"), phase.frozen)
    extra = {}
    if weights.strategy == "bon" and weights.quantile == "history":
        extra["history"] = adv.RewardHistory.create()
    if loss_cfg.kl_beta > 0:
        # The frozen warm-up policy, in buffers of its own: the jitted step donates the whole state.
        extra["reference"] = jax.tree.map(jnp.copy, phase.params)
    state = train_lib.TrainState.create(phase.params, tx, seed=int(config.seed), extra=extra)
    # Prompts from the task's rl split (disjoint from the warm-up's and the held-out problems) if it has one.
    split = "rl" if data.rl is not None else "train"
    # This process's prompts of each step only (multi-process runs); every group stays whole on its process.
    rows = data.batches(int(config.prompts_per_step), seed=int(config.seed), split=split).sharded(phase.shard)
    return common.Training(state, step, lambda i: data.prompt_batch(rows(i)), num_steps)


if __name__ == "__main__":
    cli.program(run)
