r"""Reproduce the paper's SFT and RL tables at CPU scale: every branch, every seed, one command.

``sft`` (Tables 2 and 3): per seed, a CE warm-up on 2-digit multiplication, then from its final weights the
branches CE / Pass@4 / Pass@16 / Pass@64 (Table 2) and Majority (N, k) = (8, 3), (16, 4), (64, 26) (Table 3),
each with a fresh optimizer. ``rl`` (Tables 4 and 5): per seed, from the same warm-up, standard
group-advantage RL against CAT Pass@N (log / raw, N = 4, 16), CAT Majority (raw / log, N = 4, 8) and
PKPO pass@4. ``modchain`` (the second task family of EXPERIMENTS.md): the same protocol on modular chains
with one-digit answers (configs/sft/modchain.py), whose ten-answer support also makes the exact plurality
objective affordable as a branch::

    python -m experiments.paper --study=sft --seeds=0,1,2      # Tables 2-3 -> results/sft_passn, sft_majority
    python -m experiments.paper --study=modchain --seeds=0,1,2 # second family -> results/sft_modchain
    python -m experiments.paper --study=rl --seeds=0,1,2       # Tables 4-5 -> results/rl
    python -m experiments.paper --study=sft --smoke --workdir=/tmp/p --results=/tmp/r   # seconds

Every phase resumes from ``--workdir`` (a finished phase is skipped), so an interrupted study is rerun with
the same command. Each branch logs the exact held-out pass@k (teacher-forced, several temperatures) every
two epochs; the reports use it for the two controls of EXPERIMENTS.md: the temperature sweep of CE and the
early-stopping frontier (best CE checkpoint at matched pass@1). Headline numbers are the sampled unbiased
estimators (500 held-out problems x 64 samples), mean ± SE across seeds.
"""

from __future__ import annotations

import functools
import json
import pathlib
import shlex
import sys
import time
from typing import NamedTuple

import jax
import numpy as np
from absl import app, flags, logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cat_jax import evaluation, train_lib
from cat_jax.models import llama
from cat_jax.operators import Curve
from cat_jax.reporting import plot_scaling_curves
from experiments import common, rl, sft

SFT_BRANCHES = {
    "ce": "CE",
    "passn4": "Pass@4",
    "passn16": "Pass@16",
    "passn64": "Pass@64",
    "maj8_3": "Maj (8, 3)",
    "maj16_4": "Maj (16, 4)",
    "maj64_26": "Maj (64, 26)",
}
TABLE2 = ("ce", "passn4", "passn16", "passn64")
TABLE3 = ("ce", "maj8_3", "maj16_4", "maj64_26")
# The second task family (EXPERIMENTS.md control 3): one-digit answers, so exact plurality runs too.
MODCHAIN_BRANCHES = {
    "ce": "CE",
    "passn4": "Pass@4",
    "passn16": "Pass@16",
    "maj8_3": "Maj (8, 3)",
    "plur8": "Plurality 8",
}


class Study(NamedTuple):
    """One SFT study: its config file, branches, report folders and control budgets."""

    config: str
    branches: dict[str, str]
    reports: list[tuple[str, tuple[str, ...], str, str]]  # (folder, branches in it, main metric, title)
    control_ks: tuple[int, int]  # the pass@k budgets of the temperature / early-stopping controls
    exact_majority: bool = False  # the task enumerates its answers: add the exact maj@k temperature sweep


SFT_STUDIES = {
    "sft": Study(
        "configs/sft/arith.py",
        SFT_BRANCHES,
        [
            ("sft_passn", TABLE2, "pass@k", "Table 2 analogue at CPU scale"),
            ("sft_majority", TABLE3, "maj@k", "Table 3 analogue at CPU scale"),
        ],
        (16, 64),
    ),
    "modchain": Study(
        "configs/sft/modchain.py",
        MODCHAIN_BRANCHES,
        [
            (
                "sft_modchain",
                tuple(MODCHAIN_BRANCHES),
                "maj@k",
                "Second task family: Tables 2-3 analogue on modular chains (one-digit answers)",
            )
        ],
        (4, 16),
        exact_majority=True,
    ),
}
MAJORITY_TEMPERATURES = (0.25, 0.5, 0.8, 1.0, 1.5)
RL_BRANCHES = {
    "standard": "Standard",
    "passn4_log": "Pass@4 log",
    "passn4_raw": "Pass@4 raw",
    "passn16_log": "Pass@16 log",
    "passn16_raw": "Pass@16 raw",
    "maj4_raw": "Maj@4 raw",
    "maj4_log": "Maj@4 log",
    "maj8_raw": "Maj@8 raw",
    "maj8_log": "Maj@8 log",
    "pkpo4": "PKPO pass@4",
}
# Every RL branch runs on the first --rl_full_seeds seeds, the headline ones on every seed (CPU budget).
RL_HEADLINE = ("standard", "passn4_log", "passn16_log", "maj4_raw", "pkpo4")
STEPS_PER_EPOCH = 31  # 4,000 training problems / batch 128
WARMUP = {"epochs": 30.0, "curve_every": 5 * STEPS_PER_EPOCH}
BRANCH = {"epochs": 15.0, "curve_every": 2 * STEPS_PER_EPOCH}
RL = {"steps": 100}
KS = (1, 2, 4, 8, 16, 32, 64)


def _phase(module, spec: str, overrides: dict, workdir: pathlib.Path, smoke: bool) -> dict:
    """Run one phase unless its ``results.json`` exists (then just read it)."""
    done = workdir / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    if smoke:
        spec += ",smoke"
        # The smoke configs' own lengths; learning curves every 2 steps where the phase logs them.
        skip = ("epochs", "steps")
        overrides = {k: 2 if k == "curve_every" else v for k, v in overrides.items() if k not in skip}
    t0 = time.perf_counter()
    report = module.run(common.load_config(spec, {"progress": False, **overrides}), str(workdir))
    if report.get("preempted"):
        raise SystemExit(
            f"{workdir} was interrupted at step {report['step']}; rerun the same command to resume"
        )
    logging.warning("%s done in %.0f s", workdir, time.perf_counter() - t0)
    return report


def run_sft(root: pathlib.Path, seed: int, *, smoke: bool = False, study: str = "sft") -> None:
    config, branches = SFT_STUDIES[study].config, SFT_STUDIES[study].branches
    warm = root / study / f"seed{seed}" / "warmup"
    _phase(sft, f"{config}:warmup", {**WARMUP, "seed": seed}, warm, smoke)
    for branch in branches:
        overrides = {**BRANCH, "seed": seed, "init_from": str(warm)}
        _phase(sft, f"{config}:{branch}", overrides, root / study / f"seed{seed}" / branch, smoke)


def run_rl(
    root: pathlib.Path, seed: int, *, smoke: bool = False, full: bool = True, lr: float = 0.0, steps: int = 0
) -> None:
    warm = root / "sft" / f"seed{seed}" / "warmup"
    _phase(sft, "configs/sft/arith.py:warmup", {**WARMUP, "seed": seed}, warm, smoke)
    for branch in RL_BRANCHES if full else RL_HEADLINE:
        overrides = {**RL, "seed": seed, "init_from": str(warm), **({"opt.lr": lr} if lr else {})}
        overrides["steps"] = steps or RL["steps"]
        if steps:  # a longer-RL study also logs its exact held-out learning curve
            overrides["curve_every"] = max(steps // 6, 1)
        out = root / _rl_name(lr, steps) / f"seed{seed}" / branch
        _phase(rl, f"configs/rl/arith.py:{branch}", overrides, out, smoke)


def _rl_name(lr: float, steps: int = 0) -> str:
    """``rl`` for the config's learning rate and RL["steps"]; ``rl_lr<lr>``, ``_steps<n>`` when overridden."""
    name = f"rl_lr{lr:g}" if lr else "rl"
    return f"{name}_steps{steps}" if steps else name


# ----------------------------------------------------------------------------- reports


def _load(root: pathlib.Path, study: str, seeds, branches) -> dict[str, list[dict]]:
    """``branch -> [results.json per seed]`` for the finished runs (every seed must be there)."""
    out = {}
    for branch in branches:
        files = [root / study / f"seed{s}" / branch / "results.json" for s in seeds]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"unfinished runs (rerun the study): {missing}")
        out[branch] = [json.loads(f.read_text()) for f in files]
    return out


@functools.cache
def _curve_log(workdir: pathlib.Path) -> tuple[dict, ...]:
    """The exact held-out learning-curve records of a finished run (read once per report)."""
    return tuple(r for r in train_lib.read_metrics(workdir) if "eval/T1/log_p" in r)


def _across_seeds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (seeds); SE is NaN for one seed."""
    values = np.asarray(values, np.float64)
    se = (
        values.std(axis=0, ddof=1) / np.sqrt(len(values))
        if len(values) > 1
        else np.full(values.shape[1:], np.nan)
    )
    return values.mean(axis=0), se


def _cell(mean: float, se: float, scale: float = 100.0) -> str:
    return f"{mean * scale:.1f} ± {se * scale:.1f}" if np.isfinite(se) else f"{mean * scale:.1f}"


def _table(
    rows: dict[str, tuple[np.ndarray, np.ndarray]], ks, *, first: str = "model", prefix: str = "@"
) -> str:
    lines = [f"| {first} | " + " | ".join(f"{prefix}{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name, (mean, se) in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(m, s) for m, s in zip(mean, se, strict=True)) + " |")
    return "\n".join(lines) + "\n"


def _metric_rows(runs: dict[str, list[dict]], names: dict[str, str], metric: str) -> dict:
    rows = {}
    for branch, reports in runs.items():
        per_seed = np.array([r["eval"][metric]["mean"] for r in reports])
        rows[names[branch]] = _across_seeds(per_seed)
    return rows


def _paired(runs: dict[str, list[dict]], names, metric: str, base: str, ks_idx) -> dict:
    """CAT minus the baseline, paired by seed (same warm-up), mean ± SE across seeds."""
    ref = np.array([r["eval"][metric]["mean"] for r in runs[base]])
    rows = {}
    for branch, reports in runs.items():
        if branch == base:
            continue
        # A branch run on fewer seeds ran on the first ones (the seed lists are prefixes of each other).
        diff = np.array([r["eval"][metric]["mean"] for r in reports]) - ref[: len(reports)]
        mean, se = _across_seeds(diff[:, ks_idx])
        rows[f"{names[branch]} − {names[base].split(' (')[0]}"] = (mean, se)  # pairs on shared seeds
    return rows


def _save_fig(fig: Figure, path: pathlib.Path, command: str) -> None:
    fig.savefig(path, dpi=120, metadata={"Description": f"made by: {command}"})


def _plot_curves(rows: dict, ks, ylabel: str, path: pathlib.Path, command: str) -> None:
    """Mean ± SE-across-seeds curves through the library's plot (a Curve needs no per-problem values here)."""
    curves = {label: Curve(tuple(ks), None, mean, se) for label, (mean, se) in rows.items()}
    fig = plot_scaling_curves(curves, ylabel=f"{ylabel} (%), mean ± SE over seeds", scale=100)
    _save_fig(fig, path, command)


def _frontier(
    root: pathlib.Path, seeds, runs: dict[str, list[dict]], names, command: str, out: pathlib.Path, big, study
):
    """Early-stopping x temperature frontier of CE (exact metric) against each CAT branch's final model.

    For every CE checkpoint (every 2 epochs) and temperature, the exact held-out pass@1 and pass@k; a CAT
    branch "beats the frontier" at k when its exact pass@k exceeds every CE point whose pass@1 is at least
    the CAT model's pass@1 (matched or better single-sample accuracy).
    """
    temps = [0.8, 1.0, 1.25, 1.5, 2.0]
    result, fig = {}, Figure(figsize=(9, 3.8))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for ax, k in zip(axes, big, strict=True):
        for s_i, seed in enumerate(seeds):
            ce = _curve_log(root / study / f"seed{seed}" / "ce")
            pts = np.array(
                [[r[f"eval/T{t:g}/pass@1"], r[f"eval/T{t:g}/pass@{k}"]] for r in ce for t in temps]
            )
            ax.scatter(
                pts[:, 0] * 100, pts[:, 1] * 100, s=6, c="0.6", label="CE ckpt × T" if s_i == 0 else None
            )
            for j, branch in enumerate(b for b in runs if b != "ce"):
                last = _curve_log(root / study / f"seed{seed}" / branch)[-1]
                p1, pk = last["eval/T1/pass@1"], last[f"eval/T1/pass@{k}"]
                matched = pts[pts[:, 0] >= p1, 1]
                best_ce = float(matched.max()) if len(matched) else float("nan")
                rec = result.setdefault(branch, {}).setdefault(f"pass@{k}", [])
                rec.append({"seed": seed, "cat_pass@1": p1, "cat": pk, "best_ce_at_matched_pass@1": best_ce})
                ax.scatter(
                    [p1 * 100],
                    [pk * 100],
                    marker="*",
                    s=60,
                    color=f"C{j}",
                    label=names[branch] if s_i == 0 else None,
                )
        ax.set_xlabel("exact pass@1 (%)")
        ax.set_ylabel(f"exact pass@{k} (%)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save_fig(fig, out / "frontier.png", command)
    return result


def _temperature_sweep(root: pathlib.Path, seeds, ks, study) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact pass@k of the final CE model at each temperature, mean ± SE over seeds."""
    rows = {}
    for t in (0.8, 1.0, 1.25, 1.5, 2.0):
        per_seed = [
            [_curve_log(root / study / f"seed{s}" / "ce")[-1][f"eval/T{t:g}/pass@{k}"] for k in ks]
            for s in seeds
        ]
        rows[f"CE T={t:g}"] = _across_seeds(np.array(per_seed))
    return rows


def _majority_sweep(
    root: pathlib.Path, study: str, seeds, branches, ks, smoke: bool
) -> dict[str, np.ndarray]:
    """Exact maj@k of every finished model (warm-up and branches) at each of MAJORITY_TEMPERATURES.

    ``branch -> [seeds, len(ks), len(temperatures)]``, from the saved final parameters and
    :func:`cat_jax.evaluation.exact_majority_at_k` (all answers teacher-forced; no sampling noise).
    """
    cfg = common.load_config(f"{SFT_STUDIES[study].config}:ce" + (",smoke" if smoke else ""))
    data = common.task_data(cfg.task)  # the problems do not depend on the run's seed
    model_cfg = llama.LlamaConfig.tiny(vocab_size=data.vocab_size, **cfg.model.to_dict())
    graphdef, template = llama.init(model_cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)
    out = {}
    for branch in ("warmup", *branches):
        per_seed = []
        for seed in seeds:
            params = common.load_params(root / study / f"seed{seed}" / branch, template)
            r = evaluation.exact_majority_at_k(
                apply,
                params,
                data.eval_prompts,
                data.eval_lengths,
                data.eval_targets,
                data.eval_target_lengths,
                temperatures=MAJORITY_TEMPERATURES,
                ks=ks,
                vocab_size=data.vocab_size,
                stop_tokens=data.stop_tokens,
                max_new_tokens=data.max_new_tokens,
                pad_id=data.pad_id,
            )
            per_seed.append([[r[f"T{t:g}/maj@{k}"] for t in MAJORITY_TEMPERATURES] for k in ks])
        out[branch] = np.array(per_seed)
    return out


def report_sft(
    root: pathlib.Path, seeds, results: pathlib.Path, command: str, study: str = "sft", smoke: bool = False
) -> None:
    """Write the study's reports: ``sft`` -> results/sft_passn (Table 2 analogue) and results/sft_majority
    (Table 3 analogue); ``modchain`` -> results/sft_modchain (the second task family)."""
    spec = SFT_STUDIES[study]
    branches, reports, control_ks = spec.branches, spec.reports, spec.control_ks
    runs = _load(root, study, seeds, branches)
    warm = _load(root, study, seeds, ["warmup"])["warmup"]
    ks = runs["ce"][0]["eval"]["pass@k"]["k"]
    head = [ks.index(k) for k in (1, *control_ks) if k in ks]
    big = tuple(k if k in ks else ks[-1] for k in control_ks)  # smoke runs stop at small k
    meta = {
        "command": command,
        "seeds": list(seeds),
        "eval_problems": runs["ce"][0]["eval_problems"],
        "eval_samples": runs["ce"][0]["eval_samples"],
        "warmup": WARMUP,
        "branch": BRANCH,
        "train_seconds": {b: [r["train_seconds"] for r in rs] for b, rs in runs.items()},
    }
    for i, (name, table, metric_main, title) in enumerate(reports):
        out = results / name
        out.mkdir(parents=True, exist_ok=True)
        sub = {b: runs[b] for b in table}
        payload = {**meta, "branches": {b: [r["eval"] for r in rs] for b, rs in sub.items()}}
        payload["warmup_eval"] = [r["eval"] for r in warm]
        md = [
            f"# {title}\n\n",
            f"Command: `{command}`\n\n",
            f"{len(seeds)} seeds; {meta['eval_problems']} held-out problems x {meta['eval_samples']} "
            "samples at T = 1; exact unbiased estimators; mean ± SE across seeds (each seed: its own "
            "warm-up and branches).\n\n",
        ]
        for metric in (metric_main, "maj@k" if metric_main == "pass@k" else "pass@k"):
            rows = {"warm-up": _across_seeds(np.array([r["eval"][metric]["mean"] for r in warm]))}
            rows.update(_metric_rows(sub, branches, metric))
            md += [f"## {metric} (%)\n\n", _table(rows, ks), "\n"]
            diffs = _paired(sub, branches, metric, "ce", head)
            at = ", ".join(str(ks[j]) for j in head)
            md += [f"Paired by seed, {metric} difference (points) at k = {at}:\n\n"]
            md += [_table(diffs, [ks[i] for i in head], first="branch"), "\n"]
            payload[f"table/{metric}"] = {
                n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in rows.items()
            }
            payload[f"paired/{metric}"] = {
                n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in diffs.items()
            }
            _plot_curves(rows, ks, metric, out / f"{metric.replace('@', '_at_')}.png", command)
        if i == 0:  # the controls of EXPERIMENTS.md, on the study's first report
            sweep = _temperature_sweep(root, seeds, [1, *big], study)
            ours = {
                branches[b]: _across_seeds(
                    np.array(
                        [
                            [
                                _curve_log(root / study / f"seed{s}" / b)[-1][f"eval/T1/pass@{k}"]
                                for k in (1, *big)
                            ]
                            for s in seeds
                        ]
                    )
                )
                for b in table
            }
            md += [
                "## Control 1: temperature sweep of the final CE model (exact teacher-forced pass@k, %)\n\n",
                _table({**sweep, **ours}, [1, *big]),
                "\n",
            ]
            payload["temperature_sweep"] = {
                n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in {**sweep, **ours}.items()
            }
            frontier = _frontier(root, seeds, sub, branches, command, out, big, study)
            payload["frontier"] = frontier
            md += [
                "## Control 2: early-stopping x temperature frontier (exact pass@k, %)\n\n",
                "Best CE point over every checkpoint (every 2 epochs of the branch) and temperature "
                "{0.8, 1, 1.25, 1.5, 2} whose pass@1 is at least the CAT model's, against the CAT model; "
                "mean over seeds (see frontier.png).\n\n",
                "| branch | CAT pass@1 | " + " | ".join(f"CAT @{k} | best CE @{k}" for k in big) + " |\n",
                "|---|---|---|---|---|---|\n",
            ]
            for branch, rec in frontier.items():
                m = lambda key, kk, rec=rec: np.nanmean([r[key] for r in rec[f"pass@{kk}"]]) * 100
                md.append(
                    f"| {branches[branch]} | {m('cat_pass@1', big[0]):.1f} | {m('cat', big[0]):.1f} | "
                    f"{m('best_ce_at_matched_pass@1', big[0]):.1f} | {m('cat', big[1]):.1f} | "
                    f"{m('best_ce_at_matched_pass@1', big[1]):.1f} |\n"
                )
            md.append("\n")
        if i == 0 and spec.exact_majority:
            sweep_ks = [k for k in (4, 16) if k in ks] or ks[-1:]  # the DP costs C^2 k^3 per problem
            sweep = _majority_sweep(root, study, seeds, table, sweep_ks, smoke)
            names = {"warmup": "warm-up", **branches}
            md += [
                "## Control 3: temperature sweep of the exact maj@k (%)\n\n",
                "Every final model's exact answer distribution (all answers teacher-forced) at temperature "
                "T, and the exact chance that the correct answer wins a k-sample plurality vote (ties split "
                "evenly); mean ± SE across seeds. Is Majority / plurality training more than sharpening?\n\n",
            ]
            payload["exact_majority_sweep"] = {"temperatures": list(MAJORITY_TEMPERATURES)}
            for j, k in enumerate(sweep_ks):
                rows = {names[b]: _across_seeds(v[:, j]) for b, v in sweep.items()}
                md += [f"maj@{k}:\n\n", _table(rows, MAJORITY_TEMPERATURES, prefix="T="), "\n"]
                payload["exact_majority_sweep"][f"maj@{k}"] = {
                    n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in rows.items()
                }
        md.append(
            f"Plots: `{metric_main.replace('@', '_at_')}.png` and the other metric's png in this folder.\n"
        )
        (out / "table.md").write_text("".join(md))
        common.write_json(out / "results.json", payload)


def report_rl(
    root: pathlib.Path,
    seeds,
    results: pathlib.Path,
    command: str,
    full_seeds: int = 1,
    lr: float = 0.0,
    steps: int = 0,
) -> None:
    """Write results/rl (Tables 4 and 5 analogues): every branch on the first ``full_seeds`` seeds."""
    runs = {}
    for branch in RL_BRANCHES:
        if full_seeds == 0 and branch not in RL_HEADLINE:
            continue
        runs.update(
            _load(root, _rl_name(lr, steps), seeds if branch in RL_HEADLINE else seeds[:full_seeds], [branch])
        )
    names = {
        b: f"{n} ({len(runs[b])} seed{'s' * (len(runs[b]) > 1)})" for b, n in RL_BRANCHES.items() if b in runs
    }
    warm = _load(root, "sft", seeds, ["warmup"])["warmup"]
    ks = runs["standard"][0]["eval"]["pass@k"]["k"]
    head = [ks.index(k) for k in (1, 4, 16, 64) if k in ks]
    ran = runs["standard"][0]["steps"]  # what the runs did (a smoke run ignores --rl_steps)
    if any(r["steps"] != ran for rs in runs.values() for r in rs):
        raise ValueError(f"the runs under {_rl_name(lr, steps)} did not all train {ran} steps")
    out = results / _rl_name(lr, steps)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "seeds": list(seeds),
        "rl": {"steps": ran, "lr": lr or "config default (configs/rl/arith.py)"},
        "branches": {b: [r["eval"] for r in rs] for b, rs in runs.items()},
        "train_seconds": {b: [r["train_seconds"] for r in rs] for b, rs in runs.items()},
    }
    md = [
        "# Tables 4-5 analogue at CPU scale: CAT RL vs standard group-advantage RL\n\n",
        f"Command: `{command}`\n\n",
        f"Seeds {list(seeds)} for the headline branches, "
        + (f"the first {full_seeds} for the others (CPU budget)" if full_seeds else "no other branches")
        + "; every branch starts from its seed's SFT warm-up; "
        f"{ran} RL steps of 32 prompts x 8 rollouts at learning rate "
        f"{lr or 'of configs/rl/arith.py (1e-4)'}; "
        "evaluation as in the SFT tables; mean ± SE across seeds.\n\n",
    ]
    for metric in ("pass@k", "maj@k"):
        rows = {"warm-up": _across_seeds(np.array([r["eval"][metric]["mean"] for r in warm]))}
        rows.update(_metric_rows(runs, names, metric))
        diffs = _paired(runs, names, metric, "standard", head)
        md += [f"## {metric} (%)\n\n", _table(rows, ks), "\n"]
        md += ["Paired by seed, difference to standard RL (points) at k = 1, 4, 16, 64:\n\n"]
        md += [_table(diffs, [ks[i] for i in head], first="branch"), "\n"]
        payload[f"table/{metric}"] = {n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in rows.items()}
        payload[f"paired/{metric}"] = {
            n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in diffs.items()
        }
        _plot_curves(rows, ks, metric, out / f"{metric.replace('@', '_at_')}.png", command)
    # Runs that logged their exact held-out learning curve (--rl_steps): is RL improving on its start?
    logs = {
        b: [_curve_log(root / _rl_name(lr, steps) / f"seed{s}" / b) for s in seeds[: len(rs)]]
        for b, rs in runs.items()
    }
    if all(all(per_seed) for per_seed in logs.values()):
        at = [r["step"] for r in logs["standard"][0]]
        for b, per_seed in logs.items():
            if any([r["step"] for r in log] != at for log in per_seed):
                raise ValueError(f"{b}: its learning curve was logged at other steps than standard RL's {at}")
        for k in (1, ks[-1]):
            rows = {
                names[b]: _across_seeds(np.array([[r[f"eval/T1/pass@{k}"] for r in log] for log in per_seed]))
                for b, per_seed in logs.items()
            }
            md += [
                f"## Exact held-out pass@{k} along RL training (teacher-forced, T = 1; %)\n\n",
                _table(rows, at, first="branch", prefix="step "),
                "\n",
            ]
            payload[f"learning_curve/pass@{k}"] = {
                "steps": at,
                **{n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in rows.items()},
            }
    (out / "table.md").write_text("".join(md))
    common.write_json(out / "results.json", payload)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
    root, results = pathlib.Path(_WORKDIR.value), pathlib.Path(_RESULTS.value)
    command = "python -m experiments.paper " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    studies = {
        "sft": (run_sft, report_sft),
        "modchain": (
            functools.partial(run_sft, study="modchain"),
            functools.partial(report_sft, study="modchain"),
        ),
        "rl": (run_rl, report_rl),
    }
    if _STUDY.value not in studies:
        raise app.UsageError(f"--study must be one of {sorted(studies)}, got {_STUDY.value!r}")
    run_fn, report_fn = studies[_STUDY.value]
    if not _REPORT_ONLY.value:
        for i, seed in enumerate(seeds):
            extra = {"full": i < _RL_FULL_SEEDS.value, "lr": _RL_LR.value, "steps": _RL_STEPS.value}
            extra = extra if _STUDY.value == "rl" else {}
            run_fn(root, seed, smoke=_SMOKE.value, **extra)
    if _STUDY.value == "rl":
        extra = {"full_seeds": _RL_FULL_SEEDS.value, "lr": _RL_LR.value, "steps": _RL_STEPS.value}
    else:
        extra = {"smoke": _SMOKE.value}
    report_fn(root, seeds, results, command, **extra)
    print(f"reports written under {results}")


if __name__ == "__main__":
    _STUDY = flags.DEFINE_string(
        "study",
        "sft",
        "sft (Tables 2-3), modchain (second task family, with exact plurality) or rl (Tables 4-5).",
    )
    _SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds; each has its own warm-up.")
    _WORKDIR = flags.DEFINE_string("workdir", "workdirs/paper", "Where every phase of every seed runs.")
    _RESULTS = flags.DEFINE_string("results", "results", "Where the report folders go.")
    _SMOKE = flags.DEFINE_bool("smoke", False, "Shrink every phase to seconds.")
    _RL_FULL_SEEDS = flags.DEFINE_integer(
        "rl_full_seeds",
        1,
        "RL: how many of the first seeds run every branch (the rest run the headline ones).",
    )
    _RL_STEPS = flags.DEFINE_integer(
        "rl_steps", 0, f"RL: steps per branch (0 = {RL['steps']}); own workdir/report when different."
    )
    _RL_LR = flags.DEFINE_float(
        "rl_lr", 0.0, "RL: learning rate override (0 = the config's); own workdir/report."
    )
    _REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the reports from finished runs.")
    app.run(main)
