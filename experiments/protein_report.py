"""The protein experiment's report: results.json, table.md (the paper's Table 6 layout) and two figures.

Built from the evaluated pools of ``experiments.protein`` (``{setting: {label: [(seed, workdir, pools)]}}``,
pools = rewards and hydrophobicity ``[B, N]``) through :mod:`cat_jax.reporting` (mean ± SE across seeds,
markdown tables, curves, figures naming their command).
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import ml_collections
import numpy as np

from cat_jax import operators, reporting
from cat_jax.tasks import protein

BRANCH_LABELS = {"standard": "Standard RL", "bon2": "BoN-2", "bon4": "BoN-4", "bon8": "BoN-8"}
SETTINGS = ("uncond", "cond")
REFERENCES = {"uncond": "Pre-trained LM", "cond": "Conditional warm-up"}  # the RL runs' starting points
TITLES = {
    "uncond": "Unconditional (reward-history quantiles)",
    "cond": "Conditional (within-prompt quantiles, after the conditional warm-up)",
}
ESTIMATORS = {
    "with_replacement": "with replacement (the paper's metric)",
    "without_replacement": "without replacement (unbiased, random k-subset of the pool)",
}
H_BINS = np.linspace(0.0, 1.0, 21)  # h is a ratio of small integers: finer bins only show aliasing
# SPEC §5 Table 6 (ProtGPT2), expected max reward of k samples with replacement, for the side-by-side table.
PAPER = {
    "uncond": {
        "ks": [1, 2, 4, 8, 16, 32, 64],
        "Standard RL": [3.18, 4.20, 5.30, 6.54, 8.25, 10.06, 11.40],
        "BoN-2": [7.97, 10.16, 11.41, 11.93, 12.10, 12.15, 12.16],
        "BoN-4": [9.73, 11.33, 11.92, 12.10, 12.15, 12.16, 12.16],
        "BoN-8": [9.82, 11.53, 12.04, 12.14, 12.16, 12.16, 12.16],
    },
    "cond": {
        "ks": [1, 2, 4, 8, 16, 32],
        "Standard RL": [7.26, 7.70, 8.02, 8.31, 8.60, 8.89],
        "BoN-2": [5.36, 7.64, 8.84, 9.48, 9.86, 9.96],
        "BoN-4": [5.82, 7.49, 9.05, 9.61, 9.86, 9.94],
        "BoN-8": [5.67, 7.55, 8.96, 9.40, 9.80, 9.94],
    },
}


def curves_of(rewards: np.ndarray, ks: list[int]) -> dict[str, operators.Curve]:
    """Expected best-of-k over each prompt's pool: unbiased (no replacement) and the paper's (replacement)."""
    r = jnp.asarray(rewards, jnp.float32)
    return {
        name: operators.scaling_curve(operators.best_of_k, r, ks=ks, replacement=rep)
        for name, rep in (("without_replacement", False), ("with_replacement", True))
    }


def record(curve: operators.Curve) -> dict:
    """``{"k", "mean", "se"}`` at float32 (the estimators' precision); a missing SE (one seed) is null."""
    mean, se = np.asarray(curve.mean, np.float32), np.asarray(curve.se, np.float32)
    return {
        "k": [int(k) for k in curve.ks],
        "mean": [float(v) for v in mean],
        "se": [None if np.isnan(v) else float(v) for v in se],
    }


def input_dependence(h: np.ndarray, prompts: dict) -> dict:
    """Least-squares slope and correlation of a prompt's mean output h on its input h (the target has -1)."""
    h_in = prompts["input_hydrophobic"] / prompts["input_length"]
    counts = np.isfinite(h).sum(-1)
    out = np.nansum(h, axis=-1) / np.maximum(counts, 1)
    keep = counts > 0
    if keep.sum() < 2 or np.ptp(h_in[keep]) == 0:  # no line through fewer than two distinct inputs
        return {"slope": None, "corr": None}
    slope = np.polyfit(h_in[keep], out[keep], 1)[0]
    return {"slope": float(slope), "corr": float(np.corrcoef(h_in[keep], out[keep])[0, 1])}


def h_summary(h: np.ndarray, *, histogram: bool = False) -> dict:
    """Mean h, the shares near the two reward modes and of valid samples (NaN h = invalid sample)."""
    f = h[np.isfinite(h)]
    out = {
        "mean": float(f.mean()) if f.size else None,
        "frac_low_mode_0.30_0.50": float(np.mean((f >= 0.30) & (f <= 0.50))) if f.size else None,
        "frac_high_mode_0.65_0.85": float(np.mean((f >= 0.65) & (f <= 0.85))) if f.size else None,
        "frac_valid": float(np.isfinite(h).mean()),
    }
    if histogram:
        out["histogram"] = np.histogram(f, bins=H_BINS)[0].tolist()
    return out


def reward_trace(path: pathlib.Path, every: int = 10, key: str = "reward/mean") -> list[float]:
    """Mean of a training metric (default: the mean rollout reward) over consecutive windows of ``every``
    steps of ``metrics.jsonl`` (a compact learning curve)."""
    r = [json.loads(line)[key] for line in path.open() if f'"{key}"' in line]
    return [round(float(np.mean(r[i : i + every])), 3) for i in range(0, len(r), every)]


def invalid_fraction(rewards: np.ndarray) -> float:
    """Share of samples with the invalid reward (-5: shorter than the minimum length, or not a protein).

    >>> invalid_fraction(np.array([[-5.0, 4.0], [12.0, -5.0]]))
    0.5
    """
    return float(np.mean(np.asarray(rewards) == protein.INVALID_REWARD))


def invalid_across_seeds(rec: dict) -> dict:
    """``{"mean", "se"}`` of a model's invalid share across its seeds' pools (SE None for one pool); read
    from ``per_seed`` so that results.json files written before this entry existed render the same way."""
    mean, se = reporting.mean_se(np.array([[r["frac_invalid_reward"]] for r in rec["per_seed"]], np.float64))
    se0 = float(se[0])
    return {"mean": float(mean[0]), "se": None if not np.isfinite(se0) else se0}


def model_record(runs: list, *, setting: str, ks: list[int], cond_prompts: dict) -> dict:
    """One model's entry: per-seed curves and sample statistics, the curves' mean ± SE across seeds."""
    per_seed = []
    for seed, wd, ev in runs:
        rec = {name: record(c) for name, c in curves_of(ev["rewards"], ks).items()}
        rec.update(seed=seed, mean_reward=float(ev["rewards"].mean()), h=h_summary(ev["h"]))
        rec["frac_invalid_reward"] = invalid_fraction(ev["rewards"])
        fm = wd / "final_metrics.json"
        if seed is not None and fm.exists():
            rec["final_train_metrics"] = json.loads(fm.read_text())
            rec["train_reward_mean"] = reward_trace(wd / "metrics.jsonl")
            # Rollouts with reward -5 per window of steps (rollout/valid: long enough and a protein).
            valid = reward_trace(wd / "metrics.jsonl", key="rollout/valid")
            rec["train_invalid_frac"] = [round(1.0 - v, 3) for v in valid]
        if setting == "cond":
            rec["output_vs_input_h"] = input_dependence(ev["h"], cond_prompts)
        per_seed.append(rec)
    across = {
        name: record(reporting.curve_across_runs([r[name]["mean"] for r in per_seed], ks))
        for name in ("without_replacement", "with_replacement")
    }
    h = h_summary(np.concatenate([ev["h"].reshape(-1) for _, _, ev in runs]), histogram=True)
    h["frac_invalid_reward"] = float(np.mean([r["frac_invalid_reward"] for r in per_seed]))
    if setting == "cond":
        slopes = [r["output_vs_input_h"]["slope"] for r in per_seed]
        h["slope_on_input_h"] = None if None in slopes else float(np.mean(slopes))
    out = {"seeds": len(per_seed), "across_seeds": across, "per_seed": per_seed, "h": h}
    out["invalid_across_seeds"] = invalid_across_seeds(out)
    return out


def results(
    config: ml_collections.ConfigDict,
    evals: dict,
    *,
    corpus: list[str] | None,
    cond_prompts: dict,
    num_params: int,
    model: str = "",
) -> dict:
    """results.json (without the wall times): every model's curves and samples, the corpus (None: a
    checkpoint, nothing pre-trained here), the paper. ``model``: the table's description of the model."""
    ks = {"uncond": list(config.eval.uncond_ks), "cond": list(config.eval.cond_ks)}
    report: dict = {"command": config.command, "config": config.to_dict(), "num_params": num_params}
    if model:
        report["model"] = model
    if corpus is not None:
        report["pretraining_corpus_h"] = h_summary(
            np.array([protein.hydrophobicity(s) for s in corpus]), histogram=True
        )
    report["h_bins"] = H_BINS.tolist()
    report["paper_table6_with_replacement"] = PAPER
    for setting, models in evals.items():
        report[setting] = {
            label: model_record(runs, setting=setting, ks=ks[setting], cond_prompts=cond_prompts)
            for label, runs in models.items()
        }
    return report


def phase_seconds(path: pathlib.Path, measured: dict, fresh: dict) -> dict:
    """Wall seconds per phase: measured if it ran in this call, else as stored in ``path`` when it ran."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    out = {k: round(v if fresh[k] or k not in stored else stored[k], 1) for k, v in measured.items()}
    out["total"] = round(sum(out.values()), 1)
    reporting.write_json(path, out)
    return out


def markdown_report(report: dict, plots: list[str] | None = None) -> str:
    """table.md: Table 6's layout (expected max reward of k samples), both estimators, the paper's rows,
    the invalid share beside every model row. ``plots``: the figures it names (default: those
    :func:`write` draws for this report). Renders results.json as loaded back as well."""
    cfg = report["config"]
    lines = [
        "# Protein Best-of-N (Table 6 analogue)\n",
        f"Regenerate with: `{report['command']}`\n",
        "Model: "
        + report.get(
            "model", f"{report['num_params']:,}-parameter Llama-style protein LM pre-trained from scratch"
        )
        + ". Numbers: "
        "exact expected maximum reward of k samples drawn from each model's pool, mean ± SE across RL seeds "
        "(reference rows without an RL seed show the single pool). Unconditional: one pool of "
        f"{cfg['eval']['uncond_samples']} samples per model; conditional: mean over "
        f"{cfg['eval']['cond_prompts']} "
        f"held-out prompts x {cfg['eval']['cond_samples']} samples.\n",
    ]
    table = lambda rows, ks, first: reporting.markdown_table(
        rows, ks, first=first, scale=1, digits=2
    ).rstrip()
    for setting in ("uncond", "cond"):
        ks = cfg["eval"][f"{setting}_ks"]
        for name, what in ESTIMATORS.items():
            lines.append(f"\n## {TITLES[setting]}: best-of-k {what}\n")
            rows = {
                f"{label} ({rec['seeds']})": (
                    rec["across_seeds"][name]["mean"],
                    rec["across_seeds"][name]["se"],
                )
                for label, rec in ordered(report[setting], setting)
            }
            invalid = [invalid_across_seeds(rec) for _, rec in ordered(report[setting], setting)]
            lines.append(with_invalid_column(table(rows, ks, "model (seeds)"), invalid))
        paper = PAPER[setting]
        lines.append(f"\n### Paper (ProtGPT2, SPEC §5 Table 6), {TITLES[setting].split(' (')[0].lower()}\n")
        rows = {label: (paper[label], [None] * len(paper["ks"])) for label in BRANCH_LABELS.values()}
        lines.append(table(rows, paper["ks"], "model"))
    lines.append(
        "\n## Samples: hydrophobicity h (all seeds pooled, samples with at least one residue and no '>') "
        "and the share of invalid samples (reward -5: shorter than the minimum length or not a protein)\n"
    )
    lines.append(
        "| setting | model | mean h | share h in [0.30, 0.50] | share h in [0.65, 0.85] | share R = -5 "
        "| slope of output h on input h (target -1) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    num = lambda v, digits: "n/a" if v is None else f"{v:.{digits}f}"  # n/a: no valid sample
    if "pretraining_corpus_h" in report:
        c = report["pretraining_corpus_h"]
        lines.append(
            f"| corpus | pre-training data | {c['mean']:.3f} | {c['frac_low_mode_0.30_0.50']:.2f} | "
            f"{c['frac_high_mode_0.65_0.85']:.2f} | 0.00 | |"
        )
    for setting in ("uncond", "cond"):
        for label, rec in ordered(report[setting], setting):
            h = rec["h"]
            lines.append(
                f"| {setting} | {label} | {num(h['mean'], 3)} | {num(h['frac_low_mode_0.30_0.50'], 2)} | "
                f"{num(h['frac_high_mode_0.65_0.85'], 2)} | {h['frac_invalid_reward']:.2f} | "
                + (f"{num(h['slope_on_input_h'], 2)} |" if "slope_on_input_h" in h else "|")
            )
    lines.extend(paired_difference_lines(report))
    lines.extend(learning_curve_lines(report))
    secs = report["seconds"]
    order = sorted(secs, key=lambda k: (PHASES.index(k) if k in PHASES else len(PHASES), k))
    if plots is None:
        plots = ["best_of_k.png", "hydrophobicity.png"] + (
            ["learning_curves.png"] if has_curves(report) else []
        )
    lines.append(
        "\nWall time (s): "
        + ", ".join(f"{k} {secs[k]:.0f}" for k in order)
        + ". Plots: "
        + ", ".join(plots)
        + "; every number: results.json.\n"
    )
    return "\n".join(lines)


INVALID_HEADER = "invalid (R = -5)"
PHASES = ("pretrain", "uncond_rl", "cond_warmup", "cond_rl", "evaluate", "total")


def ordered(models: dict, setting: str) -> list[tuple[str, dict]]:
    """A setting's ``(label, record)`` in table order: the reference, then :data:`BRANCH_LABELS`' order, then
    any other label (results.json stores them sorted)."""
    rank = [REFERENCES[setting], *BRANCH_LABELS.values()]
    key = lambda label: (rank.index(label) if label in rank else len(rank), label)
    return [(label, models[label]) for label in sorted(models, key=key)]


def with_invalid_column(table: str, invalid: list[dict]) -> str:
    """``table`` (a markdown table, one row per entry of ``invalid``) with a last column: the share of the
    rows' samples with reward -5, mean ± SE across seeds."""
    lines = table.split("\n")
    if len(lines) != len(invalid) + 2:
        raise ValueError(f"the table has {len(lines) - 2} rows for {len(invalid)} invalid shares")
    lines[0] += f" {INVALID_HEADER} |"
    lines[1] += "---|"
    cells = [reporting.cell(v["mean"], v["se"], scale=1, digits=3) for v in invalid]
    return "\n".join([*lines[:2], *(f"{line} {c} |" for line, c in zip(lines[2:], cells, strict=True))])


def has_curves(report: dict) -> bool:
    """Whether the report's RL runs carry training curves (``train_reward_mean``)."""
    return any(
        "train_reward_mean" in r
        for setting in SETTINGS
        for rec in report[setting].values()
        for r in rec["per_seed"]
    )


def curves_across_seeds(rec: dict, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and SE across seeds of a per-seed windowed training curve (None: no seed has it)."""
    runs = [r[key] for r in rec["per_seed"] if key in r]
    if not runs:
        return None
    n = min(map(len, runs))  # equal unless a run was resumed with other steps
    return reporting.mean_se(np.array([r[:n] for r in runs], np.float64))


def paired_differences(rec: dict, base: dict, name: str = "with_replacement") -> tuple[list, list] | None:
    """Mean and SE across seeds of ``rec``'s best-of-k curve minus ``base``'s, paired by RL seed (None: fewer
    than two shared seeds)."""
    by_seed = {r["seed"]: r[name]["mean"] for r in base["per_seed"] if r["seed"] is not None}
    pairs = [(r[name]["mean"], by_seed[r["seed"]]) for r in rec["per_seed"] if r["seed"] in by_seed]
    if len(pairs) < 2:
        return None
    mean, se = reporting.mean_se(np.array([np.subtract(a, b) for a, b in pairs], np.float64))
    return mean.tolist(), se.tolist()


def paired_difference_lines(report: dict) -> list[str]:
    """Tables of each Best-of-N branch minus standard RL (with replacement, the paper's metric), paired by
    seed, mean ± SE across seeds; the paper's difference in the last row of each branch."""
    out = []
    for setting in SETTINGS:
        models = report[setting]
        base = models.get(BRANCH_LABELS["standard"])
        if base is None:
            continue
        ks = report["config"]["eval"][f"{setting}_ks"]
        rows, paper = {}, PAPER[setting]
        for label, rec in ordered(models, setting):
            if label in (REFERENCES[setting], BRANCH_LABELS["standard"]):
                continue
            diff = paired_differences(rec, base)
            if diff is None:
                continue
            rows[f"{label} − Standard RL ({len(rec['per_seed'])} seeds)"] = diff
            if label in paper:
                at = [paper["ks"].index(k) if k in paper["ks"] else None for k in ks]
                d = [None if i is None else paper[label][i] - paper["Standard RL"][i] for i in at]
                rows[f"paper: {label} − Standard RL"] = (
                    [np.nan if v is None else v for v in d],
                    [None] * len(ks),
                )
        if rows:
            out.append(
                f"\n## {TITLES[setting]}: Best-of-N minus standard RL, paired by seed (with replacement)\n"
            )
            out.append(reporting.markdown_table(rows, ks, first="difference", scale=1, digits=2).rstrip())
    return out


def learning_curve_lines(report: dict) -> list[str]:
    """A table of the RL runs' mean rollout reward and invalid share in the first and last window of 10
    steps, mean ± SE across seeds (empty when the report has no training curves)."""
    if not has_curves(report):
        return []
    out = [
        "\n## Learning curves: rollouts of the RL runs, windows of 10 steps (mean ± SE across seeds)\n",
        "| setting | model | reward, first 10 steps | reward, last 10 steps | invalid, first 10 | "
        "invalid, last 10 |",
        "|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        for label, rec in ordered(report[setting], setting):
            reward = curves_across_seeds(rec, "train_reward_mean")
            if reward is None:
                continue
            invalid = curves_across_seeds(rec, "train_invalid_frac")
            cells = [reporting.cell(reward[0][i], reward[1][i], scale=1, digits=2) for i in (0, -1)]
            cells += (
                ["n/a", "n/a"]
                if invalid is None
                else [reporting.cell(invalid[0][i], invalid[1][i], scale=1, digits=3) for i in (0, -1)]
            )
            out.append(f"| {setting} | {label} | " + " | ".join(cells) + " |")
    return out


def plot_learning_curves(report: dict, path: pathlib.Path) -> None:
    """Mean rollout reward and invalid share per window of 10 RL steps, per branch, mean ± SE over seeds."""
    fig = reporting.new_figure((10.0, 7.0))
    for i, setting in enumerate(SETTINGS):
        for j, (key, ylabel) in enumerate(
            (("train_reward_mean", "mean rollout reward"), ("train_invalid_frac", "share of rollouts R = -5"))
        ):
            ax = fig.add_subplot(2, 2, 2 * i + j + 1)
            for label, rec in ordered(report[setting], setting):
                curve = curves_across_seeds(rec, key)
                if curve is None:
                    continue
                mean, se = curve
                x = 10 * np.arange(len(mean)) + 5  # window centres (steps)
                ax.plot(x, mean, label=f"{label} ({rec['seeds']})")
                if np.all(np.isfinite(se)):
                    ax.fill_between(x, mean - se, mean + se, alpha=0.2)
            ax.set_xlabel("RL step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{TITLES[setting].split(' (')[0].lower()} RL")
            ax.legend(fontsize=7)
    fig.tight_layout()
    reporting.save_figure(fig, path, report["command"], dpi=110)


def plot_best_of_k(report: dict, path: pathlib.Path) -> None:
    """2 x 2 panels: unconditional / conditional x with / without replacement; SE bands across seeds."""
    fig = reporting.new_figure((10.0, 7.5))
    for i, setting in enumerate(("uncond", "cond")):
        for j, name in enumerate(ESTIMATORS):
            curves = {}
            for label, rec in ordered(report[setting], setting):
                c = rec["across_seeds"][name]
                se = np.array([np.nan if v is None else v for v in c["se"]])
                curves[label] = operators.Curve(tuple(c["k"]), None, np.array(c["mean"]), se)
            ax = fig.add_subplot(2, 2, 2 * i + j + 1)
            reporting.draw_curves(ax, curves, dashed=tuple(REFERENCES.values()))
            ax.set_xlabel("k (samples)")
            ax.set_title(f"{TITLES[setting].split(' (')[0].lower()}, {name.replace('_', ' ')}")
            ax.set_ylabel("expected max reward of k")
            ax.legend(fontsize=7)
    fig.tight_layout()
    reporting.save_figure(fig, path, report["command"], dpi=110)


def plot_hydrophobicity(pools: dict, path: pathlib.Path, *, command: str) -> None:
    """Histogram of sample hydrophobicity per model (unconditional with the reward curve; conditional)."""
    fig = reporting.new_figure((11.0, 4.0))
    for i, (setting, title) in enumerate((("uncond", "unconditional"), ("cond", "conditional (outputs)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, h in pools[setting].items():
            f = h[np.isfinite(h)]
            ax.hist(f, bins=H_BINS, density=True, histtype="step", linewidth=1.5, label=label)
        if setting == "uncond":
            grid = np.linspace(0, 1, 201)
            twin = ax.twinx()
            twin.plot(grid, protein.unconditional_reward_of_h(grid), color="gray", alpha=0.5, linewidth=1)
            twin.set_ylabel("reward R(h) (gray)")
        ax.set_xlabel("hydrophobicity h of a sample")
        ax.set_ylabel("density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    reporting.save_figure(fig, path, command, dpi=110)


def write(report: dict, evals: dict, out_dir: pathlib.Path) -> None:
    """results.json, table.md, best_of_k.png and hydrophobicity.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    reporting.write_json(out_dir / "results.json", report)
    reporting.write_text(out_dir / "table.md", markdown_report(report))
    plot_best_of_k(report, out_dir / "best_of_k.png")
    if has_curves(report):
        plot_learning_curves(report, out_dir / "learning_curves.png")
    pools = {
        setting: {
            label: np.concatenate([ev["h"].reshape(-1) for _, _, ev in runs])
            for label, runs in models.items()
        }
        for setting, models in evals.items()
    }
    plot_hydrophobicity(pools, out_dir / "hydrophobicity.png", command=report["command"])
