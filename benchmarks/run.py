"""Run every benchmark in benchmarks/ and write one report of ratios: results/benchmarks/README.md.

Run: ``.venv/bin/python -m benchmarks.run`` (full sizes, 8 minutes on the shared 2-core box; rewrites the
per-benchmark ``results/benchmarks/*.md`` and the README). ``--quick`` runs smaller sizes and writes under
``--out-dir`` (default: a fresh temporary directory), so committed results are never replaced by quick ones.
``--only estimators,sampler`` picks benchmarks. ``--collect`` runs nothing: it rebuilds the README from the
per-benchmark reports as their own last runs wrote them (after rerunning one benchmark by itself).

Contract with the benchmark modules (the one they already follow): each is run as its own process,
``python -m benchmarks.<name> [args]``, with the working directory set to the output root, and writes
``results/benchmarks/<name>.md`` relative to it (a module whose source never names that file, such as a
profiler, is listed in the report but not run). A separate process per benchmark keeps each one's XLA flags
and thread settings (the sampler pins itself to one core) and isolates failures: a benchmark
that crashes, times out or writes no report is a FAILED row in the table, the others still run, and the
exit status is 1. The ratios are read back from the markdown tables the benchmarks write; a benchmark
without a known reader is still run and linked. ``tunix_grpo`` runs with ``.venv-bench/bin/python`` when
that venv exists (Tunix stays out of .venv) and is reported as skipped when Tunix is not importable.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPORT_DIR = pathlib.Path("results/benchmarks")
COMMAND = ".venv/bin/python -m benchmarks.run"
# Preferred order (cheap first); any other module in benchmarks/ runs after these.
ORDER = ("estimators", "sampler", "train_steps", "tunix_grpo")
NOT_BENCHMARKS = {"__init__", "run"}


# ----------------------------------------------------------------------------- reading markdown reports


def md_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every pipe table of ``text`` as ``(heading above it, header cells, body rows of cells)``."""
    out, heading, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = _cells(line)
            rows, i = [], i + 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i].strip()))
                i += 1
            out.append((heading, header, rows))
            continue
        i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _column(header: list[str], *words: str) -> int:
    for j, h in enumerate(header):
        if all(w in h.lower() for w in words):
            return j
    raise ValueError(f"no column with {words} in {header}")


def _number(cell: str) -> float:
    m = re.search(r"-?\d+(?:\.\d+)?", cell.replace(",", ""))
    if not m:
        raise ValueError(f"no number in {cell!r}")
    return float(m.group())


@dataclasses.dataclass
class Row:
    """One line of the ratio table."""

    comparison: str
    ratio: str
    compile: str = ""
    note: str = ""


def read_estimators(text: str) -> list[Row]:
    (_, header, rows), *_ = md_tables(text)
    speed, comp = _column(header, "speed-up"), _column(header, "compile")
    exact = next(r for r in rows if r[0].startswith("exact Maj@k") and "ties=first" in r[0])
    out = []
    for r in rows:
        if r[speed].strip("* "):
            alt = "pure-Python reference MC" if "reference" in r[0] else "vectorised NumPy MC"
            out.append(
                Row(
                    f"exact Maj@k curve (all k) vs {alt}, 500 trials",
                    f"{_number(r[speed]):.0f}x faster",
                    f"{_number(exact[comp]):.1f} s",
                    f"exact {_number(exact[1]):.3g} s vs {r[1]} s ({r[0].split('(')[-1].rstrip(')')})",
                )
            )
    if not out:
        raise ValueError("no speed-up rows")
    return out


def read_sampler(text: str) -> list[Row]:
    out = []
    for heading, header, rows in md_tables(text):
        speed, first = _column(header, "speed-up"), _column(header, "first")
        ratios = {r[0]: _number(r[speed]) for r in rows}
        firsts = [_number(r[first]) for r in rows]
        detail = "f32 / HF f32 by batch: " + ", ".join(f"{k}: {v:.1f}x" for k, v in ratios.items())
        for words in (("bf16 / hf f32",), ("bf16 / hf bf16",)):  # the bf16 sides, where the run has them
            try:
                j = _column(header, *words)
            except ValueError:
                continue
            big = {r[0]: _number(r[j]) for r in rows if r[0] in ("64", "256")}
            detail += f"; {words[0].replace('hf', 'HF')}: " + ", ".join(
                f"{k}: {v:.1f}x" for k, v in big.items()
            )
        out.append(
            Row(
                f"sampler vs HF `generate`, {heading.split(':')[0]}: {heading.split(':', 1)[-1].strip()}",
                f"{min(ratios.values()):.1f}x – {max(ratios.values()):.1f}x faster",
                f"{min(firsts):.1f} – {max(firsts):.1f} s (first sample)",
                detail,
            )
        )
    if not out:
        raise ValueError("no sampler tables")
    return out


def read_train_steps(text: str) -> list[Row]:
    out = []
    for heading, header, rows in md_tables(text):
        r = rows[0]
        if heading.startswith("SFT"):
            frac = _number(r[_column(header, "fraction")])
            out.append(
                Row(
                    f"SFT step vs this machine's measured matmul peak ({heading})",
                    f"{frac:.2f} of peak",
                    f"{_number(r[_column(header, 'compile')]):.1f} s",
                    f"{r[_column(header, 'tokens/s')]} tokens/s",
                )
            )
        elif heading.startswith("RL"):
            # Cells are "38%" or "0.123 s (38%)": keep the shares.
            shares = [r[_column(header, w)] for w in ("rollout", "scoring", "update")]
            shares = [m.group() if (m := re.search(r"\d+%", c)) else c for c in shares]
            extra = [f"step {r[_column(header, 'step')]} s"]
            for col in ("tokens/s", "completions"):
                try:
                    extra.append(f"{r[_column(header, col)]} {header[_column(header, col)]}")
                except ValueError:
                    pass
            out.append(
                Row(
                    f"RL step split: rollout / scoring / update ({heading})",
                    " / ".join(shares),
                    f"{_number(r[_column(header, 'compile')]):.1f} s",
                    ", ".join(extra),
                )
            )
    if not out:
        raise ValueError("no SFT/RL tables")
    return out


def read_tunix_grpo(text: str) -> list[Row]:
    m = re.search(r"Tunix / cat_jax step time: ([\d.]+)x", text)
    if not m:
        raise ValueError("no 'Tunix / cat_jax step time' line")
    (_, header, rows), *_ = md_tables(text)
    comp = _column(header, "compile")
    compiles = " / ".join(f"{_number(r[comp]):.0f}" for r in rows)
    version = re.search(r"google-tunix (\d+(?:\.\d+)*)", text)
    return [
        Row(
            f"RL step vs Tunix `GRPOLearner` {version.group(1) if version else ''}, same model and batch",
            f"{float(m.group(1)):.2f}x (Tunix time / ours)",
            f"{compiles} s (ours / Tunix)",
            "> 1 means cat_jax is faster",
        )
    ]


READERS: dict[str, Callable[[str], list[Row]]] = {
    "estimators": read_estimators,
    "sampler": read_sampler,
    "train_steps": read_train_steps,
    "tunix_grpo": read_tunix_grpo,
}

# Smaller sizes for --quick, used only while the module still accepts those options.
QUICK_ARGS = {
    "estimators": ["--problems", "64", "--samples", "32", "--reference-problems", "1"],
    "sampler": ["--batches", "1,16", "--models", "tiny"],
    "tunix_grpo": ["--repeats", "1"],
}


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class Result:
    name: str
    status: str  # ok | skipped | FAILED
    seconds: float
    rows: list[Row]
    note: str = ""
    log_tail: str = ""


def discover() -> tuple[list[str], list[str]]:
    """Benchmarks (modules that write ``results/benchmarks/<name>.md``) in run order, and the other modules
    of benchmarks/ (tools such as profilers), which are listed in the report but not run."""
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in NOT_BENCHMARKS)
    writes = {
        n for n in names if f"results/benchmarks/{n}.md" in (ROOT / "benchmarks" / f"{n}.py").read_text()
    }
    runs = [n for n in ORDER if n in writes] + [n for n in names if n in writes and n not in ORDER]
    return runs, [n for n in names if n not in writes]


def python_for(name: str) -> str:
    bench = ROOT / ".venv-bench" / "bin" / "python"
    if name == "tunix_grpo" and bench.exists():
        return str(bench)
    return sys.executable


def bench_args(name: str, quick: bool) -> tuple[list[str], str]:
    """Extra command-line arguments and a note saying how the size was chosen."""
    if not quick:
        return [], ""
    source = (ROOT / "benchmarks" / f"{name}.py").read_text()
    if '"--quick"' in source:
        return ["--quick"], "its own --quick"
    args = QUICK_ARGS.get(name, [])
    if args and all(a in source for a in args if a.startswith("--")):
        return args, " ".join(args)
    return [], "full size (no quick options)"


def collect_one(name: str, out_root: pathlib.Path) -> Result:
    """A benchmark's row from the report its last run wrote (``--collect``: nothing runs)."""
    report = out_root / REPORT_DIR / f"{name}.md"
    if not report.exists():
        return Result(name, "FAILED", float("nan"), [], f"--collect: {report} does not exist", "")
    reader = READERS.get(name)
    if reader is None:
        return Result(name, "ok", float("nan"), [Row("(no reader for this report: see the file)", "-")], "")
    return Result(name, "ok", float("nan"), reader(report.read_text()), "")


def run_one(name: str, out_root: pathlib.Path, *, quick: bool, timeout: float, logs: pathlib.Path) -> Result:
    args, size_note = bench_args(name, quick)
    cmd = [python_for(name), "-m", f"benchmarks.{name}", *args]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    report = out_root / REPORT_DIR / f"{name}.md"
    log = logs / f"{name}.log"
    print(f"[benchmarks.run] {name}: {' '.join(cmd[1:])} (log: {log})", flush=True)
    start, t0 = time.time(), time.perf_counter()
    try:
        with open(log, "w") as f:
            proc = subprocess.run(
                cmd, cwd=out_root, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout
            )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    tail = "\n".join(text.rstrip().splitlines()[-15:])
    note = "; ".join(filter(None, [".venv-bench python" if ".venv-bench" in cmd[0] else "", size_note]))
    if code is None:
        return Result(name, "FAILED", seconds, [], f"timed out after {timeout:.0f} s", tail)
    if code != 0:
        return Result(name, "FAILED", seconds, [], f"exit status {code}", tail)
    if not report.exists() or report.stat().st_mtime < start:
        if "skipping" in text.lower():
            reason = next(line for line in text.splitlines() if "skipping" in line.lower())
            return Result(name, "skipped", seconds, [], reason.strip(), "")
        return Result(name, "FAILED", seconds, [], f"exit 0 but {report} was not written", tail)
    reader = READERS.get(name)
    if reader is None:
        return Result(name, "ok", seconds, [Row("(no reader for this report: see the file)", "-")], note)
    try:
        rows = reader(report.read_text())
    except (ValueError, IndexError, StopIteration) as e:
        return Result(name, "FAILED", seconds, [], f"report written but its table could not be read: {e}", "")
    return Result(name, "ok", seconds, rows, note)


# ----------------------------------------------------------------------------- the report


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(
        f"{d} {v}" for d in ("jax", "jaxlib", "flax", "torch", "transformers") if (v := _version(d))
    )
    import jax  # after the benchmarks: this process never competes with them for the cores

    backend = f"{jax.default_backend()} ({jax.device_count()} device(s): {jax.devices()[0].device_kind})"
    return [
        f"- CPU: {cpu}; {cores} usable cores ({os.cpu_count()} visible); "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {versions}; jax backend {backend}",
        f"- Load average (1/5/15 min) before: {' / '.join(f'{x:.1f}' for x in load_before)}; after: "
        f"{' / '.join(f'{x:.1f}' for x in load_after)}",
    ]


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "cat_jax", "benchmarks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (with uncommitted changes in cat_jax/ or benchmarks/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(
    results: list[Result], *, quick: bool, command: str, header: list[str], wall: float, tools: list[str]
) -> str:
    lines = [
        "# Benchmarks: cat_jax vs the alternatives",
        "",
        f"Command: `{command}`{' (quick sizes)' if quick else ''}. "
        + (
            "It runs every module of `benchmarks/` as its own process, one after the other, and collects the "
            "ratios below from their reports (linked)."
            if wall == wall
            else "It ran nothing: the ratios below are read from the reports (linked) as their own last runs "
            "wrote them."
        ),
        "",
        "Machine:",
        "",
        *header,
        "",
        "**This machine is shared and noisy**: other engineers' tests and long experiment runs used the same "
        "cores during the run (see the load averages), so absolute times swing between runs. Each benchmark "
        "times both sides in the same process, mostly interleaved, and reports ratios; read those, not the "
        "seconds.",
        "",
        "| benchmark | comparison | ratio | compile / first call | details | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        link = f"[{r.name}]({r.name}.md)" if r.status == "ok" else r.name
        if r.status != "ok":
            wall_s = f"{r.seconds:.0f}" if r.seconds == r.seconds else "-"
            lines.append(f"| {link} | **{r.status}** | - | - | {r.note} | {wall_s} |")
            continue
        for i, row in enumerate(r.rows):
            details = "; ".join(filter(None, [row.note, r.note if i == 0 else ""]))
            wall_s = f"{r.seconds:.0f}" if i == 0 and r.seconds == r.seconds else ""
            lines.append(
                f"| {link if i == 0 else ''} | {row.comparison} | {row.ratio} | {row.compile} | {details} "
                f"| {wall_s} |"
            )
    lines += [
        "",
        "Ratios: `x faster` is the alternative's time over ours (> 1: cat_jax is faster); `of peak` is the "
        "step's matmul FLOP/s over the float32 matmul throughput measured in the same run. "
        + (
            f"Total wall time {wall / 60:.1f} min."
            if wall == wall
            else "Collected from the per-benchmark reports (`--collect`): each ran on its own, at the time "
            "and load its file states; no wall times here."
        ),
        "",
        "Per-benchmark reports: "
        + ", ".join(f"[{r.name}.md]({r.name}.md)" for r in results if r.status == "ok")
        + ". Each states its own command, workload and method.",
    ]
    if tools:
        lines += [
            "",
            "Not run (modules of `benchmarks/` that write no `results/benchmarks/<name>.md`: tools): "
            + ", ".join(f"`{t}`" for t in tools)
            + ".",
        ]
    failed = [r for r in results if r.status == "FAILED" and r.log_tail]
    for r in failed:
        lines += ["", f"## {r.name}: {r.note}", "", "```", r.log_tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes; writes under --out-dir")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    ap.add_argument(
        "--out-dir", default=None, help="output root (default: repo root, or a temp dir if --quick)"
    )
    ap.add_argument(
        "--timeout", type=float, default=None, help="seconds per benchmark (default 1800, quick 600)"
    )
    ap.add_argument(
        "--collect",
        action="store_true",
        help="run nothing; rebuild README.md from the per-benchmark reports as last written",
    )
    args = ap.parse_args(argv)
    names, tools = discover()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"--only: unknown benchmark(s) {unknown}; available: {names}")
        names = [n for n in names if n in wanted]
    if args.out_dir:
        out_root = pathlib.Path(args.out_dir).resolve()
    elif args.quick:
        out_root = pathlib.Path(tempfile.mkdtemp(prefix="cat_jax_bench_"))
    else:
        out_root = ROOT
    timeout = args.timeout or (600.0 if args.quick else 1800.0)
    (out_root / REPORT_DIR).mkdir(parents=True, exist_ok=True)
    logs = pathlib.Path(tempfile.mkdtemp(prefix="cat_jax_bench_logs_"))
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    if args.collect:
        results, wall = [collect_one(n, out_root) for n in names], float("nan")
        header = [f"- Collected: {started:%Y-%m-%d %H:%M} UTC, git {git_state()} (no benchmark ran)"]
    else:
        results = [run_one(n, out_root, quick=args.quick, timeout=timeout, logs=logs) for n in names]
        wall = time.perf_counter() - t0
        header = [
            f"- Run: {started:%Y-%m-%d %H:%M} UTC, git {git_state()}",
            *machine(load_before, os.getloadavg()),
        ]
    text = render(results, quick=args.quick, command=command, header=header, wall=wall, tools=tools)
    path = out_root / REPORT_DIR / "README.md"
    path.write_text(text)
    print(text)
    print(f"[benchmarks.run] wrote {path}; logs in {logs}")
    return 1 if any(r.status == "FAILED" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
