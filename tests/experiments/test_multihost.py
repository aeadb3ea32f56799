"""Multi-host runs (issue 16) on one machine: 2 processes x 2 CPU devices, one ``jax.distributed`` run over a
localhost coordinator (gloo CPU collectives), against 1 process x 4 devices, on the paper's own setting (the
MATH smoke configs with a tiny Hugging Face checkpoint).

* SFT (full fine-tuning, FSDP over all 4 devices: the parameters are sharded across the two hosts) and RL
  (LoRA, a (data 2, fsdp 2) mesh: the data axis spans the hosts, the MATH verifier a host callback): the same
  loss curve, final parameters and sampled evaluation; one metric log, written by process 0 alone;
* the 2-process checkpoint restores in 1 process onto another mesh (resharded), and both processes wrote
  their shards of it;
* SIGTERM to process 1 mid-run stops both after the same step; SIGKILL later leaves the last complete
  checkpoint usable; relaunching resumes to the uninterrupted run's final parameters, bit for bit.

The agreement figures and wall times are printed (``pytest -s``).
"""

import json
import pathlib
import re
import signal
import sys
import time

import jax
import numpy as np
import pytest

from cat_jax import testing, train_lib
from experiments import common, rl, sft

pytestmark = pytest.mark.slow  # five 2-process runs and two 1-process runs: make test-slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
SFT_SPEC = "configs/sft/math.py:passn_warmup,smoke"
RL_SPEC = "configs/rl/math.py:maj4_raw,smoke"  # the all-wrong penalty: non-zero updates from a random policy
# Full fine-tuning with FSDP over every device (the 64 x 256 MLP matrices are split across the two hosts),
# 6 epochs of 2 steps, a learning rate that moves the parameters, a checkpoint every 4 steps.
SFT_OVERRIDES = {
    "model.lora.rank": 0,
    "mesh.fsdp": 4,
    "epochs": 6.0,
    "opt.lr": 1e-3,
    "checkpoint_every": 4,
}
# LoRA on a (data 2, fsdp 2) mesh; 4 prompts per step (one per device, each group whole on one process).
RL_OVERRIDES = {"mesh.fsdp": 2, "prompts_per_step": 4, "opt.lr": 1e-3}
SFT_STEPS = 12
TOL = {"rtol": 1e-5, "atol": 1e-6}
# Parameters after Adam steps: an element whose gradient is near 0 moves by lr * g / sqrt(v), so a last-bit
# difference of g between the collectives' summation orders (gloo across processes, XLA's within one) can
# move it by a visible fraction of lr (measured: 1.8e-5 at lr 1e-3 after 12 steps, 1 element in 16,384).
PARAM_TOL = {"rtol": 1e-5, "atol": 1e-4}

# experiments.sft with every step slowed down (so a signal lands mid-run), for the preemption test only.
SLOW_SFT = """
import sys, time
from experiments import cli, common, sft

pause = float(sys.argv.pop(1))
with_frozen_step = common.with_frozen_step

def slowed(step, frozen):
    inner = with_frozen_step(step, frozen)
    def run(state, batch):
        time.sleep(pause)
        return inner(state, batch)
    return run

common.with_frozen_step = slowed
cli.program(sft.run)
"""


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    testing.write_math_jsonl(root / "math", num_train=24, num_test=8)
    testing.write_checkpoint(root / "llama", "llama", hidden_size=64, intermediate_size=256)
    return root


def _overrides(setting, extra: dict) -> dict:
    return {"model.checkpoint": str(setting / "llama"), "task.manual_dir": str(setting / "math"), **extra}


def _one_process(module, spec, setting, workdir, extra) -> dict:
    """The reference: this (pytest) process, 4 of its devices."""
    config = common.load_config(spec, _overrides(setting, {**extra, "mesh.devices": 4}))
    return module.run(config, str(workdir))


def _argv(module: str, spec: str, setting, workdir, extra: dict, program: list[str] | None = None) -> list:
    flags = [f"--config.{k}={v}" for k, v in _overrides(setting, {**extra, "mesh.devices": 0}).items()]
    head = program or ["-m", module]
    return [sys.executable, *head, f"--config={spec}", *flags, f"--workdir={workdir}"]


def _two_processes(module, spec, setting, workdir, extra, **kwargs) -> tuple[list, float]:
    started = time.perf_counter()
    runs = testing.launch(_argv(module, spec, setting, workdir, extra), cwd=ROOT, timeout=600, **kwargs)
    for r in runs:
        assert r.returncode == 0, f"process {r.process_id} failed:\n{r.stderr[-4000:]}"
    return runs, time.perf_counter() - started


def _curve(workdir) -> tuple[list[int], np.ndarray]:
    records = [r for r in train_lib.read_metrics(workdir) if "loss/total" in r]
    return [r["step"] for r in records], np.array([r["loss/total"] for r in records])


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def _params(spec, setting, extra, workdir):
    """``workdir/params`` restored in this one process, single-device (a 4-way FSDP save, resharded)."""
    config = common.load_config(spec, _overrides(setting, {**extra, "mesh.devices": 1, "mesh.fsdp": 1}))
    policy, _ = common.policy_and_data(config)
    return jax.tree.leaves(common.load_params(workdir, policy.params))


def _check_one_writer(workdir, runs, steps: int) -> None:
    """One metric log, written by process 0 alone: each step once, one TensorBoard file, one summary."""
    logged, _ = _curve(workdir)
    assert logged == list(range(1, steps + 1))
    assert len(list(pathlib.Path(workdir).glob("events.out.tfevents.*"))) <= 1
    assert "eval_problems" in runs[0].stdout and "eval_problems" not in runs[1].stdout
    assert "[process 1/2]" in runs[1].stderr and "[process 0/2]" in runs[0].stderr


@pytest.fixture(scope="module")
def sft_runs(setting, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    one = _one_process(sft, SFT_SPEC, setting, root / "one", SFT_OVERRIDES)
    runs, seconds = _two_processes("experiments.sft", SFT_SPEC, setting, root / "two", SFT_OVERRIDES)
    print(f"\n2-process SFT smoke: {seconds:.1f} s wall")
    return root, one, runs


def test_sft_two_processes_match_one(setting, sft_runs):
    root, one, runs = sft_runs
    two = json.loads((root / "two" / "results.json").read_text())
    steps_one, loss_one = _curve(root / "one")
    steps_two, loss_two = _curve(root / "two")
    assert steps_one == steps_two == list(range(1, SFT_STEPS + 1))
    params_one = _params(SFT_SPEC, setting, SFT_OVERRIDES, root / "one")
    params_two = _params(SFT_SPEC, setting, SFT_OVERRIDES, root / "two")
    print(
        f"SFT 2 vs 1 process: max |loss diff| {np.max(np.abs(loss_one - loss_two)):.3g}, "
        f"max |param diff| {_max_diff(params_one, params_two):.3g}"
    )
    np.testing.assert_allclose(loss_two, loss_one, **TOL)
    for a, b in zip(params_two, params_one, strict=True):
        np.testing.assert_allclose(a, b, **PARAM_TOL)
    assert two["eval"] == one["eval"]  # evaluation sampled across both processes, gathered: the same samples
    _check_one_writer(root / "two", runs, SFT_STEPS)


def test_two_process_checkpoint_restores_resharded_in_one_process(setting, sft_runs):
    """The 2-process training checkpoint (FSDP over 4 devices on 2 hosts) restores in this process onto a
    2-device FSDP mesh: the same state as the 1-process run's checkpoint, placed on the new shardings."""
    root, _, _ = sft_runs
    config = common.load_config(
        SFT_SPEC, _overrides(setting, {**SFT_OVERRIDES, "mesh.devices": 2, "mesh.fsdp": 2})
    )
    mesh = common.make_mesh(config.mesh)
    policy, _ = common.policy_and_data(config, mesh)
    tx = train_lib.make_optimizer(common.optimizer_config(config.opt, total_steps=SFT_STEPS))
    template = common.place_state(train_lib.TrainState.create(policy.params, tx, seed=0), mesh)
    restored = {}
    for run in ("one", "two"):
        checkpointer = train_lib.Checkpointer(root / run)
        assert checkpointer.steps()[-1] == SFT_STEPS
        restored[run] = checkpointer.restore(template)
        checkpointer.close()
    assert int(restored["two"].step) == SFT_STEPS
    sharded = [
        (x.sharding, t.sharding)
        for x, t in zip(jax.tree.leaves(restored["two"]), jax.tree.leaves(template), strict=True)
    ]
    assert all(s == t for s, t in sharded)
    assert any(not s.is_fully_replicated for s, _ in sharded)  # FSDP-split leaves among them
    for a, b in zip(jax.tree.leaves(restored["two"]), jax.tree.leaves(restored["one"]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **PARAM_TOL)
    # Saved from the shards: each process wrote its own part of the checkpoint.
    saved = root / "two" / "checkpoints" / str(SFT_STEPS) / "default"
    for process in (0, 1):
        assert any((saved / f"ocdbt.process_{process}" / "d").iterdir())


def test_rl_two_processes_match_one(setting, tmp_path):
    """From a 1-process LoRA warm-up (restored by both processes onto the 2-host mesh), RL on both layouts."""
    warmup = common.load_config("configs/sft/math.py:rl_maj_warmup,smoke", _overrides(setting, {}))
    sft.run(warmup, str(tmp_path / "warmup"))
    extra = {**RL_OVERRIDES, "init_from": str(tmp_path / "warmup")}
    one = _one_process(rl, RL_SPEC, setting, tmp_path / "one", extra)
    runs, seconds = _two_processes("experiments.rl", RL_SPEC, setting, tmp_path / "two", extra)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    steps_one, loss_one = _curve(tmp_path / "one")
    steps_two, loss_two = _curve(tmp_path / "two")
    assert steps_one == steps_two == [1, 2] and np.all(loss_one != 0)
    params_one = _params(RL_SPEC, setting, RL_OVERRIDES, tmp_path / "one")
    params_two = _params(RL_SPEC, setting, RL_OVERRIDES, tmp_path / "two")
    assert _max_diff(params_two, _params(RL_SPEC, setting, RL_OVERRIDES, tmp_path / "warmup")) > 0
    print(
        f"\n2-process RL smoke: {seconds:.1f} s wall; "
        f"max |loss diff| {np.max(np.abs(loss_one - loss_two)):.3g}, "
        f"max |param diff| {_max_diff(params_one, params_two):.3g}"
    )
    np.testing.assert_allclose(loss_two, loss_one, **TOL)
    for a, b in zip(params_two, params_one, strict=True):
        np.testing.assert_allclose(a, b, **PARAM_TOL)
    assert two["eval"] == one["eval"]
    _check_one_writer(tmp_path / "two", runs, 2)


def _wait_for_step(workdir, step: int, procs, timeout: float = 300.0) -> None:
    """Until process 0 has logged ``step`` (or fail, killing the processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logged, _ = _curve(workdir)
        if logged and logged[-1] >= step:
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    runs = testing.wait_processes(procs, timeout=1)
    pytest.fail(f"step {step} was not reached:\n" + "\n".join(r.stderr[-3000:] for r in runs))


def test_sigterm_stops_every_process_and_relaunch_resumes(setting, sft_runs, tmp_path):
    """SIGTERM to process 1 -> both stop after the same step with its checkpoint; a relaunch is SIGKILLed
    later -> its last complete checkpoint stands; the final relaunch ends with the uninterrupted 2-process
    run's parameters exactly (and the 1-process run's loss curve)."""
    root, _, _ = sft_runs
    workdir = tmp_path / "run"
    slow = _argv("experiments.sft", SFT_SPEC, setting, workdir, SFT_OVERRIDES, ["-c", SLOW_SFT, "0.5"])

    procs = testing.start_processes(slow, cwd=ROOT)
    _wait_for_step(workdir, 2, procs)
    procs[1].send_signal(signal.SIGTERM)
    runs = testing.wait_processes(procs, timeout=300)
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr[-3000:]
    stopped = [re.findall(r"process (\d): preempted \((.*?)\) after step (\d+)", r.stderr) for r in runs]
    assert stopped[0][0][:2] == ("0", "a signal to another process")
    assert stopped[1][0][:2] == ("1", f"signal {int(signal.SIGTERM)} here")
    step = int(stopped[0][0][2])
    assert int(stopped[1][0][2]) == step and 2 <= step < SFT_STEPS
    assert f"'preempted': True, 'step': {step}" in runs[0].stdout
    assert step in train_lib.Checkpointer(workdir).steps()
    print(f"\nSIGTERM to process 1: both processes stopped after step {step}")

    # Relaunch, then SIGKILL process 1 after the step-8 checkpoint (and the blocked process 0 with it).
    procs = testing.start_processes(slow, cwd=ROOT)
    _wait_for_step(workdir, 9, procs)
    procs[1].kill()
    time.sleep(1.0)
    procs[0].kill()
    testing.wait_processes(procs, timeout=60)
    checkpointer = train_lib.Checkpointer(workdir)
    last = checkpointer.steps()[-1]
    checkpointer.close()
    assert 8 <= last < SFT_STEPS

    runs, _ = _two_processes("experiments.sft", SFT_SPEC, setting, workdir, SFT_OVERRIDES)
    logged, loss = _curve(workdir)
    assert logged == list(range(1, SFT_STEPS + 1))  # resumed runs rewrite only what came after the restore
    np.testing.assert_allclose(loss, _curve(root / "one")[1], **TOL)
    resumed = _params(SFT_SPEC, setting, SFT_OVERRIDES, workdir)
    uninterrupted = _params(SFT_SPEC, setting, SFT_OVERRIDES, root / "two")
    print(f"resumed vs uninterrupted 2-process run: max |param diff| {_max_diff(resumed, uninterrupted):.3g}")
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)
