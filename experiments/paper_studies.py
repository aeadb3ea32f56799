"""The paper's studies at CPU scale: which phases each runs (config files + seeds), and running them.

A study is a config file, its phases and the seeds: every phase is ``<config>:<phase>,paper`` (the study's
lengths and learning curves live in the config's ``paper`` variant) with the seed and the warm-up to start
from; ``--smoke`` adds ``,smoke``. The RL study's ``--rl_lr`` / ``--rl_steps`` are its only other settings
(each gets its own workdir and report folder). Reports: :mod:`experiments.paper_reports`.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import NamedTuple

from absl import logging

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
RL_CONFIG = "configs/rl/arith.py"
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


class RLStudy(NamedTuple):
    """An RL study: its warm-up, the RL config's modifier, branches (folder -> (config variant, name))."""

    warmup: str  # the SFT warm-up's phase spec (every seed trains its own)
    warmup_folder: str  # where the warm-ups run under the workdir
    modifier: str  # added to every branch's variant: "paper" (the multiplication study) or "add"
    branches: dict[str, tuple[str, str]]
    headline: tuple[str, ...]
    frontier: bool = False  # report the temperature-frontier control (the RL config's curve_temperatures)


RL_STUDIES = {
    "rl": RLStudy(
        "configs/sft/arith.py:warmup,paper",
        "sft",
        "paper",
        {b: (b, n) for b, n in RL_BRANCHES.items()},
        RL_HEADLINE,
    ),
    # Issue 15: 3-digit addition, where standard RL improves on its warm-up (configs/rl/arith.py "add").
    "rl_add": RLStudy(
        "configs/sft/arith.py:warmup,add",
        "sft_add",
        "add",
        {
            "standard": ("standard", "Standard"),
            "passn4_log": ("passn4_log", "Pass@4 log"),
            "passn4_raw": ("passn4_raw", "Pass@4 raw"),
            "passn16_log": ("passn16_log", "Pass@16 log"),
            "passn16_raw": ("passn16_raw", "Pass@16 raw"),
            "passn16_log_seqp": ("passn16_log,seqp", "Pass@16 log, sequence p (App. J)"),
            "passn16_log_exactp": ("passn16_log,exactp", "Pass@16 log, exact p"),
            "maj4_raw": ("maj4_raw", "Maj@4 raw"),
            "maj4_log": ("maj4_log", "Maj@4 log"),
            "maj8_raw": ("maj8_raw", "Maj@8 raw"),
            "maj8_log": ("maj8_log", "Maj@8 log"),
            "pkpo4": ("pkpo4", "PKPO pass@4"),
        },
        (
            "standard",
            "passn4_log",
            "passn4_raw",
            "passn16_log",
            "passn16_raw",
            "passn16_log_seqp",
            "passn16_log_exactp",
            "maj4_raw",
            "maj4_log",
            "maj8_raw",
            "maj8_log",
            "pkpo4",
        ),
        frontier=True,
    ),
}


def phase_spec(config: str, phase: str, smoke: bool) -> str:
    """``<config>:<phase>,paper`` (the study's protocol), ``,smoke`` added for a smoke study."""
    return f"{config}:{phase},paper" + (",smoke" if smoke else "")


def run_or_read(module, spec: str, overrides: dict, workdir: pathlib.Path) -> dict:
    """``module.run`` one phase unless its ``results.json`` exists (then just read it)."""
    done = workdir / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    report = module.run(common.load_config(spec, {"progress": False, **overrides}), str(workdir))
    if report.get("preempted"):
        raise SystemExit(
            f"{workdir} was interrupted at step {report['step']}; rerun the same command to resume"
        )
    logging.warning("%s done in %.0f s", workdir, time.perf_counter() - t0)
    return report


def run_sft(root: pathlib.Path, seed: int, *, smoke: bool = False, study: str = "sft") -> None:
    """One seed of an SFT study: its CE warm-up, then every branch from the warm-up's final weights."""
    config, branches = SFT_STUDIES[study].config, SFT_STUDIES[study].branches
    warm = root / study / f"seed{seed}" / "warmup"
    run_or_read(sft, phase_spec(config, "warmup", smoke), {"seed": seed}, warm)
    for branch in branches:
        overrides = {"seed": seed, "init_from": str(warm)}
        run_or_read(sft, phase_spec(config, branch, smoke), overrides, root / study / f"seed{seed}" / branch)


def run_rl(
    root: pathlib.Path,
    seed: int,
    *,
    smoke: bool = False,
    full: bool = True,
    lr: float = 0.0,
    steps: int = 0,
    study: str = "rl",
) -> None:
    """One seed of an RL study from its warm-up (trained here if missing): every branch when ``full``, else
    the headline ones; ``lr`` / ``steps`` (0 = the config's) override the RL phases."""
    s = RL_STUDIES[study]
    warm = root / s.warmup_folder / f"seed{seed}" / "warmup"
    run_or_read(sft, s.warmup + (",smoke" if smoke else ""), {"seed": seed}, warm)
    for branch, (variant, _) in s.branches.items():
        if not full and branch not in s.headline:
            continue
        overrides = {"seed": seed, "init_from": str(warm), **({"opt.lr": lr} if lr else {})}
        if steps:  # a longer-RL study also logs its exact held-out learning curve (smoke: its own 2 steps)
            overrides.update(
                {"curve_every": 2} if smoke else {"steps": steps, "curve_every": max(steps // 6, 1)}
            )
        out = root / rl_name(lr, steps, study) / f"seed{seed}" / branch
        spec = f"{RL_CONFIG}:{variant},{s.modifier}" + (",smoke" if smoke else "")
        run_or_read(rl, spec, overrides, out)


def rl_name(lr: float, steps: int = 0, study: str = "rl") -> str:
    """``study`` at the config's learning rate and steps; ``<study>_lr<lr>``, ``_steps<n>`` if overridden."""
    name = f"{study}_lr{lr:g}" if lr else study
    return f"{name}_steps{steps}" if steps else name
