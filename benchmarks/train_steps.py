"""SFT and RL step throughput, side by side with this machine's measured matmul peak.

Run: ``.venv/bin/python -m benchmarks.train_steps`` (writes ``results/benchmarks/train_steps.md``; about two
minutes on 2 cores). For a d_model = 512 decoder it reports the jitted CAT SFT step (Pass@16 loss, AdamW) in
tokens/s and as a fraction of the float32 matmul peak measured in the same run (6 x params x tokens FLOPs,
plus attention), and splits one jitted CAT RL step (Majority weights, M = 8) into rollout (the sampler alone),
scoring + weights + advantages, and the update (the rest), by timing compiled pieces of it separately.
"""

from __future__ import annotations

import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.sampler import best_time, cpu_name, matmul_peak
from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama

CONFIG = llama.LlamaConfig.tiny(
    vocab_size=512, hidden_size=512, intermediate_size=1536, num_layers=4, num_heads=8, num_kv_heads=8
)
SFT_BATCH, SFT_LEN = 32, 64
RL_PROMPTS, RL_PROMPT_LEN, RL_M, RL_NEW = 8, 16, 8, 16


def sft_flops(c: llama.LlamaConfig, batch: int, length: int) -> float:
    """Forward + backward matmul FLOPs: 6 x (matmul params) x tokens + attention (3 x 4 x L^2 d per layer)."""
    d = c.hidden_size
    matmul_params = c.num_layers * (4 * d * d + 3 * d * c.intermediate_size) + d * c.vocab_size
    attention = c.num_layers * 4 * length * length * d * batch
    return 6 * matmul_params * batch * length + 3 * attention


def bench_sft(peak: float) -> dict:
    graphdef, params = llama.init(CONFIG, jax.random.key(0))
    apply = llama.decoder(graphdef)
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-4))
    loss_fn = losses.make_sft_loss_fn(apply, objective=losses.SFTObjective("passn", n=16))
    step = jax.jit(train_lib.make_train_step(loss_fn, tx), donate_argnums=0)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, CONFIG.vocab_size, (SFT_BATCH, SFT_LEN)), jnp.int32)
    labels = jnp.where(jnp.arange(SFT_LEN)[None, :] >= SFT_LEN // 2, tokens, -100)
    batch = {"tokens": tokens, "labels": labels}
    state = train_lib.TrainState.create(params, tx, seed=0)
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m["loss/total"])
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def once():
        holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics["loss/total"])

    sec = best_time(once, 5)
    flops = sft_flops(CONFIG, SFT_BATCH, SFT_LEN)
    return {
        "compile_s": compile_s,
        "step_s": sec,
        "tokens_per_s": SFT_BATCH * SFT_LEN / sec,
        "flops_per_s": flops / sec,
        "fraction_of_peak": flops / sec / peak,
    }


def bench_rl() -> dict:
    graphdef, params = llama.init(CONFIG, jax.random.key(0))
    apply = llama.decoder(graphdef)
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-5))
    make_cache = functools.partial(llama.init_cache, CONFIG)
    rollout = rl.RolloutConfig(num_samples=RL_M, max_new_tokens=RL_NEW)
    eos = 2
    rng = np.random.default_rng(1)
    batch = {
        "prompts": jnp.asarray(rng.integers(3, CONFIG.vocab_size, (RL_PROMPTS, RL_PROMPT_LEN)), jnp.int32),
        "lengths": jnp.full((RL_PROMPTS,), RL_PROMPT_LEN, jnp.int32),
        "targets": jnp.asarray(rng.integers(3, CONFIG.vocab_size, (RL_PROMPTS, 4)), jnp.int32),
        "target_lengths": jnp.full((RL_PROMPTS,), 4, jnp.int32),
        "stop_token": jnp.full((RL_PROMPTS,), eos, jnp.int32),
    }
    wcfg = wts.WeightConfig(strategy="majority", n=8, probability="empirical", normalize=True, clip=10.0)
    full = jax.jit(
        rl.make_rl_step(
            apply,
            tx,
            make_cache,
            rollout=rollout,
            weights=wcfg,
            advantages=adv.AdvantageConfig(all_wrong_penalty=0.5),
            loss=losses.PolicyLossConfig(),
            stop_tokens=(eos,),
        )
    )

    # Stop tokens off: every rollout runs the full RL_NEW steps, so the timings are comparable.
    @jax.jit
    def rollout_only(params, key):
        return sampling.sample(
            apply,
            params,
            make_cache(RL_PROMPTS, RL_PROMPT_LEN + RL_NEW),
            batch["prompts"],
            batch["lengths"],
            key,
            num_samples=RL_M,
            max_new_tokens=RL_NEW,
            strategy=rollout.strategy(),
        )

    @jax.jit
    def rollout_and_score(params, key):
        out = rollout_only(params, key)
        s = rl.exact_match_scores(out.tokens, out.mask, batch)
        w, _ = wts.cat_weights(
            s.rewards, jnp.sum(out.logp_model, -1), config=wcfg, answer_ids=s.answer_ids, answer_valid=s.valid
        )
        a, _ = adv.compute_advantages(s.rewards, config=adv.AdvantageConfig(all_wrong_penalty=0.5))
        return w, a

    key = jax.random.key(0)
    state = train_lib.TrainState.create(params, tx, seed=0)
    t0 = time.perf_counter()
    jax.block_until_ready(full(state, batch)[1]["loss/total"])
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(rollout_only(params, key).tokens)
    jax.block_until_ready(rollout_and_score(params, key))
    t_roll = best_time(lambda: jax.block_until_ready(rollout_only(params, key).tokens), 3)
    t_score = best_time(lambda: jax.block_until_ready(rollout_and_score(params, key)), 3)
    t_full = best_time(lambda: jax.block_until_ready(full(state, batch)[1]["loss/total"]), 3)
    return {
        "compile_s": compile_s,
        "step_s": t_full,
        "rollout_s": t_roll,
        "scoring_s": max(t_score - t_roll, 0.0),
        "update_s": max(t_full - t_score, 0.0),
        "completions_per_s": RL_PROMPTS * RL_M / t_full,
    }


def main():
    peak = matmul_peak()
    sft = bench_sft(peak)
    rlr = bench_rl()
    params = CONFIG.num_params()
    lines = [
        "# SFT and RL step throughput",
        "",
        "Command: `.venv/bin/python -m benchmarks.train_steps`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}; measured float32 matmul peak {peak / 1e9:.1f} GFLOP/s.",
        f"Model: Llama-style decoder, d_model {CONFIG.hidden_size}, {CONFIG.num_layers} layers, "
        f"{params / 1e6:.2f}M parameters, float32. Timings are the best of repeated compiled calls on a "
        "shared machine: compare ratios, not absolute seconds.",
        "",
        f"## SFT step (CAT Pass@16 loss, AdamW), batch {SFT_BATCH} x {SFT_LEN} tokens",
        "",
        "| compile (s) | step (s) | tokens/s | GFLOP/s | fraction of matmul peak |",
        "|---|---|---|---|---|",
        f"| {sft['compile_s']:.1f} | {sft['step_s']:.3f} | {sft['tokens_per_s']:.0f} | "
        f"{sft['flops_per_s'] / 1e9:.1f} | {sft['fraction_of_peak']:.2f} |",
        "",
        f"## RL step (Majority weights, group advantages, REINFORCE), {RL_PROMPTS} prompts x M={RL_M}, "
        f"{RL_NEW} new tokens",
        "",
        "| compile (s) | step (s) | rollout | scoring + weights + advantages | update | completions/s |",
        "|---|---|---|---|---|---|",
        f"| {rlr['compile_s']:.1f} | {rlr['step_s']:.3f} | {rlr['rollout_s'] / rlr['step_s']:.0%} | "
        f"{rlr['scoring_s'] / rlr['step_s']:.0%} | {rlr['update_s'] / rlr['step_s']:.0%} | "
        f"{rlr['completions_per_s']:.0f} |",
        "",
        "The split times compiled pieces separately (the sampler alone; sampler + scoring; the whole step), "
        "so the shares are differences of separate measurements and carry their noise. Not yet measured: a "
        "GRPO step of google-tunix (installable from PyPI, 0.1.7) on the same model and batch.",
        "",
    ]
    os.makedirs("results/benchmarks", exist_ok=True)
    with open("results/benchmarks/train_steps.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
