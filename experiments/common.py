"""Glue shared by the experiment modules: config loading, ConfigDict -> typed dataclass conversion, mesh and
parameter placement, :func:`task_data` (a config's task through the library's one data path), and
:func:`run_phase`, the one "train a phase, then evaluate it" of every training run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cat_jax import evaluation, reporting, sampling, sharding, train_lib
from cat_jax.models import llama
from cat_jax.tasks import task_data as task_data_lib
from cat_jax.tasks.task_data import TaskData


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Load ``path/to/config.py[:arg]`` like ``--config`` does and apply dotted ``overrides``.

    The config is locked, so an override naming a field that does not exist raises ``KeyError`` listing the
    valid fields before anything runs.
    """
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist (expected e.g. configs/sft/passn.py)")
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    for key, value in (overrides or {}).items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"config has no field {key!r}; valid fields here: {sorted(node.keys())}")
        node[leaf] = value
    return config


def optimizer_config(opt: ml_collections.ConfigDict, *, total_steps: int) -> train_lib.OptimizerConfig:
    """``config.opt`` -> :class:`cat_jax.train_lib.OptimizerConfig` (the library never sees a ConfigDict)."""
    return train_lib.OptimizerConfig(
        lr=float(opt.lr),
        schedule=str(opt.schedule),
        total_steps=int(total_steps),
        warmup_steps=int(opt.get("warmup_steps", 0)),
        weight_decay=float(opt.get("weight_decay", 0.0)),
        clip_norm=None if opt.get("clip_norm") is None else float(opt.clip_norm),
        accum_steps=int(opt.get("accum_steps", 1)),
    )


def model_config(config: ml_collections.ConfigDict, data: TaskData) -> llama.LlamaConfig:
    """``config.model`` (overrides of ``LlamaConfig.tiny``) with the task's vocabulary."""
    return llama.LlamaConfig.tiny(vocab_size=data.vocab_size, **config.model.to_dict())


def parse_schedule(spec: str, default: int) -> list[tuple[int, int]]:
    """A schedule field (``config.n_schedule``) -> points: ``"0:4,100:16"`` -> ``[(0, 4), (100, 16)]``.

    The value holds from each start step on; ``""`` -> the constant ``default``.
    """
    if not spec:
        return [(0, int(default))]
    points = []
    for item in spec.split(","):
        start, sep, value = item.partition(":")
        if not sep or not start.strip().isdigit() or not value.strip().isdigit():
            raise ValueError(f"schedule must look like '0:4,100:16' (step:value, ...), got {spec!r}")
        points.append((int(start), int(value)))
    points.sort()
    if points[0][0] != 0:
        raise ValueError(f"schedule must start at step 0, got {spec!r}")
    return points


def value_at(schedule: list[tuple[int, int]], step: int) -> int:
    return [v for s, v in schedule if s <= step][-1]


# ----------------------------------------------------------------------------- mesh and parameters


def make_mesh(cfg: ml_collections.ConfigDict):
    """``config.mesh`` -> a ``(data, fsdp)`` mesh, or None for a plain single-device run (``devices = 1``)."""
    devices = int(cfg.devices)
    if devices == 1 and int(cfg.fsdp) == 1:
        return None
    return sharding.make_mesh(None if devices == 0 else devices, fsdp=int(cfg.fsdp))


def place_params(params, mesh, cfg: ml_collections.ConfigDict):
    """Parameters on the mesh: replicated, or FSDP-sharded when ``cfg.fsdp > 1``."""
    if mesh is None:
        return params
    return sharding.place(params, sharding.param_shardings(params, mesh, fsdp=int(cfg.fsdp) > 1))


def sharded_batches(batches, mesh):
    """``batches(step)`` with every array split over the mesh devices along axis 0 (identity without one)."""
    if mesh is None:
        return batches
    return lambda step: sharding.shard_batch(jax.tree.map(np.asarray, batches(step)), mesh)


def save_params(workdir: str | pathlib.Path, params) -> pathlib.Path:
    """Final parameters of a run in ``workdir/params`` (what ``init_from`` of a later phase loads)."""
    path = (pathlib.Path(workdir) / "params").absolute()
    if path.exists():
        return path
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)
    return path


def load_params(workdir: str | pathlib.Path, template):
    """Parameters saved by :func:`save_params` in ``workdir``, shaped like ``template``."""
    path = (pathlib.Path(workdir) / "params").absolute()
    if not path.exists():
        raise FileNotFoundError(
            f"init_from={str(workdir)!r} has no params/ (run that phase to the end first)"
        )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path, abstract)


# ----------------------------------------------------------------------------- the phase runner


class Phase(NamedTuple):
    """What an experiment builds its training from: the task, the model, its starting parameters."""

    data: TaskData
    model_cfg: llama.LlamaConfig
    apply: Any  # the model's logits function (hashable: jit-static)
    params: Any  # seeded init, or ``config.init_from``'s final parameters; already on the mesh


class Training(NamedTuple):
    """What :func:`run_phase` trains: state, ``step(state, batch) -> (state, metrics)``, ``batches(step)``."""

    state: train_lib.TrainState
    step: Callable
    batches: Callable[[int], Any]
    num_steps: int


def run_phase(
    config: ml_collections.ConfigDict, workdir: str, build: Callable[[Phase], Training], **extra_report
) -> dict:
    """Train one phase, then evaluate it: the body of every training experiment's ``run``.

    Builds ``config.task``'s data and ``config.model`` (init seeded by ``config.seed``), loads
    ``config.init_from``'s final parameters when set, places them on ``config.mesh``; ``build`` turns that
    :class:`Phase` into the experiment's :class:`Training`. Then the loop (auto-resume from ``workdir``), the
    final parameters in ``workdir/params``, the sampled evaluation (:func:`evaluate`) and ``results.json``
    (with ``extra_report``). ``config.curve_every > 0`` also logs the exact held-out pass@k
    (:func:`cat_jax.evaluation.exact_pass_at_k` at every ``config.curve_temperatures``) every that many
    steps: the learning curve of the early-stopping control.
    """
    started = time.perf_counter()
    data = task_data(config.task)
    model_cfg = model_config(config, data)
    graphdef, params = llama.init(model_cfg, jax.random.key(int(config.seed)))
    if config.init_from:
        params = load_params(config.init_from, params)
    mesh = make_mesh(config.mesh)
    params = place_params(params, mesh, config.mesh)
    apply = llama.decoder(graphdef)
    training = build(Phase(data, model_cfg, apply, params))

    curve_every = int(config.get("curve_every", 0))
    temperatures = list(config.get("curve_temperatures", [1.0]))
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    held_out = (data.eval.prompts, data.eval.lengths, data.eval.targets, data.eval.target_lengths)
    eval_fn = lambda s: evaluation.exact_pass_at_k(
        apply, s.params, *held_out, temperatures=temperatures, ks=ks, pad_id=data.pad_id
    )
    result = train_lib.train_loop(
        training.state,
        training.step,
        sharded_batches(training.batches, mesh),
        num_steps=training.num_steps,
        workdir=workdir,
        checkpoint_every=int(config.checkpoint_every),
        log_every=int(config.log_every),
        progress=bool(config.progress),
        eval_every=curve_every,
        eval_fn=eval_fn if curve_every else None,
    )
    train_seconds = time.perf_counter() - started
    if result.preempted:
        return {"preempted": True, "step": int(result.state.step)}
    done = pathlib.Path(workdir) / "results.json"
    if result.resumed_from == training.num_steps and done.exists():
        return json.loads(done.read_text())  # a finished phase: its report stands (no second evaluation)
    save_params(workdir, result.state.params)
    report = evaluate(apply, result.state.params, model_cfg, data, config.eval)
    report.update(
        steps=training.num_steps,
        train_seconds=round(train_seconds, 1),
        final_train_metrics=result.metrics,
        num_params=model_cfg.num_params(),
        **extra_report,
    )
    reporting.write_json(pathlib.Path(workdir) / "results.json", report)
    return report


def sample_and_score(
    apply,
    params,
    model_cfg,
    data: TaskData,
    cfg: ml_collections.ConfigDict,
    *,
    temperature: float | None = None,
) -> evaluation.Scored:
    """Sample ``cfg.num_samples`` completions per held-out prompt and score them into ``[B, N]`` arrays."""
    sample_cfg = sampling.SampleConfig(
        num_samples=int(cfg.num_samples),
        max_new_tokens=int(data.max_new_tokens),
        temperature=float(cfg.temperature if temperature is None else temperature),
        chunk=int(cfg.chunk),
    )
    tokens, mask = evaluation.generate(
        apply,
        params,
        functools.partial(llama.init_cache, model_cfg),
        data.eval.prompts,
        data.eval.lengths,
        jax.random.key(int(cfg.seed)),
        sample_cfg,
        stop_tokens=data.stop_tokens,
        pad_id=data.pad_id,
    )
    return data.score(tokens, mask)


def evaluate(apply, params, model_cfg, data: TaskData, cfg: ml_collections.ConfigDict) -> dict:
    """Exact pass@k / maj@k curves (mean, SE over held-out problems) of one model, as a JSON-ready dict."""
    scored = sample_and_score(apply, params, model_cfg, data, cfg)
    ks = [k for k in cfg.ks if k <= int(cfg.num_samples)]
    curves = evaluation.curves(scored, ks)
    return {
        "eval": {name: evaluation.curve_record(c) for name, c in curves.items()},
        "eval_problems": int(scored.correct.shape[0]),
        "eval_samples": int(scored.correct.shape[1]),
        "distinct_answers_per_problem": float(np.mean([len(set(r)) for r in np.asarray(scored.answer_ids)])),
    }


def task_data(cfg: ml_collections.ConfigDict) -> TaskData:
    """The task named ``cfg.name`` (``multiply``, ``modular_chain``), prepared in ``cfg.data_dir`` once."""
    if cfg.name not in task_data_lib.TASKS:
        raise ValueError(f"task.name must be one of {sorted(task_data_lib.TASKS)}, got {cfg.name!r}")
    fields = ("digits", "num_train", "num_eval", "seed", "steps", "modulus", "max_operand")
    task = task_data_lib.ArithmeticTask(str(cfg.name), **{f: int(cfg[f]) for f in fields})
    return task_data_lib.load(task, data_dir=cfg.get("data_dir") or None)
