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
    python -m experiments.paper --study=rl_add --seeds=0,1,2 --rl_full_seeds=3   # -> results/rl_add
    python -m experiments.paper --study=sft --smoke --workdir=/tmp/p --results=/tmp/r   # seconds

A study is config files + seeds: every phase runs ``<config>:<phase>,paper`` (the study's lengths and
learning curves are the configs' ``paper`` variant; :mod:`experiments.paper_studies`), and the reports
(:mod:`experiments.paper_reports`) go to ``--results``. Every phase resumes from ``--workdir`` (a finished
phase is skipped), so an interrupted study is rerun with the same command. Each branch logs the exact
held-out pass@k (teacher-forced, several temperatures) every two epochs; the reports use it for the two
controls of EXPERIMENTS.md: the temperature sweep of CE and the early-stopping frontier (best CE checkpoint
at matched pass@1). Headline numbers are the sampled unbiased estimators (500 held-out problems x 64
samples), mean ± SE across seeds.
"""

from __future__ import annotations

import functools
import pathlib

from absl import app, flags, logging

from experiments import cli
from experiments.paper_reports import report_rl, report_sft
from experiments.paper_studies import run_rl, run_sft


def main(argv):
    del argv
    cli.setup()  # jax.distributed when asked (flags, env or a detected cluster); logs the topology
    logging.set_verbosity(logging.WARNING)
    seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
    root, results = pathlib.Path(_WORKDIR.value), pathlib.Path(_RESULTS.value)
    command = cli.command("experiments.paper")
    studies = {
        "sft": (run_sft, report_sft),
        "modchain": (
            functools.partial(run_sft, study="modchain"),
            functools.partial(report_sft, study="modchain"),
        ),
        "rl": (run_rl, report_rl),
        "rl_add": (
            functools.partial(run_rl, study="rl_add"),
            functools.partial(report_rl, study="rl_add"),
        ),
    }
    if _STUDY.value not in studies:
        raise app.UsageError(f"--study must be one of {sorted(studies)}, got {_STUDY.value!r}")
    run_fn, report_fn = studies[_STUDY.value]
    if not _REPORT_ONLY.value:
        for i, seed in enumerate(seeds):
            extra = {"full": i < _RL_FULL_SEEDS.value, "lr": _RL_LR.value, "steps": _RL_STEPS.value}
            extra = extra if _STUDY.value.startswith("rl") else {}
            run_fn(root, seed, smoke=_SMOKE.value, **extra)
    if _STUDY.value.startswith("rl"):
        extra = {"full_seeds": _RL_FULL_SEEDS.value, "lr": _RL_LR.value, "steps": _RL_STEPS.value}
    else:
        extra = {"smoke": _SMOKE.value}
    report_fn(root, seeds, results, command, **extra)
    cli.say(f"reports written under {results}")


if __name__ == "__main__":
    _STUDY = flags.DEFINE_string(
        "study",
        "sft",
        "sft (Tables 2-3), modchain (second task family, with exact plurality), rl (Tables 4-5 on "
        "multiplication) or rl_add (Tables 4-5 on 3-digit addition, where standard RL learns: issue 15).",
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
        "rl_steps", 0, "RL: steps per branch (0 = configs/rl/arith.py:<branch>,paper); own workdir/report."
    )
    _RL_LR = flags.DEFINE_float(
        "rl_lr", 0.0, "RL: learning rate override (0 = the config's); own workdir/report."
    )
    _REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the reports from finished runs.")
    app.run(main)
