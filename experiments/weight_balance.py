r"""How the success probability ``p`` shapes a CAT Pass@N RL update: App. J's sequence ``p`` against one
``p`` per prompt (``empirical``, ``exact``), measured on real rollouts.

For each seed's addition warm-up (``<workdir>/sft_add/seed<s>/warmup``, as trained by ``experiments.paper
--study=rl_add``) and the same seed's standard-RL policy after 600 steps
(``<workdir>/rl_add/seed<s>/standard``: the p of a correct answer grows as RL learns, which is where the
sequence p departs from a per-prompt one), on the first ``--batches`` RL batches (32 prompts of the ``rl``
split x M = 8 rollouts at T = 1, ``configs/rl/arith.py:standard,add``), every Pass@N weight setting (N in 4,
16; raw and log; p sequence | empirical | exact; clip 50 as the RL configs) is applied to the same rollouts
and group advantages ``A``. The REINFORCE update is ``sum_ij A_ij w_ij grad log pi(y_ij)``; per setting:

* ``push up / push down``: ``sum (A w)^+ / sum (A w)^-`` over the batch, the weight the update gives to
  raising sampled completions against lowering them. Group advantages are zero-sum in every group, so with
  ``w = 1`` (standard RL) and with any ``w`` constant within a prompt (``empirical``, ``exact``) the ratio
  is 1; with the sequence ``p`` each completion's weight is ``w`` of its own string's probability: a wrong
  string (low ``p``) gets ``w`` near its maximum, a correct one (higher ``p``) a small ``w``.
* mean ``w`` of the correct and of the wrong rollouts (in groups with both, where ``A != 0``)::

    python -m experiments.weight_balance --workdir=/work/study/w --seeds=0,1,2   # -> results/weight_balance
"""

from __future__ import annotations

import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from cat_jax import advantages as adv
from cat_jax import evaluation, reporting, sampling
from cat_jax import rl as cat_rl
from cat_jax import weights as wts
from cat_jax.models import llama
from experiments import cli, common

SETTINGS = tuple(
    itertools.product((4, 16), ("log", "raw"), ("sequence", "empirical", "exact"))
)  # (N, form, probability)
CLIP = 50.0  # configs/rl/arith.py's Pass@N cap
POLICIES = {"warm-up": "sft_add/seed{s}/warmup", "standard RL, 600 steps": "rl_add/seed{s}/standard"}


def _stats(a: np.ndarray, w: np.ndarray, rewards: np.ndarray) -> dict:
    """Push up / down sums and mean weights of correct / wrong rollouts in mixed groups, for one batch."""
    aw = a * w
    mixed = np.broadcast_to((rewards.min(-1) < rewards.max(-1))[:, None], rewards.shape)
    right, wrong = mixed & (rewards > 0), mixed & (rewards <= 0)
    return {
        "up": float(np.sum(np.maximum(aw, 0))),
        "down": float(np.sum(np.maximum(-aw, 0))),
        "w_right_sum": float(np.sum(w[right])),
        "w_wrong_sum": float(np.sum(w[wrong])),
        "n_right": int(right.sum()),
        "n_wrong": int(wrong.sum()),
    }


def measure(policy: pathlib.Path, seed: int, *, batches: int, smoke: bool = False) -> dict:
    """Every setting's sums over ``batches`` RL batches of one policy's workdir; JSON-ready."""
    cfg = common.load_config("configs/rl/arith.py:standard,add" + (",smoke" if smoke else ""), {"seed": seed})
    data = common.task_data(cfg.task)
    model_cfg = common.model_config(cfg, data)
    graphdef, params = llama.init(model_cfg, jax.random.key(seed))
    params = common.load_params(policy, params)
    apply = llama.decoder(graphdef)
    split = "rl" if data.rl is not None else "train"
    rows = data.batches(int(cfg.prompts_per_step), seed=seed, split=split)
    m = int(cfg.rollout.num_samples)
    adv_cfg = adv.AdvantageConfig(**cfg.advantages.to_dict())
    totals: dict[str, dict] = {}
    reward_mean = []
    for i in range(batches):
        batch = data.prompt_batch(rows(i))
        b, p = batch["prompts"].shape
        out = sampling.sample(
            apply,
            params,
            llama.init_cache(model_cfg, b, p + data.max_new_tokens),
            batch["prompts"],
            batch["lengths"],
            jax.random.fold_in(jax.random.key(seed), i),
            num_samples=m,
            max_new_tokens=data.max_new_tokens,
            stop_tokens=data.stop_tokens,
            pad_id=data.pad_id,
        )
        scores = cat_rl.exact_match_scores(out.tokens, out.mask, batch)
        old_logp = jnp.sum(jnp.where(out.mask, out.logp_model, 0.0), axis=-1)
        reference_logp = evaluation.teacher_forced_log_p(
            apply, params, batch["prompts"], batch["lengths"], batch["targets"], batch["target_lengths"],
            jnp.ones((1,), jnp.float32), pad_id=data.pad_id,
        )[0]  # fmt: skip
        a, _ = adv.compute_advantages(scores.rewards, config=adv_cfg)
        rewards, a = np.asarray(scores.rewards), np.asarray(a)
        reward_mean.append(float(rewards.mean()))
        for n, form, prob in SETTINGS:
            config = wts.WeightConfig(strategy="passn", n=n, form=form, probability=prob, clip=CLIP)
            w, _ = wts.cat_weights(scores.rewards, old_logp, config=config, reference_logp=reference_logp)
            s = _stats(a, np.asarray(w, np.float64), rewards)
            key = f"passn{n}_{form}/{prob}"
            totals[key] = {k: totals.get(key, {}).get(k, 0) + v for k, v in s.items()}
    return {"seed": seed, "batches": batches, "reward_mean": float(np.mean(reward_mean)), "settings": totals}


def summarise(t: dict) -> dict:
    """Ratios of one setting's sums (``None`` where undefined)."""
    div = lambda x, y: x / y if y else None
    return {
        "up_over_down": div(t["up"], t["down"]),
        "w_right": div(t["w_right_sum"], t["n_right"]),
        "w_wrong": div(t["w_wrong_sum"], t["n_wrong"]),
    }


def report(runs: dict[str, list[dict]], results: pathlib.Path, command: str) -> None:
    """``results.json`` (every sum) and ``table.md`` (mean ± SE across seeds of each ratio, per policy)."""

    def cell(policy: str, key: str, stat: str, fmt: str) -> str:
        vals = [v for r in runs[policy] if (v := summarise(r["settings"][key])[stat]) is not None]
        if not vals:
            return "-"
        se = np.std(vals, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0
        return f"{np.mean(vals):{fmt}} ± {se:{fmt}}"

    first = next(iter(runs.values()))
    md = [
        "# Pass@N RL weights: sequence p (App. J) against one p per prompt\n\n",
        f"Command: `{command}`\n\n",
        f"Seeds {[r['seed'] for r in first]}; each seed's addition warm-up and standard-RL policy "
        f"(results/rl_add), on their first {first[0]['batches']} RL batches of 32 prompts x 8 rollouts at "
        "T = 1 (mean reward: "
        + ", ".join(f"{k} {np.mean([r['reward_mean'] for r in v]):.3f}" for k, v in runs.items())
        + f"); group advantages A; Pass@N weights w with clip "
        f"{CLIP:g}. Mean ± SE across seeds. `up / down` = sum (A w)+ / sum (A w)-: 1 for standard RL "
        "and for any p shared by a prompt's rollouts. `w right` / `w wrong`: mean weight of correct / "
        "wrong rollouts in groups with both.\n\n",
        "| policy | weights | p | up / down | w right | w wrong |\n",
        "|---|---|---|---|---|---|\n",
    ]
    for policy in runs:
        for n, form, prob in SETTINGS:
            key = f"passn{n}_{form}/{prob}"
            md.append(
                f"| {policy} | Pass@{n} {form} | {prob} | {cell(policy, key, 'up_over_down', '.3f')} | "
                f"{cell(policy, key, 'w_right', '.3f')} | {cell(policy, key, 'w_wrong', '.3f')} |\n"
            )
    results.mkdir(parents=True, exist_ok=True)
    reporting.write_text(results / "table.md", "".join(md))
    reporting.write_json(results / "results.json", {"command": command, "runs": runs})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()
    logging.set_verbosity(logging.WARNING)
    command = cli.command("experiments.weight_balance")
    root = pathlib.Path(_WORKDIR.value)
    seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
    runs = {
        name: [measure(root / path.format(s=s), s, batches=_BATCHES.value, smoke=_SMOKE.value) for s in seeds]
        for name, path in POLICIES.items()
    }
    report(runs, pathlib.Path(_RESULTS.value), command.strip())
    cli.say(f"report written under {_RESULTS.value}")


if __name__ == "__main__":
    _WORKDIR = flags.DEFINE_string("workdir", "workdirs/paper", "experiments.paper's workdir (its warm-ups).")
    _SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds whose warm-ups to measure.")
    _BATCHES = flags.DEFINE_integer("batches", 8, "RL batches per seed.")
    _RESULTS = flags.DEFINE_string("results", "results/weight_balance", "Where results.json and table.md go.")
    _SMOKE = flags.DEFINE_bool("smoke", False, "Warm-ups trained with the smoke configs.")
    app.run(main)
