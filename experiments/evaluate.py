r"""Evaluate trained runs side by side: exact pass@k / maj@k curves, a markdown table and PNG plots.

Each entry of ``config.runs`` (``name -> workdir`` of a finished SFT or RL run, or ``name=untrained``: the
pretrained ``model.checkpoint`` itself, the baseline row) is loaded from its ``params/`` and sampled
``config.eval.num_samples`` times per held-out problem at every temperature in ``config.temperatures``
(the temperature-sweep control of EXPERIMENTS.md)::

    python -m experiments.evaluate --config=configs/eval/arith.py --workdir=/tmp/cat/eval \
        --config.runs="ce=/tmp/cat/ce,passn16=/tmp/cat/passn16"

Writes ``results.json`` (every curve with SEs), ``table.md`` and ``pass_at_k.png`` / ``maj_at_k.png`` into
the workdir.
"""

from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from cat_jax import evaluation, operators, reporting
from experiments import cli, common

UNTRAINED = "untrained"  # a run "name=untrained": the checkpoint itself (model.checkpoint), no training


def parse_runs(spec: str) -> dict[str, str]:
    """``"a=/path/a,b=/path/b"`` -> ``{"a": "/path/a", "b": "/path/b"}`` (order kept)."""
    runs = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"runs must look like 'name=workdir,name=workdir', got item {item!r}")
        runs[name] = path
    if not runs:
        raise ValueError("runs is empty: give at least one 'name=workdir'")
    return runs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluate every run at every temperature; write JSON, a markdown table and plots; return the JSON."""
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, encoder = None, None
    if config.model.get("checkpoint"):
        checkpoint, encoder = common.load_checkpoint(config.model)
    data = common.task_data(config.task, encoder=encoder)
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    curves: dict[str, dict[str, operators.Curve]] = {}
    for name, path in parse_runs(config.runs).items():
        # UNTRAINED: the checkpoint as loaded (fresh LoRA adapters are an exact no-op), the baseline row.
        run_cfg = ml_collections.ConfigDict(
            {"model": config.model, "init_from": "" if path == UNTRAINED else path}
        )
        policy = common.build_policy(run_cfg, data, checkpoint, encoder)
        for t in config.temperatures:
            label = name if len(config.temperatures) == 1 else f"{name} T={t:g}"
            scored = common.sample_and_score(
                policy.apply, policy.full, policy.model_cfg, data, config.eval, temperature=float(t)
            )
            curves[label] = evaluation.curves(scored, ks)
    report = {
        "runs": parse_runs(config.runs),
        "temperatures": list(config.temperatures),
        "eval_problems": int(data.eval.prompts.shape[0]),
        "eval_samples": int(config.eval.num_samples),
        "curves": {m: {n: evaluation.curve_record(c) for n, c in cs.items()} for m, cs in curves.items()},
    }
    tables = []
    for metric, png in [("pass@k", "pass_at_k.png"), ("maj@k", "maj_at_k.png")]:
        rows = {m: cs[metric] for m, cs in curves.items() if metric in cs}
        tables.append(f"### {metric} (%, mean ± SE over {report['eval_problems']} problems)\n\n")
        tables.append(reporting.markdown_table(rows, ks) + "\n")
        reporting.plot_scaling_curves(rows, ylabel=f"{metric} (%)", scale=100, path=str(out / png))
        if len(rows) > 1:  # paired by problem: the same held-out problems, so the difference has its own SE
            (base, ref), *others = rows.items()
            diffs = {f"{name} − {base}": paired(curve, ref) for name, curve in others}
            tables.append(f"{metric} difference to {base}, paired by problem (points, mean ± SE):\n\n")
            tables.append(reporting.markdown_table(diffs, ks) + "\n")
            report.setdefault("paired", {})[metric] = {
                n: evaluation.curve_record(c) for n, c in diffs.items()
            }
    reporting.write_json(out / "results.json", report)
    reporting.write_text(out / "table.md", "".join(tables))
    return report


def paired(curve: operators.Curve, base: operators.Curve) -> operators.Curve:
    """``curve - base`` per problem (the same held-out problems): its mean and standard error."""
    values = np.asarray(curve.values) - np.asarray(base.values)
    mean, se = reporting.mean_se(values)
    return operators.Curve(curve.ks, values, mean, se)


def summary(config, workdir: str, report) -> str:
    """What the program prints: the side-by-side table."""
    return (pathlib.Path(workdir) / "table.md").read_text()


if __name__ == "__main__":
    cli.program(run, summary, workdir_help="Where results.json, table.md and the plots go.")
