r"""Evaluate trained runs side by side: exact pass@k / maj@k curves, a markdown table and PNG plots.

Each entry of ``config.runs`` (``name -> workdir`` of a finished SFT or RL run) is loaded from its
``params/`` and sampled ``config.eval.num_samples`` times per held-out problem at every temperature in
``config.temperatures`` (the temperature-sweep control of EXPERIMENTS.md)::

    python -m experiments.evaluate --config=configs/eval/arith.py --workdir=/tmp/cat/eval \
        --config.runs="ce=/tmp/cat/ce,passn16=/tmp/cat/passn16"

Writes ``results.json`` (every curve with SEs), ``table.md`` and ``pass_at_k.png`` / ``maj_at_k.png`` into
the workdir.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from cat_jax import evaluation, reporting
from cat_jax.models import llama
from experiments import cli, common


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
    data = common.task_data(config.task)
    model_cfg = common.model_config(config, data)
    graphdef, template = llama.init(model_cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    curves: dict[str, dict[str, evaluation.operators.Curve]] = {}
    for name, path in parse_runs(config.runs).items():
        params = common.load_params(path, template)
        for t in config.temperatures:
            label = name if len(config.temperatures) == 1 else f"{name} T={t:g}"
            scored = common.sample_and_score(
                apply, params, model_cfg, data, config.eval, temperature=float(t)
            )
            curves[label] = evaluation.curves(scored, ks)
    report = {
        "runs": parse_runs(config.runs),
        "temperatures": list(config.temperatures),
        "eval_problems": int(data.eval.prompts.shape[0]),
        "eval_samples": int(config.eval.num_samples),
        "curves": {m: {n: evaluation.curve_record(c) for n, c in cs.items()} for m, cs in curves.items()},
    }
    reporting.write_json(out / "results.json", report)
    tables = []
    for metric, png in [("pass@k", "pass_at_k.png"), ("maj@k", "maj_at_k.png")]:
        rows = {m: cs[metric] for m, cs in curves.items() if metric in cs}
        tables.append(f"### {metric} (%, mean ± SE over {report['eval_problems']} problems)\n\n")
        tables.append(reporting.markdown_table(rows, ks) + "\n")
        reporting.plot_scaling_curves(rows, ylabel=f"{metric} (%)", scale=100, path=str(out / png))
    reporting.write_text(out / "table.md", "".join(tables))
    return report


def main(argv):
    del argv
    cli.setup()  # jax.distributed when asked (flags, env or a detected cluster); logs the topology
    logging.set_verbosity(logging.WARNING)
    run(_CONFIG.value, _WORKDIR.value)
    print((pathlib.Path(_WORKDIR.value) / "table.md").read_text())


if __name__ == "__main__":
    # Flags are defined only when run as a program, so several experiment modules can be imported together.
    _CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
    _WORKDIR = flags.DEFINE_string("workdir", None, "Where results.json, table.md and the plots go.")
    flags.mark_flags_as_required(["config", "workdir"])
    cli.check_config_overrides()  # a mistyped --config.field names the valid fields (not AttributeError)
    app.run(main)
