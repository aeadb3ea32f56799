"""Reports of the paper's studies (:mod:`experiments.paper_studies`): tables, plots and JSON in results/.

Headline numbers are the sampled unbiased estimators of each run's ``results.json``, mean ± SE across seeds
(:mod:`cat_jax.reporting`), with differences paired by seed (same warm-up). The SFT reports add the controls
of EXPERIMENTS.md from the runs' exact held-out learning curves: the temperature sweep of CE, the
early-stopping x temperature frontier and, where the task enumerates its answers, the exact maj@k sweep.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import numpy as np

from cat_jax import evaluation, reporting, train_lib
from cat_jax.models import llama
from cat_jax.operators import Curve
from experiments import common
from experiments import paper_studies as studies


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


def _metric_rows(runs: dict[str, list[dict]], names: dict[str, str], metric: str) -> dict:
    rows = {}
    for branch, reports in runs.items():
        per_seed = np.array([r["eval"][metric]["mean"] for r in reports])
        rows[names[branch]] = reporting.mean_se(per_seed)
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
        mean, se = reporting.mean_se(diff[:, ks_idx])
        rows[f"{names[branch]} − {names[base].split(' (')[0]}"] = (mean, se)  # pairs on shared seeds
    return rows


def _protocol(config: str, phase: str) -> dict:
    """The study's length of a phase (its config's ``paper`` variant), as the reports record it."""
    c = common.load_config(studies.phase_spec(config, phase, smoke=False))
    return {"epochs": float(c.epochs), "curve_every": int(c.curve_every)}


def _records(rows: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """``{row: {"mean": [...], "se": [...]}}``: a table's rows in results.json."""
    return {n: {"mean": m.tolist(), "se": s.tolist()} for n, (m, s) in rows.items()}


def _plot_curves(rows: dict, ks, ylabel: str, path: pathlib.Path, command: str) -> None:
    """Mean ± SE-across-seeds curves (a Curve needs no per-problem values here)."""
    curves = {label: Curve(tuple(ks), None, mean, se) for label, (mean, se) in rows.items()}
    ylabel = f"{ylabel} (%), mean ± SE over seeds"
    reporting.plot_scaling_curves(curves, ylabel=ylabel, scale=100, path=path, command=command)


@functools.cache
def curve_temperatures(study: str) -> tuple[float, ...]:
    """The temperatures of a study's exact learning curves, as its config logs them."""
    return tuple(common.load_config(studies.SFT_STUDIES[study].config).curve_temperatures)


def _frontier(
    root: pathlib.Path, seeds, runs: dict[str, list[dict]], names, command: str, out: pathlib.Path, big, study
):
    """Early-stopping x temperature frontier of CE (exact metric) against each CAT branch's final model.

    For every CE checkpoint (every 2 epochs) and temperature, the exact held-out pass@1 and pass@k; a CAT
    branch "beats the frontier" at k when its exact pass@k exceeds every CE point whose pass@1 is at least
    the CAT model's pass@1 (matched or better single-sample accuracy).
    """
    temps = curve_temperatures(study)
    result, fig = {}, reporting.new_figure(figsize=(9.0, 3.8))
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
    reporting.save_figure(fig, out / "frontier.png", command)
    return result


def _temperature_sweep(root: pathlib.Path, seeds, ks, study) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact pass@k of the final CE model at each temperature, mean ± SE over seeds."""
    rows = {}
    for t in curve_temperatures(study):
        per_seed = [
            [_curve_log(root / study / f"seed{s}" / "ce")[-1][f"eval/T{t:g}/pass@{k}"] for k in ks]
            for s in seeds
        ]
        rows[f"CE T={t:g}"] = reporting.mean_se(np.array(per_seed))
    return rows


def _majority_sweep(
    root: pathlib.Path, study: str, seeds, branches, ks, smoke: bool
) -> dict[str, np.ndarray]:
    """Exact maj@k of every finished model (warm-up and branches) at each of studies.MAJORITY_TEMPERATURES.

    ``branch -> [seeds, len(ks), len(temperatures)]``, from the saved final parameters and
    :func:`cat_jax.evaluation.exact_majority_at_k` (all answers teacher-forced; no sampling noise).
    """
    cfg = common.load_config(f"{studies.SFT_STUDIES[study].config}:ce" + (",smoke" if smoke else ""))
    data = common.task_data(cfg.task)  # the problems do not depend on the run's seed
    model_cfg = common.model_config(cfg, data)
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
                data.eval.prompts,
                data.eval.lengths,
                data.eval.targets,
                data.eval.target_lengths,
                temperatures=studies.MAJORITY_TEMPERATURES,
                ks=ks,
                vocab_size=data.vocab_size,
                stop_tokens=data.stop_tokens,
                max_new_tokens=data.max_new_tokens,
                pad_id=data.pad_id,
            )
            per_seed.append([[r[f"T{t:g}/maj@{k}"] for t in studies.MAJORITY_TEMPERATURES] for k in ks])
        out[branch] = np.array(per_seed)
    return out


def _metric_section(runs, warm, names, metric: str, ks, head, *, base: str, paired: str, png, command):
    """A metric's table (warm-up and every branch), its differences to ``base`` paired by seed, its plot."""
    rows = {"warm-up": reporting.mean_se(np.array([r["eval"][metric]["mean"] for r in warm]))}
    rows.update(_metric_rows(runs, names, metric))
    diffs = _paired(runs, names, metric, base, head)
    _plot_curves(rows, ks, metric, png, command)
    md = [f"## {metric} (%)\n\n", reporting.markdown_table(rows, ks), "\n", paired]
    md += [reporting.markdown_table(diffs, [ks[i] for i in head], first="branch"), "\n"]
    return md, {f"table/{metric}": _records(rows), f"paired/{metric}": _records(diffs)}


def _controls(root, seeds, study, sub, branches, big, out, command):
    """Controls 1 and 2 of EXPERIMENTS.md: CE's temperature sweep and the early-stopping frontier."""
    sweep = _temperature_sweep(root, seeds, [1, *big], study)
    last = lambda s, b, k: _curve_log(root / study / f"seed{s}" / b)[-1][f"eval/T1/pass@{k}"]
    ours = {
        branches[b]: reporting.mean_se(np.array([[last(s, b, k) for k in (1, *big)] for s in seeds]))
        for b in sub
    }
    frontier = _frontier(root, seeds, sub, branches, command, out, big, study)
    md = [
        "## Control 1: temperature sweep of the final CE model (exact teacher-forced pass@k, %)\n\n",
        reporting.markdown_table({**sweep, **ours}, [1, *big]),
        "\n",
        "## Control 2: early-stopping x temperature frontier (exact pass@k, %)\n\n",
        "Best CE point over every checkpoint (every 2 epochs of the branch) and temperature "
        f"{{{', '.join(f'{t:g}' for t in curve_temperatures(study))}}} whose pass@1 is at least the CAT "
        "model's, against the CAT model; "
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
    return md, {"temperature_sweep": _records({**sweep, **ours}), "frontier": frontier}


def _majority_control(root, seeds, study, table, branches, ks, smoke):
    """Control 3: the exact maj@k of every final model across temperatures (tasks that list their answers)."""
    sweep_ks = [k for k in (4, 16) if k in ks] or ks[-1:]  # the DP costs C^2 k^3 per problem
    sweep = _majority_sweep(root, study, seeds, table, sweep_ks, smoke)
    names = {"warmup": "warm-up", **branches}
    md = [
        "## Control 3: temperature sweep of the exact maj@k (%)\n\n",
        "Every final model's exact answer distribution (all answers teacher-forced) at temperature "
        "T, and the exact chance that the correct answer wins a k-sample plurality vote (ties split "
        "evenly); mean ± SE across seeds. Is Majority / plurality training more than sharpening?\n\n",
    ]
    payload = {"temperatures": list(studies.MAJORITY_TEMPERATURES)}
    for j, k in enumerate(sweep_ks):
        rows = {names[b]: reporting.mean_se(v[:, j]) for b, v in sweep.items()}
        md += [
            f"maj@{k}:\n\n",
            reporting.markdown_table(rows, studies.MAJORITY_TEMPERATURES, prefix="T="),
            "\n",
        ]
        payload[f"maj@{k}"] = _records(rows)
    return md, {"exact_majority_sweep": payload}


def report_sft(
    root: pathlib.Path, seeds, results: pathlib.Path, command: str, study: str = "sft", smoke: bool = False
) -> None:
    """Write the study's reports: ``sft`` -> results/sft_passn (Table 2 analogue) and results/sft_majority
    (Table 3 analogue); ``modchain`` -> results/sft_modchain (the second task family)."""
    spec = studies.SFT_STUDIES[study]
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
        "warmup": _protocol(spec.config, "warmup"),
        "branch": _protocol(spec.config, "ce"),
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
        sections = []
        for metric in (metric_main, "maj@k" if metric_main == "pass@k" else "pass@k"):
            at = ", ".join(str(ks[j]) for j in head)
            paired = f"Paired by seed, {metric} difference (points) at k = {at}:\n\n"
            png = out / f"{metric.replace('@', '_at_')}.png"
            sections.append(
                _metric_section(
                    sub, warm, branches, metric, ks, head, base="ce", paired=paired, png=png, command=command
                )
            )
        if i == 0:  # the controls of EXPERIMENTS.md, on the study's first report
            sections.append(_controls(root, seeds, study, sub, branches, big, out, command))
        if i == 0 and spec.exact_majority:
            sections.append(_majority_control(root, seeds, study, table, branches, ks, smoke))
        for lines, records in sections:
            md += lines
            payload.update(records)
        md.append(
            f"Plots: `{metric_main.replace('@', '_at_')}.png` and the other metric's png in this folder.\n"
        )
        reporting.write_text(out / "table.md", "".join(md))
        reporting.write_json(out / "results.json", payload)


def report_rl(
    root: pathlib.Path,
    seeds,
    results: pathlib.Path,
    command: str,
    full_seeds: int = 1,
    lr: float = 0.0,
    steps: int = 0,
    study: str = "rl",
) -> None:
    """Write results/<study> (Tables 4 and 5 analogues): every branch on the first ``full_seeds`` seeds."""
    s = studies.RL_STUDIES[study]
    folder, runs = studies.rl_name(lr, steps, study), {}
    for branch in s.branches:
        if full_seeds == 0 and branch not in s.headline:
            continue
        on = seeds if branch in s.headline else seeds[:full_seeds]
        runs.update(_load(root, folder, on, [branch]))
    names = {
        b: f"{n} ({len(runs[b])} seed{'s' * (len(runs[b]) > 1)})"
        for b, (_, n) in s.branches.items()
        if b in runs
    }
    warm = _load(root, s.warmup_folder, seeds, ["warmup"])["warmup"]
    ks = runs["standard"][0]["eval"]["pass@k"]["k"]
    head = [ks.index(k) for k in (1, 4, 16, 64) if k in ks]
    ran = runs["standard"][0]["steps"]  # what the runs did (a smoke run ignores --rl_steps)
    if any(r["steps"] != ran for rs in runs.values() for r in rs):
        raise ValueError(f"the runs under {folder} did not all train {ran} steps")
    out = results / folder
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "seeds": list(seeds),
        "rl": {"steps": ran, "lr": lr or "config default (configs/rl/arith.py)", "modifier": s.modifier},
        "branches": {b: [r["eval"] for r in rs] for b, rs in runs.items()},
        "train_seconds": {b: [r["train_seconds"] for r in rs] for b, rs in runs.items()},
    }
    task = common.load_config(s.warmup).task
    md = [
        "# Tables 4-5 analogue at CPU scale: CAT RL vs standard group-advantage RL\n\n",
        f"Task: {task.name}, {task.digits} digits ({s.warmup} warm-up; RL variants `configs/rl/arith.py:"
        f"<variant>,{s.modifier}`).\n\n",
        f"Command: `{command}`\n\n",
        f"Seeds {list(seeds)} for the headline branches, "
        + (f"the first {full_seeds} for the others (CPU budget)" if full_seeds else "no other branches")
        + "; every branch starts from its seed's SFT warm-up; "
        f"{ran} RL steps of 32 prompts x 8 rollouts at learning rate "
        f"{lr or 'of configs/rl/arith.py (1e-4)'}; "
        "evaluation as in the SFT tables; mean ± SE across seeds.\n\n",
    ]
    paired = "Paired by seed, difference to standard RL (points) at k = 1, 4, 16, 64:\n\n"
    for metric in ("pass@k", "maj@k"):
        png = out / f"{metric.replace('@', '_at_')}.png"
        lines, records = _metric_section(
            runs, warm, names, metric, ks, head, base="standard", paired=paired, png=png, command=command
        )
        md += lines
        payload.update(records)
    # Runs that logged their exact held-out learning curve (--rl_steps): is RL improving on its start?
    logs = {
        b: [_curve_log(root / folder / f"seed{s}" / b) for s in seeds[: len(rs)]] for b, rs in runs.items()
    }
    if all(all(per_seed) for per_seed in logs.values()):
        at = [r["step"] for r in logs["standard"][0]]
        for b, per_seed in logs.items():
            if any([r["step"] for r in log] != at for log in per_seed):
                raise ValueError(f"{b}: its learning curve was logged at other steps than standard RL's {at}")
        fig = reporting.new_figure((11.0, 3.8))
        for panel, k in enumerate((1, ks[-1])):
            rows = {
                names[b]: reporting.mean_se(
                    np.array([[r[f"eval/T1/pass@{k}"] for r in log] for log in per_seed])
                )
                for b, per_seed in logs.items()
            }
            ax = fig.add_subplot(1, 2, panel + 1)
            for label, (mean, se) in rows.items():
                (line,) = ax.plot(at, 100 * mean, marker="o", markersize=2, label=label)
                ax.fill_between(at, 100 * (mean - se), 100 * (mean + se), color=line.get_color(), alpha=0.15)
            ax.set_xlabel("RL step")
            ax.set_ylabel(f"exact held-out pass@{k} at T = 1 (%)")
            ax.grid(True, alpha=0.3)
            md += [
                f"## Exact held-out pass@{k} along RL training (teacher-forced, T = 1; %)\n\n",
                reporting.markdown_table(rows, at, first="branch", prefix="step "),
                "\n",
            ]
            payload[f"learning_curve/pass@{k}"] = {"steps": at, **_records(rows)}
        fig.axes[0].legend(fontsize=7)
        fig.tight_layout()
        reporting.save_figure(fig, out / "learning_curves.png", command)
        md.append("Plot: `learning_curves.png` (mean ± SE band over seeds).\n\n")
    if s.frontier and all(all(per_seed) for per_seed in logs.values()):
        temps = tuple(common.load_config(f"{studies.RL_CONFIG}:standard,{s.modifier}").curve_temperatures)
        lines, records = _rl_frontier(root / s.warmup_folder, seeds, logs, names, temps, ks)
        md += lines
        payload["temperature_frontier"] = records
    reporting.write_text(out / "table.md", "".join(md))
    reporting.write_json(out / "results.json", payload)


def _rl_frontier(warm_root: pathlib.Path, seeds, logs: dict, names: dict, temps, ks) -> tuple[list, dict]:
    """The temperature-frontier control of RL (exact, teacher-forced, held-out): each final RL model at
    T = 1 against its seed's warm-up and standard RL at every T, at matched pass@1.

    ``best at matched pass@1``: the highest pass@k among the reference's points (warm-up or standard RL, each
    T) whose pass@1 is at least the model's. ``gain over the frontier``: the model's pass@k minus that, mean
    ± SE over seeds (positive: beyond what re-tempering the reference gives). Warm-up: its final curve record.
    """
    points = lambda rec, k: np.array(
        [[rec[f"eval/T{t:g}/pass@1"], rec[f"eval/T{t:g}/pass@{k}"]] for t in temps]
    )
    warm_logs = [_curve_log(warm_root / f"seed{s}" / "warmup")[-1] for s in seeds]
    lines = [
        "## Temperature-frontier control (exact held-out pass@k, teacher-forced)\n\n",
        f"Each model at T = 1 against the warm-up and standard RL re-tempered at T in {list(temps)}: the "
        "reference's best pass@k among its points with pass@1 at least the model's (matched single-sample "
        "accuracy; where no temperature brings the warm-up to the model's pass@1, its best pass@k at any T); "
        "gain = model minus that, points, mean ± SE over seeds. A gain > 0 is beyond sharpening.\n\n",
        "| model | vs | " + " | ".join(f"gain @{k}" for k in ks if k > 1) + " |\n",
        "|---|---|" + "---|" * len([k for k in ks if k > 1]) + "\n",
    ]
    records = {}
    for b, per_seed in logs.items():
        for ref_name in ("warm-up", "standard"):
            if ref_name == "standard" and b == "standard":
                continue
            cells, rec = [], {}
            for k in (k for k in ks if k > 1):
                gains = []
                for i, log in enumerate(per_seed):
                    last = log[-1]
                    p1, pk = last["eval/T1/pass@1"], last[f"eval/T1/pass@{k}"]
                    ref = warm_logs[i] if ref_name == "warm-up" else logs["standard"][i][-1]
                    pts = points(ref, k)
                    matched = pts[pts[:, 0] >= p1, 1]
                    if ref_name == "warm-up" and not len(matched):
                        # No temperature brings the warm-up to the model's pass@1: compare with its best
                        # pass@k at any T (conservative: the warm-up gets its best point, at any pass@1).
                        matched = pts[:, 1]
                    gains.append(pk - (matched.max() if len(matched) else np.nan))
                mean, se = reporting.mean_se(np.array(gains)[:, None])
                cells.append(reporting.cell(float(mean[0]), float(se[0])))
                rec[f"pass@{k}"] = {
                    "gains": [float(g) for g in gains],
                    "mean": float(mean[0]),
                    "se": float(se[0]),
                }
            lines.append(f"| {names[b]} | {ref_name} | " + " | ".join(cells) + " |\n")
            records[f"{b} vs {ref_name}"] = rec
    best_p1 = [max(r[f"eval/T{t:g}/pass@1"] for t in temps) for r in warm_logs]
    lines.append(
        f"\nThe warm-up's best exact pass@1 at any T: {', '.join(f'{100 * b:.1f}%' for b in best_p1)} (seeds "
        f"{list(seeds)}). nan: no point of standard RL reaches the model's pass@1 at any T.\n\n"
    )
    return lines, records
