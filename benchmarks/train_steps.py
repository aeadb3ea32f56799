"""SFT and RL step throughput, side by side with this machine's measured matmul peak.

Run: ``.venv/bin/python -m benchmarks.train_steps`` (writes ``results/benchmarks/train_steps.md``; a few
minutes on 2 cores). For a d_model = 512 decoder it reports the jitted CAT SFT step (Pass@16 loss, AdamW) in
tokens/s and as a fraction of the float32 matmul peak measured in the same run, probed right before each step
(6 x params x tokens FLOPs, plus attention), and splits one jitted CAT RL step (Majority weights, M = 8) into
rollout (the sampler alone), scoring + weights + advantages, and the update (the rest), by timing compiled
pieces of it separately; RL throughput is in tokens/s (prompt + completion tokens trained on), generated
tokens/s and completions/s.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.sampler import cpu_name
from cat_jax import advantages as adv
from cat_jax import losses, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama

CONFIG = llama.LlamaConfig.tiny(
    vocab_size=512, hidden_size=512, intermediate_size=1536, num_layers=4, num_heads=8, num_kv_heads=8
)
SFT_BATCH, SFT_LEN = 32, 64
RL_PROMPTS, RL_PROMPT_LEN, RL_M, RL_NEW = 8, 16, 8, 16
RL_ROUNDS = 5
SFT_ROUNDS = 7


def sft_flops(c: llama.LlamaConfig, batch: int, length: int) -> float:
    """Forward + backward matmul FLOPs: 6 x (matmul params) x tokens + attention (3 x 4 x L^2 d per layer)."""
    d = c.hidden_size
    matmul_params = c.num_layers * (4 * d * d + 3 * d * c.intermediate_size) + d * c.vocab_size
    attention = c.num_layers * 4 * length * length * d * batch
    return 6 * matmul_params * batch * length + 3 * attention


def make_matmul_rate(sizes=(512, 1024, 2048)):
    """``rate()``: float32 matmul FLOP/s right now, the best over one jitted n x n x n product per size."""
    cases = []
    for n in sizes:
        a = jnp.ones((n, n), jnp.float32)
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
        cases.append((n, f, a))

    def rate() -> float:
        best = 0.0
        for n, f, a in cases:
            t0 = time.perf_counter()
            f(a).block_until_ready()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
        return best

    return rate


def bench_sft() -> dict:
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

    # The load on a shared machine moves the step and the peak together: pair them, a peak probe right
    # before each step, and take the median of the per-round fractions.
    rate = make_matmul_rate()
    flops = sft_flops(CONFIG, SFT_BATCH, SFT_LEN)
    peaks, secs = [], []
    for _ in range(SFT_ROUNDS):
        peaks.append(rate())
        t0 = time.perf_counter()
        once()
        secs.append(time.perf_counter() - t0)
    sec = statistics.median(secs)
    return {
        "compile_s": compile_s,
        "step_s": sec,
        "tokens_per_s": SFT_BATCH * SFT_LEN / sec,
        "flops_per_s": flops / sec,
        "fraction_of_peak": statistics.median(flops / t / pk for t, pk in zip(secs, peaks, strict=True)),
        "peak_median": statistics.median(peaks),
        "peak_best": max(peaks),
        "best_fraction": flops / min(secs) / max(peaks),
    }


def bench_rl() -> dict:
    graphdef, params = llama.init(CONFIG, jax.random.key(0))
    apply = llama.decoder(graphdef)
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-5))
    make_cache = functools.partial(llama.init_cache, CONFIG)
    rollout = sampling.SampleConfig(num_samples=RL_M, max_new_tokens=RL_NEW)
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
    first_metrics = full(state, batch)[1]
    jax.block_until_ready(first_metrics["loss/total"])
    compile_s = time.perf_counter() - t0
    mean_length = float(first_metrics["rollout/length"])  # generated tokens per completion (stop token 2)
    jax.block_until_ready(rollout_only(params, key).tokens)
    jax.block_until_ready(rollout_and_score(params, key))
    # Interleaved rounds and medians: load on a shared machine shifts all three pieces alike.
    pieces = {
        "roll": lambda: jax.block_until_ready(rollout_only(params, key).tokens),
        "score": lambda: jax.block_until_ready(rollout_and_score(params, key)),
        "full": lambda: jax.block_until_ready(full(state, batch)[1]["loss/total"]),
    }
    times = {k: [] for k in pieces}
    for _ in range(RL_ROUNDS):
        for k, fn in pieces.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    t_roll, t_score, t_full = (statistics.median(times[k]) for k in ("roll", "score", "full"))
    scoring = max(t_score - t_roll, 0.0)
    return {
        "compile_s": compile_s,
        "step_s": t_full,
        "rollout_s": t_roll,
        "scoring_s": scoring,
        "update_s": t_full - t_roll - scoring,  # the rest, so the three shares add up to the step
        "completions_per_s": RL_PROMPTS * RL_M / t_full,
        "mean_length": mean_length,
        # Generated tokens, and every token of the joined prompt + completion rows the update trains on.
        "generated_tokens_per_s": RL_PROMPTS * RL_M * mean_length / t_full,
        "tokens_per_s": RL_PROMPTS * RL_M * (RL_PROMPT_LEN + mean_length) / t_full,
    }


def main():
    sft = bench_sft()
    rlr = bench_rl()
    params = CONFIG.num_params()
    lines = [
        "# SFT and RL step throughput",
        "",
        "Command: `.venv/bin/python -m benchmarks.train_steps`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}; measured float32 matmul peak (jitted n x n x n, n <= 2048) "
        f"{sft['peak_median'] / 1e9:.1f} GFLOP/s (median over the SFT rounds; best "
        f"{sft['peak_best'] / 1e9:.1f}).",
        f"Model: Llama-style decoder, d_model {CONFIG.hidden_size}, {CONFIG.num_layers} layers, "
        f"{params / 1e6:.2f}M parameters, float32. Shared machine: compare ratios, not absolute seconds. "
        f"SFT: {SFT_ROUNDS} rounds of (peak probe, step); medians, and the fraction of peak is the median of "
        f"the per-round fractions (best step over best peak: {sft['best_fraction']:.2f}). RL: medians of "
        f"{RL_ROUNDS} interleaved rounds of the three pieces below.",
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
        "| compile (s) | step (s) | tokens/s | generated tokens/s | completions/s | rollout | "
        "scoring + weights + advantages | update |",
        "|---|---|---|---|---|---|---|---|",
        f"| {rlr['compile_s']:.1f} | {rlr['step_s']:.3f} | {rlr['tokens_per_s']:.0f} | "
        f"{rlr['generated_tokens_per_s']:.0f} | {rlr['completions_per_s']:.0f} | "
        f"{rlr['rollout_s']:.3f} s ({rlr['rollout_s'] / rlr['step_s']:.0%}) | "
        f"{rlr['scoring_s']:.3f} s ({rlr['scoring_s'] / rlr['step_s']:.0%}) | "
        f"{rlr['update_s']:.3f} s ({rlr['update_s'] / rlr['step_s']:.0%}) |",
        "",
        f"tokens/s counts the prompt + completion tokens the update trains on ({RL_PROMPTS} x {RL_M} rows of "
        f"{RL_PROMPT_LEN} + {rlr['mean_length']:.2f} tokens on average: the measured mean completion "
        "length), generated tokens/s the completions alone. The split times compiled pieces separately (the "
        "sampler alone; sampler + scoring; the whole step), so the shares are differences of separate "
        "measurements and carry their noise (the update is the remainder). A GRPO step against "
        "google-tunix 0.1.7 on a model of this size: `tunix_grpo.md` (`benchmarks/tunix_grpo.py`).",
        "",
    ]
    os.makedirs("results/benchmarks", exist_ok=True)
    with open("results/benchmarks/train_steps.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
