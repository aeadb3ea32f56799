"""Where the SFT and RL steps' time goes: per-op XLA:CPU profile of the jitted steps, grouped by role.

Run: ``.venv/bin/python -m benchmarks.step_profile`` (~3 minutes on 2 cores; ``--out FILE`` also writes
markdown). The steps are those of ``benchmarks/train_steps.py`` (same model, batch and settings). Traces
``--calls`` calls of each with ``jax.profiler``, takes each XLA op's median duration times its count per call
(robust to load spikes on a shared machine), maps ops to the jax code that produced them through the
compiled HLO's metadata (named scopes ``rollout``, ``update``, ``optimizer``, ``vocab_log_softmax`` of
``cat_jax``, einsum specs, op kinds) and prints the groups. XLA:CPU may run independent ops concurrently,
so the groups' sum can exceed the step's wall time a little.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import statistics
import tempfile

from benchmarks import sampler_profile

GROUPS = (
    "rollout (the sampler's loop)",
    "projection matmuls (q, k, v, o, MLP, LM head; forward and backward)",
    "attention matmuls (scores, weighted sum)",
    "layout copies and transposes",
    "vocabulary log-softmax (forward and backward)",
    "optimizer (global norm, clip, AdamW, finite guard)",
    "KV cache of the shared prompts (repeat, writes)",
    "other elementwise (norms, RoPE, SwiGLU, softmax, masks, loss)",
)


def classify(name: str, line: str, called: str) -> str:
    """The group of one XLA op from its HLO line and the lines of the computation it calls."""
    where = " ".join(re.findall(r'op_name="([^"]+)"', line + "\n" + called))
    if "rollout" in where or "jit(_sample)" in where:
        return GROUPS[0]
    if "optimizer" in where:
        return GROUPS[5]
    if "vocab_log_softmax" in where:
        return GROUPS[4]
    is_dot = " dot(" in line or ("__ynn_fusion" in line and "dot_general" in where)
    if is_dot and re.search(r"btkgd|bkgts|bksd", where):
        return GROUPS[2]
    if is_dot:
        return GROUPS[1]
    if re.match(r"(copy|transpose)", name) or re.search(r"= \S+ (copy|transpose)\(", line):
        return GROUPS[3]
    if re.search(r"scatter|repeat|/pad|dynamic.update.slice", where + " " + name):
        return GROUPS[6]
    return GROUPS[7]


def profile(name: str, run, compiled_text: str, calls: int) -> tuple[float, dict[str, float]]:
    """(median wall seconds per call, seconds per call of each group) of ``run()`` traced ``calls`` times."""
    import time

    import jax

    run()
    walls = []
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                t0 = time.perf_counter()
                run()
                walls.append(time.perf_counter() - t0)
        (path,) = glob.glob(f"{d}/plugins/profile/*/perfetto_trace.json.gz")
        trace_json = json.load(gzip.open(path))
    return statistics.median(walls), sampler_profile.groups(trace_json, compiled_text, calls, classify)


def markdown(title: str, wall: float, g: dict[str, float]) -> list[str]:
    total = sum(g.values())
    lines = [f"- **{title}**: {wall:.3f} s per call (wall, median), {total:.3f} s of ops"]
    for group, t in sorted(g.items(), key=lambda kv: -kv[1]):
        lines.append(f"  - {t:.3f} s ({t / total:.0%}) {group}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="sft,rl", help="comma-separated: sft, rl")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes, one profile each")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the profile as markdown here")
    args = parser.parse_args()

    import jax

    from benchmarks import train_steps as ts

    lines = []
    for step, dtype in [(s, d) for d in args.dtypes.split(",") for s in args.steps.split(",")]:
        if step == "sft":
            fn, (state, batch) = ts.sft_setup(dtype)
            title = f"SFT step (CAT Pass@16, AdamW), batch {ts.SFT_BATCH} x {ts.SFT_LEN}, {dtype}"
        elif step == "rl":
            fn, (state, batch) = ts.rl_setup(dtype)
            title = (
                f"RL step (Majority weights, REINFORCE), {ts.RL_PROMPTS} prompts x M={ts.RL_M}, "
                f"{ts.RL_PROMPT_LEN} + {ts.RL_NEW} tokens, {dtype}"
            )
        else:
            parser.error(f"--steps takes sft and rl, got {step!r}")
        text = fn.lower(state, batch).compile().as_text()
        holder = {"state": state}

        def run(fn=fn, batch=batch, holder=holder):
            holder["state"], metrics = fn(holder["state"], batch)
            jax.block_until_ready(metrics)

        wall, g = profile(step, run, text, args.calls)
        lines += markdown(title, wall, g)
        print("\n".join(lines[-(len(g) + 1) :]), flush=True)
    if args.out:
        command = f".venv/bin/python -m benchmarks.step_profile --steps {args.steps} --dtypes {args.dtypes}"
        head = [
            "# Where the SFT and RL steps' time goes (XLA:CPU profile)",
            "",
            f"Command: `{command} --calls {args.calls} --out {args.out}`; the steps of `train_steps.py`. Per "
            f"XLA op: median duration x count per call over {args.calls} traced calls, grouped by the jax "
            f"code that emitted it (load average {os.getloadavg()[0]:.1f} at the end, on "
            f"{os.cpu_count()} cores: absolute seconds swing, shares are the signal).",
            "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(head + lines) + "\n")


if __name__ == "__main__":
    main()
