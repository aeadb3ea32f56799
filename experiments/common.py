"""Glue shared by the experiment modules: config loading, ConfigDict -> typed dataclass conversion, flags."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cat_jax import evaluation, plurality, sampling, sharding, train_lib
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


def parse_schedule(spec: str, default: int) -> list[tuple[int, int]]:
    """``"0:4,100:16"`` -> ``[(0, 4), (100, 16)]`` (value from each start step on); ``""`` -> constant."""
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


def scheduled_step(make_step, schedule: list[tuple[int, int]], *, metric: str):
    """A host-side step that jits ``make_step(value)`` once per scheduled value and dispatches on the step."""
    compiled = {}

    def step(state, batch):
        value = value_at(schedule, int(jax.device_get(state.step)))
        if value not in compiled:
            compiled[value] = jax.jit(make_step(value), donate_argnums=0)
        state, metrics = compiled[value](state, batch)
        return state, {**metrics, metric: value}

    return step


def train_then_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    state: train_lib.TrainState,
    step,
    batches,
    num_steps: int,
    apply,
    model_cfg,
    data: TaskData,
    started: float,
    **extra_report,
) -> dict:
    """The shared tail of every training experiment: loop (auto-resume), final params, evaluation, JSON.

    ``config.curve_every > 0`` also logs the exact held-out pass@k (:func:`exact_pass_at_k` at every
    ``config.curve_temperatures``) every that many steps: the learning curve of the early-stopping control.
    """
    curve_every = int(config.get("curve_every", 0))
    temperatures = list(config.get("curve_temperatures", [1.0]))
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    eval_fn = lambda s: exact_pass_at_k(apply, s.params, data, temperatures=temperatures, ks=ks)
    result = train_lib.train_loop(
        state,
        step,
        batches,
        num_steps=num_steps,
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
    save_params(workdir, result.state.params)
    report = evaluate(apply, result.state.params, model_cfg, data, config.eval)
    report.update(
        steps=num_steps,
        train_seconds=round(train_seconds, 1),
        final_train_metrics=result.metrics,
        num_params=model_cfg.num_params(),
        **extra_report,
    )
    write_json(pathlib.Path(workdir) / "results.json", report)
    return report


def write_json(path: str | pathlib.Path, payload: Any) -> pathlib.Path:
    """Write ``payload`` as indented JSON, creating parent folders."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


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
    sample_cfg = evaluation.SampleConfig(
        num_samples=int(cfg.num_samples),
        max_new_tokens=int(data.max_new_tokens),
        temperature=float(cfg.temperature if temperature is None else temperature),
        chunk=int(cfg.chunk),
    )
    tokens, mask = evaluation.generate(
        apply,
        params,
        functools.partial(llama.init_cache, model_cfg),
        data.eval_prompts,
        data.eval_lengths,
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


def exact_pass_at_k(
    apply, params, data: TaskData, *, temperatures, ks, split: str = "eval"
) -> dict[str, float]:
    r"""Noise-free expected pass@k from one teacher-forced forward pass (EXPERIMENTS.md, cross-check metric).

    With temperature-``T`` sampling, no truncation and exact-match answers, a problem whose answer + EOS has
    probability :math:`p_i` under ``softmax(logits / T)`` is solved by ``k`` samples with probability
    :math:`1 - (1 - p_i)^k`; the mean over problems is the exact expected pass@k. Returns
    ``{"T<t>/pass@<k>": mean, "T<t>/pass@<k>_se": SE over problems, "T<t>/log_p": mean log p_i}``.
    """
    prompts, lengths = getattr(data, f"{split}_prompts"), getattr(data, f"{split}_lengths")
    targets, tlens = getattr(data, f"{split}_targets"), getattr(data, f"{split}_target_lengths")
    log_p = np.asarray(
        _teacher_forced_log_p(
            apply,
            params,
            prompts,
            lengths,
            targets,
            tlens,
            jnp.asarray(temperatures, jnp.float32),
            data.pad_id,
        )
    )  # [T, B]
    out = {}
    for t, lp in zip(temperatures, log_p, strict=True):
        tag = f"T{float(t):g}"
        out[f"{tag}/log_p"] = float(np.mean(lp))
        for k in ks:
            solved = -np.expm1(k * np.log1p(-np.exp(np.minimum(lp, 0.0))))
            out[f"{tag}/pass@{k}"] = float(np.mean(solved))
            out[f"{tag}/pass@{k}_se"] = float(np.std(solved, ddof=1) / np.sqrt(len(solved)))
    return out


def exact_majority_at_k(
    apply, params, data: TaskData, *, temperatures, ks, split: str = "eval", max_candidates: int = 4096
) -> dict[str, float]:
    r"""Noise-free expected maj@k at temperature ``T`` where every stopped completion can be listed.

    The sampled maj@k (:meth:`TaskData.score`, ``rl.exact_match_scores``) votes over identical completions
    that stop within ``max_new_tokens = L`` tokens (end on the stop token); one that does not stop is invalid
    (takes a vote, never wins). Every stopped completion is a string of ``l <= L`` tokens whose last is the
    stop token and no earlier one is: ``sum_l (V - 1)^(l - 1)`` candidates, each teacher-forced under
    ``softmax(logits / T)``. The chance that the correct one wins a ``k``-vote plurality is
    :func:`cat_jax.plurality.plurality_win_probability` (a tie split evenly among the tied answers, the
    expectation of the sampled estimator's first-occurrence rule), so this is the expectation of the sampled
    estimator, exactly. More than ``max_candidates`` candidates (long answers) is an error. Returns
    ``{"T<t>/maj@<k>": mean, "T<t>/maj@<k>_se": SE over problems}``.
    """
    if len(data.stop_tokens) != 1:
        raise ValueError(f"exact maj@k needs exactly one stop token, got {data.stop_tokens}")
    stop, length = data.stop_tokens[0], data.max_new_tokens
    others = [t for t in range(data.vocab_size) if t != stop]
    count = sum(len(others) ** (n - 1) for n in range(1, length + 1))
    if count > max_candidates:
        raise ValueError(
            f"{count} stopped completions of up to max_new_tokens={length} tokens over a "
            f"{data.vocab_size}-token vocabulary exceed max_candidates={max_candidates}; "
            "exact maj@k is for short answers"
        )
    candidates = [
        (*prefix, stop) for n in range(1, length + 1) for prefix in itertools.product(others, repeat=n - 1)
    ]
    prompts, lengths = getattr(data, f"{split}_prompts"), getattr(data, f"{split}_lengths")
    targets, tlens = getattr(data, f"{split}_targets"), getattr(data, f"{split}_target_lengths")
    where = {c: i for i, c in enumerate(candidates)}
    index = np.array([where[tuple(t[:n].tolist())] for t, n in zip(targets, tlens, strict=True)], np.int32)
    temps = jnp.asarray(temperatures, jnp.float32)
    b = len(prompts)
    log_p = np.stack(  # [C, T, B]
        [
            np.asarray(
                _teacher_forced_log_p(
                    apply,
                    params,
                    prompts,
                    lengths,
                    np.broadcast_to(
                        np.array([*c, *[data.pad_id] * (length - len(c))], np.int32), (b, length)
                    ),
                    np.full((b,), len(c), np.int32),
                    temps,
                    data.pad_id,
                )
            )
            for c in candidates
        ]
    )
    probs = np.moveaxis(np.exp(log_p), 0, -1)  # [T, B, C]
    out = {}
    for t, pr in zip(temperatures, probs, strict=True):
        for k in ks:
            win = np.concatenate(  # rows in blocks: the DP's intermediates grow as C * k^3 per row
                [
                    np.asarray(plurality.plurality_win_probability(pr[i : i + 16], index[i : i + 16], n=k))
                    for i in range(0, b, 16)
                ]
            )
            out[f"T{float(t):g}/maj@{k}"] = float(np.mean(win))
            out[f"T{float(t):g}/maj@{k}_se"] = float(np.std(win, ddof=1) / np.sqrt(len(win)))
    return out


@functools.partial(jax.jit, static_argnums=(0, 7))
def _teacher_forced_log_p(apply, params, prompts, lengths, targets, tlens, temperatures, pad_id):
    """``[T, B]`` log-probability of ``targets[:tlens]`` after each right-padded prompt, per temperature."""
    target_mask = jnp.arange(targets.shape[1])[None, :] < tlens[:, None]
    tokens, mask = sampling.join(prompts, lengths, targets[:, None], target_mask[:, None], pad_id=pad_id)
    tokens, mask = tokens[:, 0].astype(jnp.int32), mask[:, 0]
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32)[None], tokens.shape)
    logits, _ = apply(params, tokens, positions, None)
    logits = logits[:, :-1].astype(jnp.float32)  # one causal shift: logits at t - 1 score token t

    def at(temp):
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits / temp, axis=-1), tokens[:, 1:, None], axis=-1)
        return jnp.sum(jnp.where(mask[:, 1:], picked[..., 0], 0.0), axis=-1)

    return jax.vmap(at)(temperatures)


# ----------------------------------------------------------------------------- task data for experiments


def task_data(cfg: ml_collections.ConfigDict) -> TaskData:
    """The task named ``cfg.name`` (``multiply``, ``modular_chain``), prepared in ``cfg.data_dir`` once."""
    if cfg.name not in task_data_lib.TASKS:
        raise ValueError(f"task.name must be one of {sorted(task_data_lib.TASKS)}, got {cfg.name!r}")
    fields = ("digits", "num_train", "num_eval", "seed", "steps", "modulus", "max_operand")
    task = task_data_lib.ArithmeticTask(str(cfg.name), **{f: int(cfg[f]) for f in fields})
    return task_data_lib.load(task, data_dir=cfg.get("data_dir") or None)
