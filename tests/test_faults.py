"""Fault tests of the experiment CLIs: SIGTERM / SIGKILL mid-run, resume, corrupt checkpoints, bad workdirs.

Every run is a real ``python -m experiments.sft`` / ``experiments.rl`` process on the smoke config. A small
wrapper (``CHILD``) only adds a deterministic fault: at step ``CAT_FAULT_AT`` it sends ``CAT_FAULT_SIGNAL``
to its own process through the OS, i.e. the signal arrives between two steps exactly as a scheduler's would,
at a step chosen by a seeded generator (CI stays deterministic). One module-scoped fixture per experiment
serves all assertions: six processes (one uninterrupted reference run, then five against it).

Cost: the processes share one JAX persistent compilation cache (same programs, so the same executables:
only the reference run compiles) and compile at XLA's lowest backend optimisation level (half the compile
time; every run of a scenario uses the same executables, so bit-for-bit comparisons keep their meaning).
Even so, the twelve processes take about a minute of CPU: those tests are marked ``slow`` (``make
test-slow``); the in-process bad-workdir checks stay in ``make test``.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, runpy, signal, sys
from cat_jax import train_lib

at, sig = int(os.environ.get("CAT_FAULT_AT", "0")), os.environ.get("CAT_FAULT_SIGNAL", "SIGTERM")
loop, seen = train_lib.train_loop, []

def train_loop(*args, **kwargs):
    def on_step(step, metrics):
        if not seen:  # the first step this process trains: where it resumed, + 1
            seen.append(step)
            print("FAULTS-FIRST", step, flush=True)
        if step == at:
            os.kill(os.getpid(), getattr(signal, sig))
    result = loop(*args, on_step=on_step, **kwargs)
    out = {"resumed_from": result.resumed_from, "preempted": result.preempted, "step": int(result.state.step)}
    print("FAULTS " + json.dumps(out), flush=True)
    return result

train_lib.train_loop = train_loop
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@dataclasses.dataclass
class Run:
    workdir: pathlib.Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def loop(self) -> dict:
        """What the training loop reported (resumed_from, preempted, final step)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("FAULTS ")]
        assert lines, f"no loop report (exit {self.returncode}):\n{self.stderr[-3000:]}"
        return json.loads(lines[-1][len("FAULTS ") :])

    def metrics(self) -> str:
        return (self.workdir / "metrics.jsonl").read_text()

    def checkpoints(self) -> list[int]:
        return sorted(int(p.name) for p in (self.workdir / "checkpoints").iterdir() if p.name.isdigit())


class Experiment:
    """One CLI (module + flags) launched several times, concurrently where the runs are independent."""

    def __init__(self, module: str, flags: list[str], root: pathlib.Path, cache: pathlib.Path):
        self.module, self.flags, self.root = module, flags, root
        self.env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_backend_optimization_level=0",  # one device; compiles in half the time
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }

    def run_all(self, **jobs: tuple[str, int, str]) -> dict[str, Run]:
        """``name=(workdir, fault_step, signal)`` for each run; all start at once, then all are awaited."""
        started = {}
        for name, (workdir, at, sig) in jobs.items():
            cmd = [sys.executable, "-c", CHILD, self.module, *self.flags, f"--workdir={self.root / workdir}"]
            env = {**self.env, "CAT_FAULT_AT": str(at), "CAT_FAULT_SIGNAL": sig}
            started[name] = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        runs = {}
        for name, proc in started.items():
            out, err = proc.communicate(timeout=300)
            runs[name] = Run(self.root / jobs[name][0], proc.returncode, out, err)
        return runs


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def corrupt_latest(workdir: pathlib.Path) -> int:
    """Overwrite every file of the newest checkpoint with garbage (a damaged or half-copied checkpoint)."""
    step = checkpoint_steps(workdir)[-1]
    for f in (workdir / "checkpoints" / str(step)).rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    return step


def scenario(module: str, flags: list[str], *, steps: int, every: int, root, cache, seed: int) -> dict:
    """Every run of one experiment: the reference and a repeat of it; one workdir interrupted twice
    (SIGTERM, then SIGKILL on the resumed run) and resumed to the end; a copy of the killed workdir with
    its newest checkpoint corrupted, resumed to the end."""
    rng = random.Random(seed)  # the "random" fault steps, fixed per experiment
    kill_at = rng.randint(2 * every + 1, steps - 1)  # two checkpoints exist by then: one to fall back to
    term_at = rng.randint(1, kill_at - 1)
    exp = Experiment(module, [*flags, f"--config.checkpoint_every={every}"], root, cache)
    none = 0  # no fault
    # The reference runs alone first: it fills the compilation cache that every later run reuses.
    runs = exp.run_all(reference=("reference", none, ""))
    runs |= exp.run_all(repeat=("repeat", none, ""), term=("faults", term_at, "SIGTERM"))
    after = {"term": checkpoint_steps(root / "faults")}
    # Rerunning the same command (same workdir) resumes; this time the process is killed.
    runs |= exp.run_all(kill=("faults", kill_at, "SIGKILL"))
    after["kill"] = checkpoint_steps(root / "faults")
    shutil.copytree(root / "faults", root / "corrupt")
    corrupted = corrupt_latest(root / "corrupt")
    runs |= exp.run_all(resumed=("faults", none, ""), corrupt_resumed=("corrupt", none, ""))
    return {
        "runs": {name: dataclasses.asdict(run) | {"workdir": str(run.workdir)} for name, run in runs.items()},
        "term_at": term_at,
        "kill_at": kill_at,
        "every": every,
        "steps": steps,
        "after": after,
        "corrupted": corrupted,
    }


def restore(path: pathlib.Path):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path.absolute())


def assert_same_run(run: Run, ref: Run) -> None:
    """Same metric log, final train state, final params and evaluation as the reference, bit for bit."""
    import jax

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.metrics() == ref.metrics()
    final = checkpoint_steps(ref.workdir)[-1]
    assert checkpoint_steps(run.workdir)[-1] == final
    for sub in ("params", f"checkpoints/{final}/default"):
        a, b = restore(run.workdir / sub), restore(ref.workdir / sub)
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    res, ref_res = (json.loads((r.workdir / "results.json").read_text()) for r in (run, ref))
    for key in ("eval", "final_train_metrics", "steps"):
        assert res[key] == ref_res[key]


SCENARIOS = {  # module, flags, steps, seed of the fault steps
    # SFT smoke: 64 problems, batch 16, 2 epochs = 8 steps. Seed 0: SIGTERM at 4 and SIGKILL at 6, both on
    # checkpoint steps (the kill lands before step 6's save, so a full `EVERY` steps are redone).
    "sft": ("experiments.sft", ["--config=configs/sft/arith.py:warmup,smoke"], 8, 0),
    # RL smoke with 6 steps of 4 prompts x 4 rollouts. Seed 8: SIGTERM at 3, SIGKILL at 5, between saves.
    "rl": ("experiments.rl", ["--config=configs/rl/arith.py:passn4_log,smoke", "--config.steps=6"], 6, 8),
}
EVERY = 2  # checkpoint_every


def session_folder(tmp_path_factory, worker_id: str) -> pathlib.Path:
    """This test session's temporary folder, the same for every pytest-xdist worker."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def once_per_session(tmp_path_factory, worker_id: str, name: str, compute) -> dict:
    """``compute(folder)`` once per test session, even when pytest-xdist spreads this module over workers
    (each worker would otherwise repeat a module-scoped fixture): the first worker computes under a file
    lock in the session's shared temporary folder, the others read its JSON result."""
    if worker_id == "master":
        return compute(tmp_path_factory.mktemp(name))
    shared = session_folder(tmp_path_factory, worker_id) / f"faults_{name}"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "result.json"
        if not done.exists():
            done.write_text(json.dumps(compute(shared)))
        return json.loads(done.read_text())


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def faults(request, tmp_path_factory, worker_id):
    module, flags, steps, seed = SCENARIOS[request.param]

    def compute(folder: pathlib.Path) -> dict:
        cache = session_folder(tmp_path_factory, worker_id) / "faults_jax_cache"  # for both scenarios
        kw = {"steps": steps, "every": EVERY, "root": folder, "cache": cache, "seed": seed}
        return scenario(module, flags, **kw)

    result = once_per_session(tmp_path_factory, worker_id, request.param, compute)
    runs = {k: Run(**(v | {"workdir": pathlib.Path(v["workdir"])})) for k, v in result["runs"].items()}
    return result | {"runs": runs}


@pytest.mark.slow
def test_same_seed_and_config_give_identical_runs(faults):
    runs = faults["runs"]
    assert runs["reference"].returncode == 0, runs["reference"].stderr[-3000:]
    assert runs["reference"].loop == {"resumed_from": 0, "preempted": False, "step": faults["steps"]}
    assert len(runs["reference"].metrics().splitlines()) == faults["steps"]
    assert_same_run(runs["repeat"], runs["reference"])


@pytest.mark.slow
def test_sigterm_saves_and_resume_loses_nothing(faults):
    runs, at = faults["runs"], faults["term_at"]
    term = runs["term"]
    assert term.returncode == 0, term.stderr[-3000:]  # a clean exit, not a crash
    assert term.loop == {"resumed_from": 0, "preempted": True, "step": at}
    assert faults["after"]["term"][-1] == at  # the state at the signal was saved
    assert runs["kill"].returncode == -9
    assert "FAULTS " not in runs["kill"].stdout  # killed inside the loop: no report of its own
    assert f"FAULTS-FIRST {at + 1}\n" in runs["kill"].stdout  # the rerun redid no step
    assert_same_run(runs["resumed"], runs["reference"])


@pytest.mark.slow
def test_sigkill_redoes_only_steps_since_last_checkpoint(faults):
    runs, at, every = faults["runs"], faults["kill_at"], faults["every"]
    last = faults["after"]["kill"][-1]
    assert at - every <= last < at  # a checkpoint every `every` steps; the kill came before step at's save
    assert runs["resumed"].loop["resumed_from"] == last  # so at most `every` steps are redone
    assert_same_run(runs["resumed"], runs["reference"])


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_with_warning(faults):
    run, bad = faults["runs"]["corrupt_resumed"], faults["corrupted"]
    previous = faults["after"]["kill"][-2]
    assert f"checkpoint at step {bad}" in run.stderr and "falling back to an earlier one" in run.stderr
    assert run.loop["resumed_from"] == previous
    assert_same_run(run, faults["runs"]["reference"])


@pytest.mark.parametrize("fault", ["not a directory", "disk full"])
def test_bad_workdir_fails_before_training(tmp_path, fault):
    from cat_jax import train_lib
    from experiments import common, sft

    if fault == "not a directory":
        (tmp_path / "file").write_text("")
        workdir, reason = tmp_path / "file" / "run", os.strerror(errno.ENOTDIR)
    else:  # the workdir's write probe lands on /dev/full: the write fails with ENOSPC, as on a full disk
        workdir, reason = tmp_path / "run", os.strerror(errno.ENOSPC)
        workdir.mkdir()
        (workdir / train_lib.write_probe_name()).symlink_to("/dev/full")
    config = common.load_config("configs/sft/arith.py:warmup,smoke")
    message = rf"workdir '{re.escape(str(workdir))}' is not writable \({reason}\); choose another --workdir"
    with pytest.raises(OSError, match=message):
        sft.run(config, str(workdir))
    assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
