"""Where the sampler's time goes: per-op XLA:CPU profile of ``sampling.sample``, grouped by role.

Run: ``.venv/bin/python -m benchmarks.sampler_profile`` (pinned to one core, like ``benchmarks.sampler``;
~3 minutes for the default ``--runs tiny:64,tiny:256,5M:256``; a run is ``model:batch[:dtype]``, dtype the
compute dtype, float32 by default; ``--out FILE`` also writes markdown). Traces
``--calls`` sampler calls with ``jax.profiler``, takes each XLA op's median duration times its count per call
(robust to load spikes on a shared machine), maps ops to the jax code that produced them through the compiled
HLO's metadata, and prints the groups: prefill (with the loop cache's initialisation), decode matmuls, decode
attention einsums, LM head with sampling (log-softmax, the CDF cumsum), and the rest of the decode step;
then the decode matmuls' FLOP/s as a fraction of the measured matmul peak of the run's dtype, and the decode
attention's bytes read per generated token with the rate achieved against a measured read bandwidth.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time


def decode_group(name: str, line: str, body: str) -> str:
    """The sampler's group of one XLA op (its HLO ``line``; ``body``: the computation it calls, if any)."""
    names = re.findall(r'op_name="([^"]+)"', line) or re.findall(r'op_name="([^"]+)"', body)
    where = names[-1] if names else ""
    if "while/body" not in where or "closed_call" in where:
        return "prefill (with the loop cache's initialisation)"
    if "bkgd,bksd" in where or "bkgs,bksd" in where:
        return "decode attention einsums"
    if "log_softmax" in where or "reduce-window" in name or "/exp" in where:
        return "LM head and sampling (log-softmax, CDF cumsum)"
    if "dot_general" in where:
        return "decode matmuls (projections, MLP)"
    return "rest of the decode step (norms, RoPE, masks, softmax, cache writes)"


def groups(trace_json, hlo: str, calls: int, classify=decode_group) -> dict[str, float]:
    """Seconds per call of each group, from a perfetto trace and the compiled HLO text;
    ``classify(name, hlo line, called computation's text) -> group`` (benchmarks/step_profile.py has its own).
    """
    durations = collections.defaultdict(list)
    for e in trace_json["traceEvents"] if isinstance(trace_json, dict) else trace_json:
        if e.get("ph") == "X":
            durations[e["name"]].append(e.get("dur", 0) * 1e-6)
    computations, current, ops = {}, None, {}
    for line in hlo.splitlines():
        head = re.match(r"^%?([\w.\-]+) \(", line)
        if head:
            current = computations.setdefault(head.group(1), [])
            continue
        if current is not None:
            current.append(line)
        op = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
        if op:
            ops[op.group(1)] = line
    out = collections.Counter()
    for name, ds in durations.items():
        if name not in ops:
            continue
        line = ops[name]
        called = re.search(r"calls=%([\w.\-]+)", line)
        body = "\n".join(computations.get(called.group(1), [])) if called else ""
        out[classify(name, line, body)] += min(statistics.median(ds) * len(ds) / calls, sum(ds) / calls)
    return dict(out)


def bandwidth(jax, jnp, np, nbytes: int) -> float:
    """Measured read bandwidth (bytes/s): best jitted float32 column sum over a ``nbytes`` array."""
    x = jnp.ones((max(1, nbytes // 4096), 1024), jnp.float32)
    f = jax.jit(lambda x: jnp.sum(x, axis=0))
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return x.nbytes / best


def profile(spec: str, calls: int, libs, peaks) -> list[str]:
    """Markdown lines for one ``model:batch[:dtype]`` profile (dtype: the compute dtype, float32 default)."""
    jax, jnp, np, MODELS, NEW, PROMPT, sampling, llama = libs
    name, b, *dt = spec.split(":")
    m, b = MODELS[name], int(b)
    dtype = dt[0] if dt else "float32"
    config = llama.LlamaConfig(
        m["vocab_size"],
        m["hidden_size"],
        m["intermediate_size"],
        m["num_hidden_layers"],
        m["num_attention_heads"],
        m["num_key_value_heads"],
        compute_dtype=dtype,
    )
    graphdef, params = llama.init(config, jax.random.key(0))
    prompts = jnp.asarray(np.random.default_rng(b).integers(0, config.vocab_size, (b, PROMPT)), jnp.int32)
    slots = PROMPT + NEW
    args = (llama.decoder(graphdef), params, llama.init_cache(config, b, slots), prompts)
    args += (jnp.full((b,), PROMPT, jnp.int32),)
    kw = dict(num_samples=1, max_new_tokens=NEW, strategy=sampling.Temperature(1.0))

    def call():
        return sampling.sample(*args, jax.random.key(0), **kw).tokens.block_until_ready()

    call()
    walls = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    hlo = sampling._sample.lower(*args, jax.random.key(0), **kw, stop_tokens=(), pad_id=0).compile().as_text()
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                call()
        (path,) = glob.glob(f"{d}/plugins/profile/*/perfetto_trace.json.gz")
        trace_json = json.load(gzip.open(path))
    g = groups(trace_json, hlo, calls)
    total = sum(g.values())
    # Efficiency of the two groups that are one kind of work each.
    c, hd = config, config.dim_head
    proj = (
        c.hidden_size * hd * (2 * c.num_heads + 2 * c.num_kv_heads) + 3 * c.hidden_size * c.intermediate_size
    )
    decode_flops = 2 * NEW * b * c.num_layers * proj
    t_mm = g.get("decode matmuls (projections, MLP)", float("nan"))
    carried = sampling._carried(c.matmul_dtype).itemsize  # the loop's cache dtype (float32 on CPU)
    per_token = 2 * c.num_layers * c.num_kv_heads * slots * hd * carried  # K and V, every slot, every layer
    filled = 2 * c.num_layers * c.num_kv_heads * hd * carried * (PROMPT + (NEW + 1) / 2)  # mean filled part
    t_att = g.get("decode attention einsums", float("nan"))
    achieved = per_token * b * NEW / t_att
    bw = bandwidth(jax, jnp, np, per_token * b // c.num_layers // 2)  # one layer's K (or V) cache
    lines = [
        f"- **{name}, batch {b}, {dtype}** (prompt {PROMPT}, {NEW} new tokens): {total * 1e3:.1f} ms of ops "
        f"per call (wall {min(walls) * 1e3:.0f} ms, best of 3 untraced calls)"
    ]
    for group, t in sorted(g.items(), key=lambda kv: -kv[1]):
        lines.append(f"  - {t * 1e3:.1f} ms ({100 * t / total:.0f}%) {group}")
    lines += [
        f"  - decode matmuls: {decode_flops / t_mm / 1e9:.0f} GFLOP/s = "
        f"{decode_flops / t_mm / peaks[dtype]:.2f} of the {dtype} peak",
        f"  - decode attention: reads {per_token / 1024:.0f} KiB per generated token (K and V of all {slots} "
        f"slots x {c.num_layers} layers, {carried}-byte cache; the filled part is {filled / per_token:.0%} "
        f"of it on average), {achieved / 1e9:.1f} GB/s achieved vs {bw / 1e9:.1f} GB/s measured read "
        f"bandwidth on one layer's K cache ({per_token * b // c.num_layers // 2 / 2**20:.1f} MiB)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="tiny:64,tiny:256,5M:256", help="model:batch[:dtype],...")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the profile as markdown here")
    args = parser.parse_args()
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])

    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.sampler import MODELS, NEW, PROMPT, matmul_peak
    from cat_jax import sampling
    from cat_jax.models import llama

    libs = (jax, jnp, np, MODELS, NEW, PROMPT, sampling, llama)
    peaks = {dt: matmul_peak(jax, jnp, dt) for dt in ("float32", "bfloat16")}
    lines = []
    for spec in args.runs.split(","):
        new = profile(spec, args.calls, libs, peaks)
        lines += new
        print("\n".join(new), flush=True)
    if args.out:
        command = f".venv/bin/python -m benchmarks.sampler_profile --runs {args.runs} --calls {args.calls}"
        head = [
            "# Where the sampler's time goes (XLA:CPU profile)",
            "",
            f"Command: `{command} --out {args.out}`; pinned to one core, temperature 1, the models of "
            "`benchmarks/sampler.py` with random float32 weights and compute dtype float32 or bfloat16 (the "
            "third field of a run). Per XLA op: median duration x count per call over "
            f"{args.calls} traced calls (robust to load spikes on the shared machine; load average "
            f"{os.getloadavg()[0]:.1f} at the end), grouped by the jax code that emitted it. Matmul peaks "
            f"measured in the same run (best jit n^3, n <= 2048, float32 accumulation): float32 "
            f"{peaks['float32'] / 1e9:.0f}, bfloat16 inputs {peaks['bfloat16'] / 1e9:.0f} GFLOP/s. A "
            "fraction above 1 means the peak's best-of-20 was itself slowed by the machine's load.",
            "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(head + lines) + "\n")


if __name__ == "__main__":
    main()
