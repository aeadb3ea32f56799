r"""``make run``: the smallest complete CAT experiment, end to end on a CPU in a few minutes.

A 0.43M-parameter decoder learns 2-digit x 2-digit multiplication with a 30-epoch cross-entropy warm-up;
two branches continue from the same weights for 15 epochs each, one with CE and one with CAT Pass@64; both
are then sampled 64 times on 500 held-out problems and compared with exact pass@k / maj@k curves (mean ±
SE), and their difference paired by problem::

    python -m experiments.quickstart --workdir=workdirs/quickstart   # what `make run` does
    python -m experiments.quickstart --workdir=/tmp/qs --smoke       # seconds, tiny everything

Rerunning resumes every finished or interrupted phase from the workdir. The full study with more budgets,
seeds and controls is the subject of the experiments issue; configs live in configs/sft/arith.py.
"""

from __future__ import annotations

import pathlib

from absl import app, flags, logging

from cat_jax import reporting
from experiments import cli, common, evaluate, sft

# The paper study's lengths (results/sft_passn, seed 0): a 30-epoch warm-up, 15-epoch branches. Pass@64 vs
# CE at k = 64 is then the largest effect of Table 2's analogue (+9.4 ± 1.0 points over 3 seeds).
WARMUP_EPOCHS = 30.0
BRANCH_EPOCHS = 15.0


def run(workdir: str, *, smoke: bool = False, progress: bool = True) -> str:
    """Warm-up, CE and Pass@64 branches, side-by-side evaluation; returns the markdown table."""
    root = pathlib.Path(workdir)
    suffix = ",smoke" if smoke else ""
    warm = root / "warmup"
    warm_overrides = {"progress": progress, **({} if smoke else {"epochs": WARMUP_EPOCHS})}
    sft.run(common.load_config(f"configs/sft/arith.py:warmup{suffix}", warm_overrides), str(warm))
    runs = {}
    for branch in ("ce", "passn64"):
        overrides = {"init_from": str(warm), "progress": progress}
        if not smoke:
            overrides["epochs"] = BRANCH_EPOCHS
        sft.run(common.load_config(f"configs/sft/arith.py:{branch}{suffix}", overrides), str(root / branch))
        runs[branch] = str(root / branch)
    spec = ",".join(f"{k}={v}" for k, v in runs.items())
    eval_cfg = common.load_config(f"configs/eval/arith.py:{suffix.strip(',')}", {"runs": spec})
    evaluate.run(eval_cfg, str(root / "eval"))
    return (root / "eval" / "table.md").read_text()


def main(argv):
    del argv
    cli.setup()  # jax.distributed when asked (flags, env or a detected cluster); logs the topology
    logging.set_verbosity(logging.WARNING)
    table = run(_WORKDIR.value, smoke=_SMOKE.value)
    if not reporting.is_writer():  # process 0 prints (and alone wrote the files named below)
        return
    cli.say("\nCE vs CAT Pass@64 from the same warm-up (held-out problems, exact estimators):\n")
    cli.say(table)
    out = pathlib.Path(_WORKDIR.value) / "eval"
    cli.say(f"Plots: {out / 'pass_at_k.png'}, {out / 'maj_at_k.png'}; every number: {out / 'results.json'}")


if __name__ == "__main__":
    _WORKDIR = flags.DEFINE_string("workdir", "workdirs/quickstart", "Where every phase and the results go.")
    _SMOKE = flags.DEFINE_bool("smoke", False, "Shrink every phase to seconds.")
    app.run(main)
