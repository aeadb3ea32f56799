"""Sampler throughput: cat_jax jit sampler vs Hugging Face ``generate`` on the same weights, side by side, in
float32 and bfloat16.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.sampler`` (writes ``results/benchmarks/sampler.md``; ~10
minutes on a shared 2-core machine). For each model shape in ``MODELS`` a random ``LlamaForCausalLM`` is built
with transformers, saved as safetensors and loaded into cat_jax with ``cat_jax.models.convert``, so every side
runs identical weights. Four sides: cat_jax with float32 parameters and ``compute_dtype`` float32 or bfloat16
(bf16 matmul inputs, float32 accumulation and everything else), and HF in float32 or cast to bfloat16. All
sample at temperature 1 without filters (HF: ``do_sample=True, top_k=0``, KV cache on), from the same prompt
length, for exactly the same number of new tokens, at batch sizes 1, 16, 64, 256 (one completion per prompt)
and 16 prompts x 16 samples. Repetitions cycle through the four sides and the table reports medians and their
ratios. Also: time to first sample (first call, compile included) and the fraction of the machine's measured
matmul throughput of each dtype (measured in the same run) that the sampler's prefill achieves.

Threads: the process is pinned to ``--cores`` cores (default 1) before jax and torch start, and torch gets as
many threads, so both runtimes compute on the same cores; the header records how many threads of each side
actually burned CPU time. (Pinning matters: XLA sizes its CPU thread pool from the affinity mask, and
``--xla_cpu_multi_thread_eigen=false`` alone still left XLA two busy threads against torch's one.)
"""

from __future__ import annotations

import argparse
import functools
import glob
import os
import platform
import subprocess
import tempfile
import time


def _pin(cores: int) -> list[int]:
    """Pin this process to its first ``cores`` allowed CPUs (before jax/torch size their thread pools)."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, cpus)
    return cpus


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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak(jax, jnp, dtype="float32", sizes=(512, 1024, 2048)) -> float:
    """Measured matmul FLOP/s of this machine in ``dtype``: best over jitted n x n x n products whose inputs
    are ``dtype`` and which accumulate into float32 (the model's ``_dot``)."""
    best = 0.0
    for n in sizes:
        a = jnp.ones((n, n), dtype)
        f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
        f(a).block_until_ready()
        t = min(timed(lambda f=f, a=a: f(a).block_until_ready()) for _ in range(20))
        best = max(best, 2 * n**3 / t)
    return best


def prefill_flops(c, batch: int, samples: int, prompt: int, slots: int) -> float:
    """Matmul FLOPs of ``sample(..., max_new_tokens=1)``: the prefill over ``batch * prompt`` tokens
    (attention over the ``prompt`` slots it writes, no LM head) and the one step that re-feeds each row's
    last prompt token (attention over ``slots``, LM head) for ``batch * samples`` rows."""
    d, hd = c.hidden_size, c.dim_head
    proj = d * hd * (2 * c.num_heads + 2 * c.num_kv_heads) + 3 * d * c.intermediate_size
    attn = 2 * c.num_heads * hd  # scores and values, per query token and key slot
    pre = batch * prompt * c.num_layers * (proj + attn * prompt)
    step = batch * samples * (c.num_layers * (proj + attn * slots) + d * c.vocab_size)
    return 2 * (pre + step)


def busy_threads(fn) -> int:
    """Threads of this process that burned >= 25% of the busiest one's CPU time during ``fn()``."""

    def ticks():
        out = {}
        for path in glob.glob("/proc/self/task/*/stat"):
            try:
                fields = open(path).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[path] = int(fields[11]) + int(fields[12])  # utime + stime
        return out

    before = ticks()
    fn()
    used = [t - before.get(k, 0) for k, t in ticks().items()]
    top = max(used, default=0)
    return sum(u >= max(1, 0.25 * top) for u in used)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except Exception:
        return platform.processor() or "unknown"


DTYPES = ("float32", "bfloat16")
SHORT = {"float32": "f32", "bfloat16": "bf16"}


def bench_model(name, hf_kwargs, batches, peaks, repeats, libs, count_threads):
    """Per shape: tok/s of the four sides (cat_jax f32 / bf16, HF f32 / bf16), time to first sample and
    prefill matmul fraction per cat_jax dtype; and the most busy threads per side (when ``count_threads``)."""
    jax, jnp, np, torch, transformers, sampling, convert, llama = libs
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_kwargs)).eval()
    path = tempfile.mkdtemp()
    hf.save_pretrained(path)
    hf_bf16 = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_kwargs)).eval()
    hf_bf16.load_state_dict(hf.state_dict())
    hf_bf16 = hf_bf16.to(torch.bfloat16)
    # float32 parameters (master weights) with float32 or bfloat16 matmul inputs (LlamaConfig.compute_dtype).
    ckpts = {dt: convert.load(path, compute_dtype=dt) for dt in DTYPES}
    config, slots = ckpts["float32"].config, PROMPT + NEW
    shapes = [(b, 1) for b in batches] + [GROUP]
    rows, threads = [], (0, 0)
    for b, n in shapes:
        prompts = np.random.default_rng(b).integers(0, config.vocab_size, (b, PROMPT))
        lengths = jnp.full((b,), PROMPT, jnp.int32)
        sides = {}
        for dt, ck in ckpts.items():
            cache = llama.init_cache(ck.config, b, slots)  # only its shapes are used: one serves every call

            def ours(key=0, prompts=prompts, lengths=lengths, cache=cache, n=n, new=NEW, ck=ck):
                out = sampling.sample(
                    ck.apply,
                    ck.params,
                    cache,
                    jnp.asarray(prompts),
                    lengths,
                    jax.random.key(key),
                    num_samples=n,
                    max_new_tokens=new,
                    strategy=sampling.Temperature(1.0),
                )
                return out.tokens.block_until_ready()

            sides[f"cat_jax {SHORT[dt]}"] = ours
        for dt, model in (("float32", hf), ("bfloat16", hf_bf16)):

            def theirs(prompts=prompts, n=n, model=model):
                with torch.no_grad():
                    return model.generate(
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

            sides[f"HF {SHORT[dt]}"] = theirs
        first, frac = {}, {}
        for dt in DTYPES:
            ours = sides[f"cat_jax {SHORT[dt]}"]
            first[dt] = timed(ours)
            one = functools.partial(ours, new=1)
            one()
            t_pre = float(np.median([timed(one) for _ in range(repeats)]))
            frac[dt] = prefill_flops(config, b, n, PROMPT, slots) / t_pre / peaks[dt]
        for dt in DTYPES:
            sides[f"HF {SHORT[dt]}"]()  # warm-up
        if count_threads and (b, n) == GROUP:  # the longest call: coarse CPU-time ticks resolve it
            threads = (
                max(threads[0], busy_threads(sides["cat_jax bf16"])),
                max(threads[1], busy_threads(sides["HF bf16"])),
            )
        # Alternating repetitions, medians: load changes on the shared machine hit every side alike.
        times = {k: [] for k in sides}
        for _ in range(repeats):
            for k, fn in sides.items():
                times[k].append(timed(fn))
        med = {k: float(np.median(v)) for k, v in times.items()}
        label = f"{b}" if n == 1 else f"{b} prompts x {n} samples"
        total = b * n * NEW
        rows.append((label, {k: total / t for k, t in med.items()}, med, first, frac))
        summary = ", ".join(f"{k} {total / t:.0f} tok/s" for k, t in med.items())
        ratios = (med["HF f32"] / med["cat_jax bf16"], med["HF bf16"] / med["cat_jax bf16"])
        print(
            f"{name} {label}: {summary}; bf16 / HF f32 x{ratios[0]:.2f}, bf16 / HF bf16 x{ratios[1]:.2f}; "
            f"first {first['float32']:.2f} / {first['bfloat16']:.2f} s, prefill {frac['float32']:.2f} / "
            f"{frac['bfloat16']:.2f} of peak (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return config, rows, threads


def table(rows) -> list[str]:
    """One markdown table: throughput of the four sides, the ratios, compile and prefill efficiency."""
    out = [
        "| batch | cat_jax f32 tok/s | cat_jax bf16 tok/s | HF f32 tok/s | HF bf16 tok/s "
        "| speed-up (f32 / HF f32) | bf16 / HF f32 | bf16 / HF bf16 | HF bf16 / HF f32 "
        "| time to first sample f32 / bf16 (s) | prefill matmul fraction f32 / bf16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, tok, med, first, frac in rows:
        pairs = [("cat_jax f32", "HF f32"), ("cat_jax bf16", "HF f32"), ("cat_jax bf16", "HF bf16")]
        speed = [med[b] / med[a] for a, b in [*pairs, ("HF bf16", "HF f32")]]  # a's speed-up over b
        cells = [label, *(f"{tok[k]:.0f}" for k in ("cat_jax f32", "cat_jax bf16", "HF f32", "HF bf16"))]
        cells += [f"{x:.1f}x" for x in speed]
        cells += [f"{first[dt]:.2f}" for dt in DTYPES], [f"{frac[dt]:.2f}" for dt in DTYPES]
        out.append("| " + " | ".join(c if isinstance(c, str) else " / ".join(c) for c in cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/benchmarks/sampler.md")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cores", type=int, default=1, help="cores both sides share (threads of each)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    cpus = _pin(args.cores)
    started = time.perf_counter()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers

    from cat_jax import sampling
    from cat_jax.models import convert, llama

    torch.set_num_threads(len(cpus))
    libs = (jax, jnp, np, torch, transformers, sampling, convert, llama)
    peaks = {dt: matmul_peak(jax, jnp, dt) for dt in DTYPES}
    sections, threads = [], None
    for name in args.models.split(","):
        config, rows, counted = bench_model(
            name, MODELS[name], batches, peaks, args.repeats, libs, count_threads=threads is None
        )
        threads = threads or counted
        sections += [
            "",
            f"## {name}: {config.num_params() / 1e6:.2f}M params ({config.num_layers} layers, "
            f"d={config.hidden_size}, {config.num_heads}/{config.num_kv_heads} q/kv heads, "
            f"vocab {config.vocab_size})",
            "",
            *table(rows),
        ]
    command = "nice -n 10 .venv/bin/python -m benchmarks.sampler"
    command += "".join(
        f" --{k} {v}"
        for k, v, default in (
            ("cores", args.cores, 1),
            ("repeats", args.repeats, REPEATS),
            ("batches", args.batches, ",".join(map(str, BATCHES))),
            ("models", args.models, ",".join(MODELS)),
        )
        if v != default
    )
    lines = [
        "# Sampler throughput: cat_jax vs Hugging Face generate, float32 and bfloat16",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run, {time.perf_counter() - started:.0f} s in all); "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, transformers "
        f"{transformers.__version__}. The process was pinned to {len(cpus)} core(s) {cpus} and torch set "
        f"to {torch.get_num_threads()} thread(s); threads that burned CPU time during one {GROUP[0]} x "
        f"{GROUP[1]} bfloat16 call: cat_jax {threads[0]}, HF {threads[1]}. Measured matmul peak (best jit "
        f"n^3, n <= 2048, float32 accumulation) in this run: float32 {peaks['float32'] / 1e9:.0f} GFLOP/s, "
        f"bfloat16 inputs {peaks['bfloat16'] / 1e9:.0f} GFLOP/s.",
        "",
        "Both sides load the same safetensors of a random LlamaForCausalLM (float32). cat_jax f32 / bf16: "
        "float32 parameters with `LlamaConfig.compute_dtype` float32 / bfloat16 (bf16 matmul inputs, "
        "float32 accumulation, residual stream, norms, softmax and attention; on CPU the sampler carries the "
        "bf16 KV cache in float32, same values: `sampling.CPU_CACHE_DTYPE`). HF f32 / bf16: the model in "
        "float32 / `.to(torch.bfloat16)` (everything bf16). "
        f"Prompt {PROMPT} tokens, exactly {NEW} new tokens (no EOS), temperature 1, "
        "no top-k/top-p (HF: `do_sample=True, top_k=0`, KV cache on); "
        f"median of {args.repeats} runs per side, the four sides alternating (a ratio is the ratio of the "
        "medians; `a / b` is a's speed-up over b). "
        "Tokens/s count generated tokens. The `prompts x samples` row uses `num_samples` (prefill once, "
        "shared cache) vs HF `num_return_sequences`. Time to first sample is the first call of a shape, "
        "compile included; the prefill matmul fraction is the matmul FLOP/s of "
        "`sample(..., max_new_tokens=1)` (the prefill plus the step that samples the first token) over the "
        "measured peak of its dtype. Where the time goes, the decode matmuls' fraction of peak and the "
        "decode attention's bytes per token against the memory bandwidth: "
        "`results/benchmarks/sampler_profile.md` "
        "(`python -m benchmarks.sampler_profile`).",
        *sections,
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
