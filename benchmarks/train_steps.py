"""SFT and RL step throughput, side by side with this machine's measured matmul peak.

Run: ``.venv/bin/python -m benchmarks.train_steps`` (writes ``results/benchmarks/train_steps.md``; a few
minutes on 2 cores). For a d_model = 512 decoder it reports the jitted CAT SFT step (Pass@16 loss, AdamW) in
tokens/s and as a fraction of the matmul peak measured in the same run and dtype, probed right before each
step (6 x params x tokens FLOPs, plus attention), and splits one jitted CAT RL step (Majority weights,
M = 8) into rollout (the sampler alone), scoring + weights + advantages, and the update (the rest), by
timing compiled pieces of it separately; RL throughput is in tokens/s (prompt + completion tokens trained
on), generated tokens/s and completions/s. One row per compute dtype (``--dtypes``, default float32 and
bfloat16: the matmul inputs of ``LlamaConfig.compute_dtype`` over float32 parameters).
"""

from __future__ import annotations

import argparse
import dataclasses
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


def config_for(dtype: str) -> llama.LlamaConfig:
    """The benchmark model with float32 parameters and ``dtype`` matmul inputs (the compute policy)."""
    return dataclasses.replace(CONFIG, compute_dtype=None if dtype == "float32" else dtype)


def make_matmul_rate(dtype: str = "float32", sizes=(512, 1024, 2048), repeats: int = 5):
    """``rate()``: matmul FLOP/s in ``dtype`` (float32 accumulation and output, as the model's projections)
    right now: per size the median of ``repeats`` jitted n x n x n products, the best size.

    Sustained (about a second on this machine), not one burst: on a loaded machine a single short product
    can land in a quiet moment that the seconds-long step it is paired with never sees.
    """
    cases = []
    for n in sizes:
        a = jnp.ones((n, n), dtype)
        f = jax.jit(lambda x: jnp.einsum("ij,jk->ik", x, x, preferred_element_type=jnp.float32))
        f(a).block_until_ready()
        cases.append((n, f, a))

    def rate() -> float:
        best = 0.0
        for n, f, a in cases:
            secs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f(a).block_until_ready()
                secs.append(time.perf_counter() - t0)
            best = max(best, 2 * n**3 / statistics.median(secs))
        return best

    return rate


def sft_setup(dtype: str = "float32"):
    """``(step, (state, batch))``: the jitted CAT SFT step (Pass@16, AdamW; state donated) and its inputs."""
    graphdef, params = llama.init(config_for(dtype), jax.random.key(0))
    apply = llama.decoder(graphdef)
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-4))
    loss_fn = losses.make_sft_loss_fn(apply, objective=losses.SFTObjective("passn", n=16))
    step = jax.jit(train_lib.make_train_step(loss_fn, tx), donate_argnums=0)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, CONFIG.vocab_size, (SFT_BATCH, SFT_LEN)), jnp.int32)
    labels = jnp.where(jnp.arange(SFT_LEN)[None, :] >= SFT_LEN // 2, tokens, -100)
    return step, (train_lib.TrainState.create(params, tx, seed=0), {"tokens": tokens, "labels": labels})


def bench_sft(dtype: str = "float32") -> dict:
    step, (state, batch) = sft_setup(dtype)
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
    rate = make_matmul_rate(dtype)
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


EOS = 2
RL_WEIGHTS = wts.WeightConfig(strategy="majority", n=8, probability="empirical", normalize=True, clip=10.0)
RL_ADVANTAGES = adv.AdvantageConfig(all_wrong_penalty=0.5)


def rl_batch() -> dict:
    rng = np.random.default_rng(1)
    return {
        "prompts": jnp.asarray(rng.integers(3, CONFIG.vocab_size, (RL_PROMPTS, RL_PROMPT_LEN)), jnp.int32),
        "lengths": jnp.full((RL_PROMPTS,), RL_PROMPT_LEN, jnp.int32),
        "targets": jnp.asarray(rng.integers(3, CONFIG.vocab_size, (RL_PROMPTS, 4)), jnp.int32),
        "target_lengths": jnp.full((RL_PROMPTS,), 4, jnp.int32),
        "stop_token": jnp.full((RL_PROMPTS,), EOS, jnp.int32),
    }


def rl_setup(dtype: str = "float32", rl_module=rl):
    """``(step, (state, batch))``: the jitted CAT RL step (Majority weights, M = 8) and its inputs.

    ``rl_module``: the module whose ``make_rl_step`` builds the step (a before / after comparison passes an
    older copy of ``cat_jax.rl``).
    """
    config = config_for(dtype)
    graphdef, params = llama.init(config, jax.random.key(0))
    tx = train_lib.make_optimizer(train_lib.OptimizerConfig(lr=1e-5))
    step = rl_module.make_rl_step(
        llama.decoder(graphdef),
        tx,
        functools.partial(llama.init_cache, config),
        rollout=sampling.SampleConfig(num_samples=RL_M, max_new_tokens=RL_NEW),
        weights=RL_WEIGHTS,
        advantages=RL_ADVANTAGES,
        loss=losses.PolicyLossConfig(),
        stop_tokens=(EOS,),
    )
    return jax.jit(step), (train_lib.TrainState.create(params, tx, seed=0), rl_batch())


def bench_rl(dtype: str = "float32") -> dict:
    full, (state, batch) = rl_setup(dtype)
    config = config_for(dtype)
    params = state.params
    apply = llama.decoder(llama.abstract(config)[0])
    make_cache = functools.partial(llama.init_cache, config)

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
            strategy=sampling.SampleConfig(num_samples=RL_M, max_new_tokens=RL_NEW).strategy(),
        )

    @jax.jit
    def rollout_and_score(params, key):
        out = rollout_only(params, key)
        s = rl.exact_match_scores(out.tokens, out.mask, batch)
        w, _ = wts.cat_weights(
            s.rewards,
            jnp.sum(out.logp_model, -1),
            config=RL_WEIGHTS,
            answer_ids=s.answer_ids,
            answer_valid=s.valid,
        )
        a, _ = adv.compute_advantages(s.rewards, config=RL_ADVANTAGES)
        return w, a

    key = jax.random.key(0)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes, one row each")
    parser.add_argument("--steps", default="sft,rl", help="sft, rl or both (only both write the report)")
    args = parser.parse_args(argv)
    dtypes = args.dtypes.split(",")
    for d in dtypes:
        if d not in llama.DTYPES:
            parser.error(f"--dtypes takes {sorted(llama.DTYPES)}, got {d!r}")
    load_start = os.getloadavg()[0]
    steps = args.steps.split(",")
    sft = {d: bench_sft(d) for d in dtypes} if "sft" in steps else {}
    rlr = {d: bench_rl(d) for d in dtypes} if "rl" in steps else {}
    load_end = os.getloadavg()[0]
    if not (sft and rlr):  # a partial run prints its numbers; the report needs both tables
        print({"sft": sft, "rl": rlr, "load": (load_start, load_end)})
        return
    params = CONFIG.num_params()
    peaks = "; ".join(
        f"{d} {sft[d]['peak_median'] / 1e9:.1f} GFLOP/s (best {sft[d]['peak_best'] / 1e9:.1f})"
        for d in dtypes
    )
    lines = [
        "# SFT and RL step throughput",
        "",
        f"Command: `.venv/bin/python -m benchmarks.train_steps --dtypes {args.dtypes}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}; measured matmul peak (jitted n x n x n, n <= 2048, float32 "
        "accumulation, the median of 5 products per size, the best size; median over the SFT rounds): "
        f"{peaks}. Load average (1 min) at start / end: "
        f"{load_start:.1f} / {load_end:.1f}.",
        f"Model: Llama-style decoder, d_model {CONFIG.hidden_size}, {CONFIG.num_layers} layers, "
        f"{params / 1e6:.2f}M parameters, float32 parameters, gradients and optimizer; the compute dtype is "
        "the matmul inputs' (`LlamaConfig.compute_dtype`; norms, softmax, logits and the loss stay float32). "
        "Shared machine: compare ratios, not absolute seconds. "
        f"SFT: {SFT_ROUNDS} rounds of (peak probe in the row's dtype, step); medians, and the fraction of "
        "peak is the median of the per-round fractions. RL: medians of "
        f"{RL_ROUNDS} interleaved rounds of the three pieces below.",
        "",
        f"## SFT step (CAT Pass@16 loss, AdamW), batch {SFT_BATCH} x {SFT_LEN} tokens",
        "",
        "| compute dtype | compile (s) | step (s) | tokens/s | GFLOP/s | fraction of matmul peak (median) | "
        "best step / best peak |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {d} | {r['compile_s']:.1f} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['flops_per_s'] / 1e9:.1f} | {r['fraction_of_peak']:.2f} | {r['best_fraction']:.2f} |"
            for d, r in sft.items()
        ),
        "",
        f"## RL step (Majority weights, group advantages, REINFORCE), {RL_PROMPTS} prompts x M={RL_M}, "
        f"{RL_NEW} new tokens",
        "",
        "| compute dtype | compile (s) | step (s) | tokens/s | generated tokens/s | completions/s | "
        "rollout | scoring + weights + advantages | update |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {d} | {r['compile_s']:.1f} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['generated_tokens_per_s']:.0f} | {r['completions_per_s']:.0f} | "
            f"{r['rollout_s']:.3f} s ({r['rollout_s'] / r['step_s']:.0%}) | "
            f"{r['scoring_s']:.3f} s ({r['scoring_s'] / r['step_s']:.0%}) | "
            f"{r['update_s']:.3f} s ({r['update_s'] / r['step_s']:.0%}) |"
            for d, r in rlr.items()
        ),
        "",
        f"tokens/s counts the prompt + completion tokens the update trains on ({RL_PROMPTS} x {RL_M} rows of "
        f"{RL_PROMPT_LEN} + {rlr[dtypes[0]]['mean_length']:.2f} tokens on average: the measured mean "
        "completion length; the update runs each prompt once for its M completions, "
        "`logprobs.shared_prompt_log_probs`, so it computes fewer positions than it trains on), generated "
        "tokens/s the completions alone. The split times compiled pieces separately (the "
        "sampler alone; sampler + scoring; the whole step), so the shares are differences of separate "
        "measurements and carry their noise (the update is the remainder). Where the time goes inside each "
        "step: `step_profile.md` (`benchmarks/step_profile.py`). A GRPO step against google-tunix 0.1.7 on a "
        "model of this size: `tunix_grpo.md` (`benchmarks/tunix_grpo.py`).",
        "",
    ]
    os.makedirs("results/benchmarks", exist_ok=True)
    with open("results/benchmarks/train_steps.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
