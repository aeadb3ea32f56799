r"""Why RL from the SFT warm-up does not improve it here: the gradient's direction against its step size.

For each seed's warm-up (``<workdir>/sft/seed<s>/warmup``, as trained by ``experiments.paper``) and its first
RL batch (the 32 training prompts standard RL starts on, ``configs/rl/arith.py:standard``):

* ``cosine``: between the standard-RL (REINFORCE, group advantages) ascent direction from ``--rollouts``
  samples per prompt and the exact gradient of the batch's mean success probability ``mean_i p_i``
  (teacher-forced answer + EOS). Near 1 means the policy gradient points the right way.
* the batch's ``mean_i p_i`` and the exact pass@1 over all training problems after one plain step of L2
  length ``r`` (over all parameters) along the RL direction and along the exact gradient, ``r`` in ``RADII``:
  how long a step may be before it stops helping.
* the L2 length of the first update of the configured optimizer (AdamW, global-norm clip 1) on that RL
  gradient at the learning rates of the RL study, to set against those radii::

    python -m experiments.rl_probe --seeds=0,1,2       # -> results/rl_probe/{results.json, table.md}
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from cat_jax import advantages as adv
from cat_jax import evaluation, losses, reporting, sampling, train_lib
from cat_jax import rl as cat_rl
from cat_jax.models import llama
from experiments import cli, common

RADII = (0.001, 0.003, 0.01, 0.03, 0.1)
LEARNING_RATES = (1e-4, 1e-5)


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def probe(warmup: pathlib.Path, seed: int, *, rollouts: int, smoke: bool = False) -> dict:
    """The measurements above for one warm-up; JSON-ready."""
    cfg = common.load_config("configs/rl/arith.py:standard" + (",smoke" if smoke else ""), {"seed": seed})
    data = common.task_data(cfg.task)
    model_cfg = common.model_config(cfg, data)
    graphdef, params = llama.init(model_cfg, jax.random.key(seed))
    params = common.load_params(warmup, params)
    apply = llama.decoder(graphdef)
    batch = data.prompt_batch(data.batches(int(cfg.prompts_per_step), seed=seed)(0))
    b, p = batch["prompts"].shape
    out = sampling.sample(
        apply,
        params,
        llama.init_cache(model_cfg, b, p + data.max_new_tokens),
        batch["prompts"],
        batch["lengths"],
        jax.random.key(seed),
        num_samples=rollouts,
        max_new_tokens=data.max_new_tokens,
        stop_tokens=data.stop_tokens,
        pad_id=data.pad_id,
    )
    scores = cat_rl.exact_match_scores(out.tokens, out.mask, batch)
    a, _ = adv.compute_advantages(scores.rewards, config=adv.AdvantageConfig(**cfg.advantages.to_dict()))
    tokens, mask = sampling.join(batch["prompts"], batch["lengths"], out.tokens, out.mask, pad_id=data.pad_id)
    loss_fn = losses.make_rl_loss_fn(apply, config=losses.PolicyLossConfig(**cfg.loss.to_dict()))
    rl_batch = {
        "tokens": tokens,
        "mask": mask,
        "advantages": a,
        "weights": jnp.ones_like(a),  # standard RL
        "num_completions": b * rollouts,
    }
    g_rl = jax.jit(jax.grad(lambda q: loss_fn(q, rl_batch, None)[0]))(params)
    target_mask = jnp.arange(batch["targets"].shape[1])[None, :] < batch["target_lengths"][:, None]
    seq, seq_mask = sampling.join(
        batch["prompts"],
        batch["lengths"],
        batch["targets"][:, None],
        target_mask[:, None],
        pad_id=data.pad_id,
    )

    @jax.jit
    def mean_p(q):
        return jnp.mean(jnp.exp(jnp.sum(sampling.sequence_log_probs(apply, q, seq, seq_mask), axis=-1)))

    def train_pass1(q) -> float:
        train = (data.train.prompts, data.train.lengths, data.train.targets, data.train.target_lengths)
        exact = evaluation.exact_pass_at_k(apply, q, *train, temperatures=[1.0], ks=[1], pad_id=data.pad_id)
        return exact["T1/pass@1"]

    g_exact = jax.jit(jax.grad(mean_p))(params)
    ascent = {"rl": jax.tree.map(jnp.negative, g_rl), "exact": g_exact}
    dot = sum(
        jnp.sum(x * y) for x, y in zip(jax.tree.leaves(ascent["rl"]), jax.tree.leaves(g_exact), strict=True)
    )
    steps = {}
    for name, d in ascent.items():
        length = _norm(d)
        if float(length) == 0:  # e.g. no batch prompt with both a right and a wrong rollout: no direction
            steps[name] = None
            continue
        unit = jax.tree.map(lambda x, n=length: x / n, d)
        moved = [jax.tree.map(lambda q, u, r=r: q + r * u, params, unit) for r in RADII]
        steps[name] = {
            "batch_mean_p": [float(mean_p(q)) for q in moved],
            "train_pass@1": [train_pass1(q) for q in moved],
        }
    adam = {}
    for lr in LEARNING_RATES:
        tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=lr, clip_norm=cfg.opt.clip_norm))
        updates, _ = tx.update(g_rl, tx.init(params), params)
        adam[f"{lr:g}"] = float(_norm(updates))
    cosine = dot / (_norm(ascent["rl"]) * _norm(g_exact)) if all(steps.values()) else None
    return {
        "seed": seed,
        "prompts": b,
        "rollouts": rollouts,
        "batch_reward_mean": float(jnp.mean(scores.rewards)),
        "batch_mean_p": float(mean_p(params)),
        "train_pass@1": train_pass1(params),
        "cosine_rl_vs_exact": None if cosine is None else float(cosine),
        "radii": list(RADII),
        "steps": steps,
        "adam_first_step_norm": adam,
        "num_params": model_cfg.num_params(),
    }


def report(probes: list[dict], results: pathlib.Path, command: str) -> None:
    """``results.json`` (every number) and ``table.md`` (means over seeds)."""
    usable = [r for r in probes if r["cosine_rl_vs_exact"] is not None]
    if not usable:
        raise ValueError(
            "no probed batch had a policy gradient (every rollout scored the same); more --rollouts"
        )
    mean = lambda f: np.mean([f(r) for r in usable], axis=0)
    md = [
        "# Why standard RL from the warm-up does not improve it (Tables 4-5 analogue)\n\n",
        f"Command: `{command}`\n\n",
        f"Seeds {[r['seed'] for r in usable]}; each seed's SFT warm-up and the first RL batch "
        f"({usable[0]['prompts']} training prompts, {usable[0]['rollouts']} rollouts each); means over seeds"
        + (
            f" (seeds {skipped} had no gradient)"
            if (skipped := [r["seed"] for r in probes if r not in usable])
            else ""
        )
        + ".\n\n",
        f"- cosine(standard-RL ascent direction, exact gradient of the batch's mean p): "
        f"{mean(lambda r: r['cosine_rl_vs_exact']):.3f} "
        f"(per seed {', '.join(format(r['cosine_rl_vs_exact'], '.3f') for r in usable)})\n",
        f"- batch mean p {mean(lambda r: r['batch_mean_p']):.4f} (sampled reward "
        f"{mean(lambda r: r['batch_reward_mean']):.4f}); exact train pass@1 "
        f"{mean(lambda r: r['train_pass@1']):.4f}\n",
        "- length of AdamW's first update on that gradient: "
        + ", ".join(
            f"lr {lr}: {mean(lambda r, lr=lr: r['adam_first_step_norm'][lr]):.4f}"
            for lr in usable[0]["adam_first_step_norm"]
        )
        + "\n\n",
        "One plain step of L2 length r along each direction:\n\n",
        "| direction | quantity | r = 0 | " + " | ".join(f"r = {r:g}" for r in RADII) + " |\n",
        "|---" * (len(RADII) + 3) + "|\n",
    ]
    for name in ("rl", "exact"):
        for q, start in (("batch_mean_p", "batch_mean_p"), ("train_pass@1", "train_pass@1")):
            row = mean(lambda r, n=name, q=q: r["steps"][n][q])
            md.append(
                f"| {'standard RL' if name == 'rl' else 'exact gradient'} | {q} | "
                f"{mean(lambda r, s=start: r[s]):.4f} | " + " | ".join(f"{v:.4f}" for v in row) + " |\n"
            )
    results.mkdir(parents=True, exist_ok=True)
    reporting.write_text(results / "table.md", "".join(md))
    reporting.write_json(results / "results.json", {"command": command, "probes": probes})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()  # jax.distributed when asked (flags, env or a detected cluster); logs the topology
    logging.set_verbosity(logging.WARNING)
    command = cli.command("experiments.rl_probe")
    root = pathlib.Path(_WORKDIR.value)
    seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
    probes = [
        probe(root / "sft" / f"seed{s}" / "warmup", s, rollouts=_ROLLOUTS.value, smoke=_SMOKE.value)
        for s in seeds
    ]
    report(probes, pathlib.Path(_RESULTS.value), command.strip())
    cli.say(f"report written under {_RESULTS.value}")


if __name__ == "__main__":
    _WORKDIR = flags.DEFINE_string("workdir", "workdirs/paper", "experiments.paper's workdir (its warm-ups).")
    _SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds whose warm-ups to probe.")
    _ROLLOUTS = flags.DEFINE_integer("rollouts", 256, "Samples per prompt for the policy gradient.")
    _RESULTS = flags.DEFINE_string("results", "results/rl_probe", "Where results.json and table.md go.")
    _SMOKE = flags.DEFINE_bool("smoke", False, "Warm-ups trained with the smoke configs.")
    app.run(main)
