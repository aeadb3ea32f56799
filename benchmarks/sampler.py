"""Sampler throughput: cat_jax jit sampler vs Hugging Face ``generate`` on the same weights, side by side.

Run: ``.venv/bin/python -m benchmarks.sampler`` (writes ``results/benchmarks/sampler.md``; ~3 minutes on 2
cores). For each model shape in ``MODELS`` a random ``LlamaForCausalLM`` is built with transformers, saved as
safetensors and loaded into cat_jax with ``cat_jax.models.convert``, so both sides run identical weights. Both
sample at temperature 1 without filters (HF: ``do_sample=True, top_k=0``, KV cache on), from the same prompt
length, for exactly the same number of new tokens, at batch sizes 1, 16, 64, 256 (one completion per prompt)
and 16 prompts x 16 samples. Also: time to first sample (first call, compile included) and the fraction of
the machine's measured float32 matmul throughput that the prefill forward achieves.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time

# One thread each for XLA and torch: on a shared 2-core machine multi-threaded runtimes spin-wait against
# each other and other jobs, which made HF timings swing 10x between runs; one core each is a fair ratio.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import jax
import jax.numpy as jnp
import numpy as np

from cat_jax import sampling
from cat_jax.models import convert, llama

BATCHES = (1, 16, 64, 256)
PROMPT, NEW, REPEATS = 32, 32, 3
GROUP = (16, 16)  # extra row: 16 prompts x 16 samples each (the RL rollout shape), vs num_return_sequences
NO_SPECIAL = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None, max_position_embeddings=512)
MODELS = {
    # The shape of LlamaConfig.tiny(), which the CPU experiments train and sample from.
    "tiny": dict(
        vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, **NO_SPECIAL,
    ),
    # A larger small model, where the matmuls dominate both samplers.
    "5M": dict(
        vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=4, **NO_SPECIAL,
    ),
}  # fmt: skip


def best_time(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(sizes=(512, 1024, 2048)) -> float:
    """Measured float32 matmul FLOP/s of this machine: best over jitted n x n x n products."""
    best = 0.0
    for n in sizes:
        a = jnp.ones((n, n), jnp.float32)
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
        best = max(best, 2 * n**3 / best_time(lambda f=f, a=a: f(a).block_until_ready(), 5))
    return best


def prefill_flops(c: llama.LlamaConfig, batch: int, prompt: int, slots: int) -> float:
    """Matmul FLOPs of one prefill: projections, MLP, LM head, and attention over the cache slots computed."""
    d, hd = c.hidden_size, c.dim_head
    proj = d * hd * (2 * c.num_heads + 2 * c.num_kv_heads) + 3 * d * c.intermediate_size
    attn = 2 * c.num_heads * hd * slots  # scores and values, per query token
    return 2 * batch * prompt * (c.num_layers * (proj + attn) + d * c.vocab_size)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except Exception:
        return platform.processor() or "unknown"


def bench_model(name, hf_kwargs, batches, peak, torch, transformers):
    """Rows ``(label, cat_jax tok/s, HF tok/s, speed-up, time to first sample, prefill fraction)``."""
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_kwargs)).eval()
    path = tempfile.mkdtemp()
    hf.save_pretrained(path)
    ckpt = convert.load(path)
    config, slots = ckpt.config, PROMPT + NEW
    prefill = jax.jit(ckpt.apply)
    shapes = [(b, 1) for b in batches] + [GROUP]
    rows = []
    for b, n in shapes:
        prompts = np.random.default_rng(b).integers(0, config.vocab_size, (b, PROMPT))
        lengths = jnp.full((b,), PROMPT, jnp.int32)

        def ours(key=0, prompts=prompts, lengths=lengths, b=b, n=n):
            out = sampling.sample(
                ckpt.apply,
                ckpt.params,
                llama.init_cache(config, b, slots),
                jnp.asarray(prompts),
                lengths,
                jax.random.key(key),
                num_samples=n,
                max_new_tokens=NEW,
                strategy=sampling.Temperature(1.0),
            )
            return out.tokens.block_until_ready()

        first = best_time(ours, 1)
        pos = jnp.broadcast_to(jnp.arange(PROMPT)[None], (b, PROMPT))
        cache = llama.init_cache(config, b, slots)
        tokens = jnp.asarray(prompts)
        t_pre = best_time(
            lambda t=tokens, pos=pos, c=cache: prefill(ckpt.params, t, pos, c)[0].block_until_ready(), 5
        )
        frac = prefill_flops(config, b, PROMPT, slots) / t_pre / peak

        def theirs(prompts=prompts, n=n):
            with torch.no_grad():
                return hf.generate(
                    torch.tensor(prompts),
                    attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                    do_sample=True,
                    top_k=0,
                    top_p=1.0,
                    temperature=1.0,
                    max_new_tokens=NEW,
                    min_new_tokens=NEW,
                    num_return_sequences=n,
                    use_cache=True,
                    pad_token_id=0,
                )

        theirs()  # warm-up
        # Interleaved repeats, best of each: load spikes on the shared machine hit both sides alike.
        t_ours, t_hf = float("inf"), float("inf")
        for _ in range(REPEATS):
            t_ours = min(t_ours, best_time(ours, 1))
            t_hf = min(t_hf, best_time(theirs, 1))
        label = f"{b}" if n == 1 else f"{b} prompts x {n} samples"
        total = b * n * NEW
        rows.append((label, total / t_ours, total / t_hf, t_hf / t_ours, first, frac))
        print(
            f"{name} {label}: cat_jax {rows[-1][1]:.0f} tok/s, HF {rows[-1][2]:.0f} tok/s, x{rows[-1][3]:.1f}"
        )
    return config, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/benchmarks/sampler.md")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import torch
    import transformers

    torch.set_num_threads(1)
    peak = matmul_peak()
    lines = [
        "# Sampler throughput: cat_jax vs Hugging Face generate",
        "",
        "Command: `.venv/bin/python -m benchmarks.sampler`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores visible, shared with other jobs; one thread each for "
        "XLA and torch "
        f"(ratios matter, absolute numbers do not); jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
        f"{transformers.__version__}. Measured matmul peak (best jit float32 n^3, n <= 2048): "
        f"{peak / 1e9:.0f} GFLOP/s.",
        "",
        "Both sides load the same safetensors of a random LlamaForCausalLM (float32). "
        f"Prompt {PROMPT} tokens, exactly {NEW} new tokens (no EOS), temperature 1, "
        "no top-k/top-p (HF: `do_sample=True, top_k=0`, KV cache on), "
        f"best of {REPEATS} interleaved runs. Tokens/s count generated tokens. "
        "The `prompts x samples` row uses `num_samples` (prefill once, shared cache) "
        "vs HF `num_return_sequences`. Time to first sample is the first call of a shape, "
        "compile included; the prefill fraction is the prefill forward's matmul FLOP/s "
        "over the measured peak (on a shared machine the peak is itself noisy).",
    ]
    for name in args.models.split(","):
        config, rows = bench_model(name, MODELS[name], batches, peak, torch, transformers)
        lines += [
            "",
            f"## {name}: {config.num_params() / 1e6:.2f}M params ({config.num_layers} layers, "
            f"d={config.hidden_size}, {config.num_heads}/{config.num_kv_heads} q/kv heads, "
            f"vocab {config.vocab_size})",
            "",
            "| batch | cat_jax tok/s | HF generate tok/s | speed-up | time to first sample (s) "
            "| prefill matmul fraction |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {b} | {o:.0f} | {h:.0f} | {r:.1f}x | {f:.2f} | {p:.2f} |" for b, o, h, r, f, p in rows]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
