"""Train state, optimizer, checkpoints, preemption, non-finite guard and sharding, on a tiny regression."""

import json
import os
import pathlib
import signal
import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cat_jax import sharding as shd
from cat_jax import train_lib as tl

D = 4


def loss_fn(params, batch, rng):
    pred = batch["x"] @ params["w"] + params["b"]
    # A little step-dependent randomness, so exact resumption also covers the rng fold-in.
    jitter = 1e-3 * jax.random.normal(rng, pred.shape)
    loss = jnp.mean((pred + jitter - batch["y"]) ** 2)
    return loss, {"loss/mse": loss}


def batches(step, size=8):
    rng = np.random.default_rng(step)
    x = rng.normal(size=(size, D)).astype(np.float32)
    return {"x": x, "y": (x @ np.arange(1.0, D + 1.0) + 0.5).astype(np.float32)}


def init_params():
    return {"w": jnp.zeros((D,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


CFG = tl.OptimizerConfig(lr=0.05, schedule="linear", total_steps=6, clip_norm=1.0)
TX = tl.make_optimizer(CFG)
STEP = jax.jit(tl.make_train_step(loss_fn, TX))


def fresh_state():
    return tl.TrainState.create(init_params(), TX, seed=0)


def test_schedules():
    lin = tl.make_schedule(tl.OptimizerConfig(lr=1.0, schedule="linear", total_steps=10, warmup_steps=2))
    np.testing.assert_allclose(
        [lin(0), lin(1), lin(2), lin(6), lin(10)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6
    )
    cos = tl.make_schedule(tl.OptimizerConfig(lr=1.0, schedule="cosine", total_steps=4))
    np.testing.assert_allclose([cos(0), cos(2), cos(4)], [1.0, 0.5, 0.0], atol=1e-6)
    assert tl.make_schedule(tl.OptimizerConfig(lr=0.3))(1000) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "step"}, "schedule must be one of"),
        ({"schedule": "linear", "total_steps": 0}, "needs total_steps > warmup_steps"),
        ({"accum_steps": 0}, r"accum_steps must be an integer in \[>= 1\]|accum_steps"),
        ({"lr": 0.0}, "lr must be > 0"),
    ],
)
def test_optimizer_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tl.OptimizerConfig(**kwargs)


def test_gradient_accumulation_equals_large_batch():
    """Two micro-batches of 4 through MultiSteps = one batch of 8 (mean losses, equal sizes)."""
    big = batches(0)
    halves = [jax.tree.map(lambda a, s=s: a[s], big) for s in (slice(0, 4), slice(4, 8))]
    no_jitter = lambda p, b, r: _mse(p, b)
    tx1 = tl.make_optimizer(tl.OptimizerConfig(lr=0.1, clip_norm=None))
    tx2 = tl.make_optimizer(tl.OptimizerConfig(lr=0.1, clip_norm=None, accum_steps=2))
    s1 = jax.jit(tl.make_train_step(no_jitter, tx1))(tl.TrainState.create(init_params(), tx1, seed=0), big)[0]
    step2 = jax.jit(tl.make_train_step(no_jitter, tx2))  # jitted: two compiles, not one per eager op
    s2 = tl.TrainState.create(init_params(), tx2, seed=0)
    for h in halves:
        s2 = step2(s2, h)[0]
    np.testing.assert_allclose(s1.params["w"], s2.params["w"], rtol=1e-5, atol=1e-7)


def _mse(params, batch):
    loss = jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)
    return loss, {}


def test_resume_after_sigterm_equals_uninterrupted(tmp_path):
    full = tl.train_loop(fresh_state(), STEP, batches, num_steps=6, workdir=tmp_path / "a", progress=False)
    assert not full.preempted

    def preempt_at_3(step, metrics):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    part = tl.train_loop(
        fresh_state(),
        STEP,
        batches,
        num_steps=6,
        workdir=tmp_path / "b",
        progress=False,
        on_step=preempt_at_3,
    )
    assert part.preempted and int(part.state.step) == 3
    rest = tl.train_loop(fresh_state(), STEP, batches, num_steps=6, workdir=tmp_path / "b", progress=False)
    assert rest.resumed_from == 3 and int(rest.state.step) == 6
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(rest.state), strict=True):
        np.testing.assert_array_equal(a, b)
    log_a = (tmp_path / "a" / "metrics.jsonl").read_text()
    log_b = (tmp_path / "b" / "metrics.jsonl").read_text()
    assert log_a == log_b and len(log_a.splitlines()) == 6


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
    ckpt = tl.Checkpointer(tmp_path, keep=3)
    state = fresh_state()
    for step in range(4):
        state, _ = STEP(state, batches(step))
        if step in (1, 3):
            ckpt.save(state)
    assert ckpt.steps() == [2, 4]
    for f in (ckpt.directory / "4").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="step 4 .* unreadable"):
        restored = ckpt.restore(fresh_state())
    assert int(restored.step) == 2
    ckpt.close()


def test_keep_best_by_metric(tmp_path):
    ckpt = tl.Checkpointer(tmp_path, keep=1, best_metric="eval/loss", best_mode="min")
    state = fresh_state()
    for step, value in enumerate([3.0, 1.0, 2.0, 4.0]):
        state, _ = STEP(state, batches(step))
        ckpt.save(state, {"eval/loss": value})
    assert ckpt.steps() == [2, 4]  # the best (step 2, loss 1.0) and the latest
    ckpt.close()


def test_non_finite_loss_stops_with_step_and_keeps_state(tmp_path):
    def poisoned(step):
        b = batches(step)
        if step == 2:
            b["y"][0] = np.nan
        return b

    with pytest.raises(FloatingPointError, match="step 2"):
        tl.train_loop(
            fresh_state(), STEP, poisoned, num_steps=5, workdir=tmp_path, checkpoint_every=1, progress=False
        )
    ckpt = tl.Checkpointer(tmp_path)
    assert ckpt.steps()[-1] == 2
    restored = ckpt.restore(fresh_state())
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(restored.params))


def test_unwritable_workdir_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="is not writable"):
        tl.train_loop(fresh_state(), STEP, batches, num_steps=1, workdir=blocker / "run", progress=False)


def test_metric_writer_truncates_on_resume(tmp_path):
    w = tl.MetricWriter(tmp_path)
    for s in range(1, 5):
        w.write(s, {"loss": jnp.float32(s)})
    w = tl.MetricWriter(tmp_path, resume_step=2)
    assert [r["step"] for r in w.read()] == [1, 2]
    assert json.loads(pathlib.Path(w.path).read_text().splitlines()[0]) == {"step": 1, "loss": 1.0}


@pytest.mark.parametrize("fsdp", [1, 2])
def test_mesh_step_equals_single_device(fsdp):
    mesh = shd.make_mesh(8, fsdp=fsdp)
    assert mesh.devices.shape == (8 // fsdp, fsdp)
    single = STEP(fresh_state(), batches(0))[0]
    state = fresh_state()
    state = state.replace(
        params=shd.place(state.params, shd.param_shardings(state.params, mesh, fsdp=True, min_size=4))
    )
    sharded = STEP(state, shd.shard_batch(batches(0), mesh))[0]
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mesh_errors():
    with pytest.raises(ValueError, match="fsdp=3 must divide"):
        shd.make_mesh(8, fsdp=3)
    with pytest.raises(ValueError, match="divisible by the 8 devices"):
        shd.shard_batch({"x": np.zeros((6, 2))}, shd.make_mesh(8))


def test_step_rng_depends_on_seed_and_step_only():
    s = fresh_state()
    k1 = s.step_key()
    k2 = s.replace(step=s.step + 1).step_key()
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
    np.testing.assert_array_equal(jax.random.key_data(fresh_state().step_key()), jax.random.key_data(k1))
    assert isinstance(tl.make_optimizer(CFG), optax.GradientTransformation)


def test_eval_fn_runs_at_start_every_k_and_end(tmp_path):
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {"w_norm": jnp.sum(state.params["w"] ** 2)}

    tl.train_loop(
        fresh_state(),
        STEP,
        batches,
        num_steps=5,
        workdir=tmp_path,
        progress=False,
        eval_every=2,
        eval_fn=eval_fn,
    )
    assert calls == [0, 2, 4, 5]
    records = [r for r in tl.read_metrics(tmp_path) if "eval/w_norm" in r]
    assert [r["step"] for r in records] == [0, 2, 4, 5]
    with pytest.raises(ValueError, match="eval_fn"):
        tl.train_loop(fresh_state(), STEP, batches, num_steps=1, workdir=tmp_path / "b", eval_every=1)


def test_only_process_0_writes_the_metric_log(tmp_path, monkeypatch):
    """Faked as process 1 of a multi-process run, a MetricWriter creates, truncates and writes nothing."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 2.0}\n')
    monkeypatch.setattr(jax, "process_index", lambda *args, **kwargs: 1)
    assert not tl.is_writer()
    w = tl.MetricWriter(tmp_path, resume_step=1)  # process 0 would truncate the log to step 1
    w.write(2, {"loss": jnp.float32(3.0)})
    w.close()
    assert not w.active and not w.tensorboard
    assert w.read() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]  # process 0's log, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
    w = tl.MetricWriter(tmp_path / "new")
    w.write(1, {"loss": 1.0})
    assert not (tmp_path / "new").exists()


def test_train_loop_off_process_0_writes_only_checkpoints(tmp_path, monkeypatch, capsys):
    """Every process trains, evaluates and checkpoints; only process 0 logs and shows progress.

    ``is_writer`` is faked rather than ``jax.process_index``: Orbax asks ``jax.process_index`` too, and a lone
    process told it is process 1 would wait forever for a process 0 to finish its checkpoints.
    """
    monkeypatch.setattr(tl.metrics, "is_writer", lambda: False)
    calls = []
    run = tl.train_loop(
        fresh_state(),
        STEP,
        batches,
        num_steps=4,
        workdir=tmp_path,
        checkpoint_every=2,
        progress=True,
        eval_every=2,
        eval_fn=lambda state: calls.append(int(state.step)) or {"w_norm": jnp.sum(state.params["w"] ** 2)},
    )
    assert calls == [0, 2, 4] and run.metrics["loss/total"] > 0  # evaluations still run: they are collective
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""  # no progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]
    assert tl.Checkpointer(tmp_path).steps() == [2, 4]
    resumed = tl.train_loop(fresh_state(), STEP, batches, num_steps=4, workdir=tmp_path, progress=False)
    assert resumed.resumed_from == 4
    for a, b in zip(jax.tree.leaves(run.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("metrics.jsonl")) and not list(tmp_path.glob("events.*"))


def _masked_crc32c(data: bytes) -> int:
    from tensorboardX.crc32c import crc32c

    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tensorboard_scalars(workdir) -> tuple[dict[str, list[tuple[int, float]]], int]:
    """Scalars per tag as TensorBoard reads them: files in name order, TFRecord framing with CRCs checked,
    and a ``SessionLog.START`` at step s dropping earlier events at steps >= s. Also returns how many
    scalar events were read before purging."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto import event_pb2

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    series: dict[str, list[tuple[int, float]]] = {}
    raw = 0
    for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos : pos + 8]
            (n,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == _masked_crc32c(header)
            payload = data[pos + 12 : pos + 12 + n]
            assert struct.unpack("<I", data[pos + 12 + n : pos + 16 + n])[0] == _masked_crc32c(payload)
            pos += 16 + n
            event = event_pb2.Event.FromString(payload)
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                series = {k: [(s, v) for s, v in pts if s < event.step] for k, pts in series.items()}
            for value in event.summary.value:
                series.setdefault(value.tag, []).append((event.step, value.simple_value))
                raw += 1
    return series, raw


def test_tensorboard_scalars_match_jsonl_and_resume_purges_duplicates(tmp_path):
    """Crashes after a step was logged but not checkpointed: at step 5 (last checkpoint 4) and at step 1 (no
    checkpoint, so the rerun starts afresh and evaluates step 0 again). After the reruns, the JSON log and the
    TensorBoard scalars (read with TensorBoard's purge rule) equal an uninterrupted run's: nothing twice."""
    eval_fn = lambda state: {"w_norm": jnp.sum(state.params["w"] ** 2)}
    run = lambda workdir, **kw: tl.train_loop(
        fresh_state(),
        STEP,
        batches,
        num_steps=6,
        workdir=workdir,
        progress=False,
        eval_every=2,
        eval_fn=eval_fn,
        **kw,
    )

    def crash_at(n):
        def on_step(step, metrics):
            if step == n:
                raise KeyboardInterrupt("simulated crash")

        return on_step

    full = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", checkpoint_every=4, on_step=crash_at(5))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "c", on_step=crash_at(1))
    assert run(tmp_path / "b").resumed_from == 4 and run(tmp_path / "c").resumed_from == 0
    restored = tl.Checkpointer(tmp_path / "b").restore(fresh_state())
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)

    logs = {d: tl.read_metrics(tmp_path / d) for d in "abc"}
    assert [r["step"] for r in logs["a"]] == [0, 1, 2, 2, 3, 4, 4, 5, 6, 6]  # eval records at 0, 2, 4, 6
    assert logs["a"] == logs["b"] == logs["c"]

    tb = {d: read_tensorboard_scalars(tmp_path / d) for d in "abc"}
    assert all(len(list((tmp_path / d).glob("events.out.tfevents.*"))) == 2 for d in "bc")
    train_tags = {k for k in logs["a"][1] if k != "step"}
    assert set(tb["a"][0]) == train_tags | {"eval/w_norm"} and "loss/total" in train_tags
    for tag, points in tb["a"][0].items():
        assert points == [(r["step"], pytest.approx(r[tag], rel=1e-6)) for r in logs["a"] if tag in r], tag
    assert tb["a"][0] == tb["b"][0] == tb["c"][0]
    # What the purge marker hid: step 5's train scalars in b; step 0's eval and step 1's train scalars in c.
    assert tb["b"][1] == tb["a"][1] + len(train_tags)
    assert tb["c"][1] == tb["a"][1] + 1 + len(train_tags)


def test_metric_writer_without_tensorboardx_writes_jsonl_only(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX` raise ImportError
    w = tl.MetricWriter(tmp_path)
    w.write(1, {"loss": jnp.float32(0.5)})
    assert not w.tensorboard and w.read() == [{"step": 1, "loss": 0.5}]
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    monkeypatch.undo()
    off = tl.MetricWriter(tmp_path / "off", tensorboard=False)
    off.write(1, {"loss": 1.0})
    assert not off.tensorboard and not list((tmp_path / "off").glob("events.*"))
    on = tl.MetricWriter(tmp_path / "on")
    on.write(1, {"loss": 1.0, "hist": [1.0, 2.0], "ok": True})
    on.close()
    assert on.tensorboard and read_tensorboard_scalars(tmp_path / "on")[0] == {
        "loss": [(1, 1.0)],
        "ok": [(1, 1.0)],
    }


def test_stop_fn_ends_the_run_at_a_target_and_a_rerun_keeps_it(tmp_path):
    """stop_fn on the evaluation metrics ends training early; resuming from that checkpoint stops again."""
    state = tl.TrainState.create(init_params(), TX, seed=0)
    calls = []

    def eval_fn(s):
        calls.append(int(s.step))
        return {"step": float(s.step)}

    kwargs = dict(num_steps=10, workdir=tmp_path, checkpoint_every=100, progress=False, eval_every=2)
    out = tl.train_loop(state, STEP, batches, eval_fn=eval_fn, stop_fn=lambda m: m["step"] >= 4, **kwargs)
    assert out.stopped_at == 4 and int(out.state.step) == 4 and calls == [0, 2, 4]
    again = tl.train_loop(state, STEP, batches, eval_fn=eval_fn, stop_fn=lambda m: m["step"] >= 4, **kwargs)
    assert again.stopped_at == 4 and int(again.state.step) == 4 and again.resumed_from == 4
