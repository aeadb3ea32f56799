"""Glue shared by the experiment modules: config loading, ConfigDict -> typed dataclass conversion, mesh and
parameter placement, :func:`task_data` (a config's task through the library's one data path), and
:func:`run_phase`, the one "train a phase, then evaluate it" of every training run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding

from cat_jax import evaluation, models, reporting, sampling, sharding, train_lib
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
    """``config.opt`` -> :class:`cat_jax.train_lib.OptimizerConfig` (the library never sees a ConfigDict).

    ``total_steps`` counts micro-batches; the schedule spans the optimizer steps, one per ``accum_steps``
    micro-batches (SPEC §3.2: ``S = epochs * ceil(n / 4)`` with accumulation 4).
    """
    accum = int(opt.get("accum_steps", 1))
    return train_lib.OptimizerConfig(
        lr=float(opt.lr),
        schedule=str(opt.schedule),
        total_steps=-(-int(total_steps) // accum),
        warmup_steps=int(opt.get("warmup_steps", 0)),
        weight_decay=float(opt.get("weight_decay", 0.0)),
        clip_norm=None if opt.get("clip_norm") is None else float(opt.clip_norm),
        accum_steps=int(opt.get("accum_steps", 1)),
    )


# config.model fields that are not LlamaConfig.tiny overrides.
POLICY_FIELDS = ("checkpoint", "chat_template", "lora", "param_dtype", "compute_dtype", "remat")


def resolve_dtype(name: str) -> str:
    """``auto`` -> float32 on CPU, bfloat16 on GPU/TPU; any other name is returned (and validated later)."""
    if name == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return str(name)


def model_dtypes(model: ml_collections.ConfigDict) -> dict[str, Any]:
    """``param_dtype``, ``compute_dtype`` (None: the same) and ``remat`` of a model config from
    ``config.model``. ``param_dtype="auto"``: a frozen LoRA base is stored in the accelerator's dtype, what
    trains in full stays float32 (master weights); an explicit value is taken as given."""
    trains_all = lora_config(model) is None
    storage = "float32" if model.param_dtype == "auto" and trains_all else resolve_dtype(model.param_dtype)
    compute = resolve_dtype(model.compute_dtype)
    return {
        "param_dtype": storage,
        "compute_dtype": None if compute == storage else compute,
        "remat": str(model.remat),
    }


def scratch_model_config(model: ml_collections.ConfigDict, vocab_size: int) -> llama.LlamaConfig:
    """``config.model`` as a from-scratch ``LlamaConfig.tiny`` with overrides, for a task's vocabulary."""
    overrides = {k: v for k, v in model.to_dict().items() if k not in POLICY_FIELDS}
    policy = model_dtypes(model) if "param_dtype" in model else {}
    return llama.LlamaConfig.tiny(vocab_size=vocab_size, **overrides, **policy)


def model_config(config: ml_collections.ConfigDict, data: TaskData) -> llama.LlamaConfig:
    """``config.model`` (overrides of ``LlamaConfig.tiny``) with the task's vocabulary."""
    return scratch_model_config(config.model, data.vocab_size)


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
    """``config.mesh`` -> a ``(data, fsdp)`` mesh, or None for a plain single-device run (``devices = 1``).

    A multi-process run spans every process's devices: ``devices`` must be 0 or all of them (the data and
    FSDP axes then cross hosts)."""
    devices = int(cfg.devices)
    if jax.process_count() > 1 and devices not in (0, jax.device_count()):
        raise ValueError(
            f"mesh.devices={devices} in a run of {jax.process_count()} processes: a multi-process run needs "
            f"a mesh over every process's devices (mesh.devices = 0 or {jax.device_count()})"
        )
    if devices == 1 and int(cfg.fsdp) == 1:
        return None
    return sharding.make_mesh(None if devices == 0 else devices, fsdp=int(cfg.fsdp))


def data_shard(mesh) -> grain.sharding.ShardOptions | None:
    """The block of every batch this process reads (``Batches.sharded``): its devices' rows of the mesh
    (:func:`cat_jax.sharding.process_block`); None on a single process (it reads whole batches)."""
    if mesh is None or jax.process_count() == 1:
        return None
    index, count = sharding.process_block(mesh)
    return grain.sharding.ShardOptions(shard_index=index, shard_count=count, drop_remainder=True)


def place_params(params, mesh, cfg: ml_collections.ConfigDict):
    """Parameters on the mesh: replicated, or FSDP-sharded when ``cfg.fsdp > 1``."""
    if mesh is None:
        return params
    return sharding.place(params, sharding.param_shardings(params, mesh, fsdp=int(cfg.fsdp) > 1))


def sharded_batches(batches, mesh):
    """``batches(step)`` with every array split over the mesh devices along axis 0 (identity without one).

    Across processes ``batches(step)`` is this process's block (:func:`data_shard`) and the result one global
    array per leaf (:func:`cat_jax.sharding.global_batch`)."""
    if mesh is None:
        return batches
    return lambda step: sharding.global_batch(jax.tree.map(np.asarray, batches(step)), mesh)


def place_state(state: train_lib.TrainState, mesh) -> train_lib.TrainState:
    """Every leaf of ``state`` on ``mesh``: those already there (parameters, and optimizer moments that
    follow them) as they are, the others (step, key, counters) replicated. Across processes a checkpoint
    then holds global arrays only, saved and restored by every process, sharded as they are."""
    if mesh is None:
        return state

    def put(x):
        on_mesh = isinstance(getattr(x, "sharding", None), NamedSharding) and x.sharding.mesh == mesh
        return x if on_mesh else sharding.place(x, sharding.replicated(mesh))

    return jax.tree.map(put, state)


def save_params(workdir: str | pathlib.Path, params) -> pathlib.Path:
    """Final parameters of a run in ``workdir/params`` (what ``init_from`` of a later phase loads)."""
    path = (pathlib.Path(workdir) / "params").absolute()
    if bool(sharding.writer_value(path.exists())):  # one answer for every process: all save, or none
        return path
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)
    return path


def load_params(workdir: str | pathlib.Path, template):
    """Parameters saved by :func:`save_params` in ``workdir``, shaped like ``template``."""
    path = (pathlib.Path(workdir) / "params").absolute()
    if not bool(sharding.writer_value(path.exists())):
        raise FileNotFoundError(
            f"init_from={str(workdir)!r} has no params/ (run that phase to the end first)"
        )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path, abstract)


# ----------------------------------------------------------------------------- the policy


class Policy(NamedTuple):
    """A run's model: what is trained (``params``), what stays frozen, and how to read both.

    ``apply(train_lib.with_frozen(params, frozen), tokens, positions, cache)`` is the logits function;
    ``frozen`` is the LoRA base (None when every parameter trains). ``encoder``: the checkpoint's chat
    encoder (``cat_jax.tasks.chat.ChatEncoder``), None for a from-scratch model on a synthetic task.
    """

    model_cfg: Any
    apply: Any
    params: Any
    frozen: Any = None
    encoder: Any = None

    @property
    def full(self):
        """What ``apply`` reads: ``params`` with the frozen part."""
        return train_lib.with_frozen(self.params, self.frozen)


def load_checkpoint(model: ml_collections.ConfigDict, *, template: str | None = None):
    """``config.model.checkpoint`` -> ``(convert.Checkpoint, chat encoder)`` with :func:`model_dtypes`'s
    storage and compute dtypes and remat policy. ``template``: the chat template (default
    ``model.chat_template``)."""
    from cat_jax.models import convert
    from cat_jax.tasks import chat

    path = pathlib.Path(str(model.checkpoint)).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model.checkpoint={str(model.checkpoint)!r} is not a Hugging Face checkpoint directory "
            "(no config.json there)"
        )
    ckpt = convert.load(str(path), **model_dtypes(model))
    if ckpt.tokenizer is None:
        raise FileNotFoundError(f"model.checkpoint={str(path)!r} has no tokenizer.json")
    encoder = chat.chat_encoder(
        ckpt.tokenizer,
        ckpt.tokenizer_config,
        str(model.chat_template) if template is None else template,
        ckpt.eos_token_ids,
    )
    return ckpt, encoder


def lora_config(model: ml_collections.ConfigDict):
    """``config.model.lora`` as a ``cat_jax.models.lora.LoRAConfig``; None for rank 0 (full fine-tuning)."""
    from cat_jax.models import lora

    spec = model.get("lora")
    if spec is None or int(spec.rank) == 0:
        return None
    return lora.LoRAConfig(
        rank=int(spec.rank), alpha=float(spec.alpha), targets=tuple(spec.targets), dropout=float(spec.dropout)
    )


def build_policy(
    config: ml_collections.ConfigDict, data: TaskData, checkpoint=None, encoder=None, mesh=None
) -> Policy:
    """The run's :class:`Policy`: ``checkpoint``'s weights (or a from-scratch model seeded by
    ``config.seed``), LoRA adapters when ``config.model.lora.rank > 0`` (fresh ones are an exact no-op: the
    untrained checkpoint), ``config.init_from``'s trained part when set, placed on ``mesh``.

    A checkpoint whose embedding has more rows than its tokenizer has ids samples and scores only the
    tokenizer's ids (:func:`cat_jax.models.llama.limit_vocab`).
    """
    from cat_jax.models import lora

    key = jax.random.key(int(config.get("seed", 0)))
    if checkpoint is None:
        model_cfg = model_config(config, data)
        graphdef, params = llama.init(model_cfg, key)
    else:
        model_cfg, graphdef, params = checkpoint.config, checkpoint.graphdef, checkpoint.params
    apply, frozen = llama.decoder(graphdef), None  # one logits function for every family
    lora_cfg = lora_config(config.model)
    if lora_cfg is not None:
        graphdef, adapters = lora.init(graphdef, params, lora_cfg, jax.random.fold_in(key, 1))
        apply, frozen, params = lora.decoder(graphdef), params, adapters
    if encoder is not None and encoder.vocab_size < model_cfg.vocab_size:
        apply = llama.limit_vocab(apply, encoder.vocab_size)
    if mesh is not None:
        params = place_params(params, mesh, config.mesh)
        frozen = None if frozen is None else place_params(frozen, mesh, config.mesh)
    if config.get("init_from"):  # restored onto the mesh's shardings: each process reads its own shards
        params = load_params(config.init_from, params)
    return Policy(model_cfg, apply, params, frozen, encoder)


def policy_and_data(config: ml_collections.ConfigDict, mesh=None) -> tuple[Policy, TaskData]:
    """The run's policy and task: a checkpoint's tokenizer and chat template encode the task's problems;
    a from-scratch model takes the task's vocabulary."""
    if config.model.get("checkpoint"):
        checkpoint, encoder = load_checkpoint(config.model)
        data = task_data(config.task, encoder=encoder)
        return build_policy(config, data, checkpoint, encoder, mesh), data
    data = task_data(config.task)
    return build_policy(config, data, mesh=mesh), data


# ----------------------------------------------------------------------------- the memory plan


def planned_model_config(config: ml_collections.ConfigDict):
    """The model config a run will build, without loading any weights (``config.json`` of a checkpoint)."""
    from cat_jax.models import convert

    model = config.model
    if not model.get("checkpoint"):
        return model_config(config, task_data(config.task))
    file = pathlib.Path(str(model.checkpoint)).expanduser() / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"model.checkpoint={str(model.checkpoint)!r} has no config.json")
    dtypes = model_dtypes(model)
    cfg = convert.config_from_hf(json.loads(file.read_text()), param_dtype=dtypes.pop("param_dtype"))
    return dataclasses.replace(cfg, **dtypes)


def plan_for(
    config: ml_collections.ConfigDict,
    model_cfg=None,
    data: TaskData | None = None,
    *,
    devices: int | None = None,
    capacity_bytes: int | None = None,
):
    """The memory plan (:func:`cat_jax.plan.plan`) of ``config``'s run on ``devices`` (default: the
    config's mesh over the visible devices) with ``capacity_bytes`` per device (default: the first local
    device's memory limit where the runtime reports one; CPU reports none).

    Sequences per device and their length come from the config: SFT ``batch_size`` sequences of the task's
    window; RL ``prompts_per_step * rollout.num_samples`` completions of prompt + new tokens, sampled at once;
    evaluation ``eval.chunk * eval.num_samples`` sampled rows (the KV cache the run allocates).
    """
    from cat_jax import plan

    model_cfg = planned_model_config(config) if model_cfg is None else model_cfg
    if devices is None:
        devices = int(config.mesh.devices) or jax.device_count() if "mesh" in config else 1
    per_device = lambda rows: -(-int(rows) // devices)
    task = config.task
    if task.name in MATH_TASKS:
        prompt_len, new_tokens, sft_len = (
            int(task.max_prompt_tokens),
            int(task.max_new_tokens),
            int(task.max_len),
        )
    else:
        data = task_data(task) if data is None else data
        prompt_len, new_tokens = data.eval.prompts.shape[1], int(data.max_new_tokens)
        sft_len = data.train.tokens.shape[1]
    kv_len = prompt_len + new_tokens
    batch, seq_len = 0, 0
    per_call = int(config.eval.get("samples_per_call", 0)) or int(config.eval.num_samples)
    kv_batch = per_device(int(config.eval.chunk) * per_call)
    if "rollout" in config:  # RL: every completion of the step is scored in one update
        rows = int(config.prompts_per_step) * int(config.rollout.num_samples)
        chunk = per_device(rows) // int(config.get("micro_batches", 1))
        batch, seq_len, kv_batch = max(chunk, 1), kv_len, max(kv_batch, per_device(rows))
    elif "objective" in config:
        batch, seq_len = per_device(config.batch_size), sft_len
    if capacity_bytes is None:
        stats = jax.local_devices()[0].memory_stats() or {}
        capacity_bytes = stats.get("bytes_limit")
    lora_cfg = lora_config(config.model)
    trainable = {"trainable": "full"}
    if lora_cfg is not None:
        trainable = {"trainable": "lora", "lora_rank": lora_cfg.rank, "lora_targets": lora_cfg.targets}
    return plan.plan(
        model_cfg,
        **trainable,
        batch=batch,
        seq_len=seq_len,
        kv_batch=kv_batch,
        kv_len=kv_len,
        devices=devices,
        fsdp=int(config.mesh.fsdp) if "mesh" in config else 1,
        capacity_bytes=capacity_bytes,
    )


def check_plan(config: ml_collections.ConfigDict, policy: Policy, data: TaskData, mesh) -> None:
    """Log the run's memory plan; refuse, before any step, a run whose plan exceeds the device memory."""
    devices = 1 if mesh is None else mesh.devices.size
    planned = plan_for(config, policy.model_cfg, data, devices=devices)
    logging.info("memory plan:\n%s", planned.format())
    if planned.fits is False:
        raise MemoryError(
            f"the run does not fit: {planned.total_bytes / 2**30:.2f} GiB per device planned, "
            f"{planned.capacity_bytes / 2**30:.2f} GiB available (model.remat, model.lora, batch sizes, "
            f"eval.chunk or more devices with mesh.fsdp lower it):\n{planned.format()}"
        )


# ----------------------------------------------------------------------------- the phase runner


class Phase(NamedTuple):
    """What an experiment builds its training from: the task, the model, its starting parameters."""

    data: TaskData
    model_cfg: Any
    apply: Any  # the model's logits function (hashable: jit-static); reads with_frozen(params, frozen)
    params: Any  # what trains: seeded init or checkpoint, or ``config.init_from``'s; already on the mesh
    frozen: Any = None  # the frozen part (a LoRA base), an argument of every step; None: all trains
    # This process's block of every batch (multi-process runs; None: whole batches): an experiment's
    # ``Training.batches`` reads only it, through ``Batches.sharded(phase.shard)``.
    shard: Any = None


class Training(NamedTuple):
    """What :func:`run_phase` trains: state, ``step(state, batch) -> (state, metrics)``, ``batches(step)``."""

    state: train_lib.TrainState
    step: Callable
    batches: Callable[[int], Any]
    num_steps: int


def with_frozen_step(step: Callable, frozen) -> Callable:
    """``step(state, batch)`` of a jitted ``step(state, batch, frozen)`` (itself if nothing is frozen)."""
    if frozen is None:
        return step
    return lambda state, batch: step(state, batch, frozen)


def run_phase(
    config: ml_collections.ConfigDict, workdir: str, build: Callable[[Phase], Training], **extra_report
) -> dict:
    """Train one phase, then evaluate it: the body of every training experiment's ``run``.

    Builds ``config.task``'s data and ``config.model``'s policy (:func:`policy_and_data`: a checkpoint or a
    seeded init, LoRA adapters, ``config.init_from``'s trained part, placed on ``config.mesh``); ``build``
    turns that :class:`Phase` into the experiment's :class:`Training`. Then the loop (auto-resume from
    ``workdir``; checkpoints hold what trains and the optimizer, never a frozen base), the final trained
    parameters in ``workdir/params``, the sampled evaluation (:func:`evaluate`) and ``results.json`` (with
    ``extra_report``). ``config.curve_every > 0`` also logs the exact held-out pass@k
    (:func:`cat_jax.evaluation.exact_pass_at_k` at every ``config.curve_temperatures``) every that many
    steps: the learning curve of the early-stopping control.
    """
    started = time.perf_counter()
    done = pathlib.Path(workdir) / "results.json"
    if bool(sharding.writer_value(done.exists())):  # process 0 writes it: its view decides for all
        return json.loads(done.read_text())  # a finished phase: its report stands (no second evaluation)
    mesh = make_mesh(config.mesh)
    policy, data = policy_and_data(config, mesh)
    check_plan(config, policy, data, mesh)
    shard = data_shard(mesh)
    training = build(Phase(data, policy.model_cfg, policy.apply, policy.params, policy.frozen, shard))
    apply, frozen = policy.apply, policy.frozen

    curve_every = int(config.get("curve_every", 0))
    temperatures = list(config.get("curve_temperatures", [1.0]))
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    held_out = (data.eval.prompts, data.eval.lengths, data.eval.targets, data.eval.target_lengths)
    eval_fn = lambda s: evaluation.exact_pass_at_k(
        apply,
        train_lib.with_frozen(s.params, frozen),
        *held_out,
        temperatures=temperatures,
        ks=ks,
        pad_id=data.pad_id,
    )
    target = float(config.get("stop_at_pass1", 0.0))
    stop_fn = (lambda m: m["T1/pass@1"] >= target) if target > 0 else None
    if stop_fn is not None and (not curve_every or 1.0 not in temperatures):
        raise ValueError(
            f"stop_at_pass1={target} needs the exact learning curve at T = 1: set curve_every > 0 and 1.0 in "
            f"curve_temperatures (got curve_every={curve_every}, curve_temperatures={temperatures})"
        )
    result = train_lib.train_loop(
        place_state(training.state, mesh),
        training.step,
        sharded_batches(training.batches, mesh),
        num_steps=training.num_steps,
        workdir=workdir,
        checkpoint_every=int(config.checkpoint_every),
        log_every=int(config.log_every),
        progress=bool(config.progress),
        eval_every=curve_every,
        eval_fn=eval_fn if curve_every else None,
        stop_fn=stop_fn,
    )
    train_seconds = time.perf_counter() - started
    if result.preempted:
        return {"preempted": True, "step": int(jax.device_get(result.state.step))}
    save_params(workdir, result.state.params)
    full = train_lib.with_frozen(result.state.params, frozen)
    report = evaluate(apply, full, policy.model_cfg, data, config.eval, mesh)
    report.update(
        steps=training.num_steps if result.stopped_at is None else result.stopped_at,
        **(
            {}
            if result.stopped_at is None
            else {"stopped_at_pass1": target, "planned_steps": training.num_steps}
        ),
        train_seconds=round(train_seconds, 1),
        final_train_metrics=result.metrics,
        num_params=policy.model_cfg.num_params(),
        trainable_params=int(sum(x.size for x in jax.tree.leaves(result.state.params))),
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
    mesh=None,
) -> evaluation.Scored:
    """Sample ``cfg.num_samples`` completions per held-out prompt and score them into ``[B, N]`` arrays."""
    sample_cfg = sampling.SampleConfig(
        num_samples=int(cfg.num_samples),
        max_new_tokens=int(data.max_new_tokens),
        temperature=float(cfg.temperature if temperature is None else temperature),
        top_p=float(cfg.get("top_p", 1.0)),
        chunk=int(cfg.chunk),
        samples_per_call=int(cfg.get("samples_per_call", 0)),
    )
    tokens, mask = evaluation.generate(
        apply,
        params,
        functools.partial(models.init_cache, model_cfg),
        data.eval.prompts,
        data.eval.lengths,
        jax.random.key(int(cfg.seed)),
        sample_cfg,
        stop_tokens=data.stop_tokens,
        pad_id=data.pad_id,
        mesh=mesh,
    )
    return data.score(tokens, mask)


def evaluate(apply, params, model_cfg, data: TaskData, cfg: ml_collections.ConfigDict, mesh=None) -> dict:
    """Exact pass@k / maj@k curves (mean, SE over held-out problems) of one model, as a JSON-ready dict."""
    scored = sample_and_score(apply, params, model_cfg, data, cfg, mesh=mesh)
    ks = [k for k in cfg.ks if k <= int(cfg.num_samples)]
    curves = evaluation.curves(scored, ks)
    return {
        "eval": {name: evaluation.curve_record(c) for name, c in curves.items()},
        "eval_problems": int(scored.correct.shape[0]),
        "eval_samples": int(scored.correct.shape[1]),
        "distinct_answers_per_problem": float(np.mean([len(set(r)) for r in np.asarray(scored.answer_ids)])),
    }


MATH_TASKS = ("math", "gsm8k")


def task_data(cfg: ml_collections.ConfigDict, encoder=None) -> TaskData:
    """The task named ``cfg.name``, prepared in ``cfg.data_dir`` once: a synthetic arithmetic task
    (``multiply``, ``add``, ``modular_chain``) or MATH / GSM8K (``math``, ``gsm8k``: needs a checkpoint's
    chat ``encoder``). Across processes, process 0 prepares it first and the others read what it wrote."""
    with sharding.writer_first(f"task_data {cfg.name}"):
        return _task_data(cfg, encoder)


def _task_data(cfg: ml_collections.ConfigDict, encoder=None) -> TaskData:
    if cfg.name in MATH_TASKS:
        if encoder is None:
            raise ValueError(
                f"task.name={cfg.name!r} needs a pretrained policy: set model.checkpoint to a local Hugging "
                "Face directory (its tokenizer and chat template encode the problems)"
            )
        return math_task_data(cfg, encoder)
    valid = sorted([*task_data_lib.TASKS, *MATH_TASKS])
    if cfg.name not in task_data_lib.TASKS:
        raise ValueError(f"task.name must be one of {valid}, got {cfg.name!r}")
    if encoder is not None:
        raise ValueError(
            f"task.name={cfg.name!r} has its own character tokenizer; a pretrained model.checkpoint cannot "
            f"read it (use one of {list(MATH_TASKS)}, or model.checkpoint='')"
        )
    fields = ("digits", "num_train", "num_eval", "seed", "steps", "modulus", "max_operand", "num_rl")
    task = task_data_lib.ArithmeticTask(str(cfg.name), **{f: int(cfg.get(f, 0)) for f in fields})
    return task_data_lib.load(task, data_dir=cfg.get("data_dir") or None)


def math_task_data(cfg: ml_collections.ConfigDict, encoder) -> TaskData:
    """``config.task`` of ``configs.common.math_task`` through ``cat_jax.tasks.math_data``."""
    from cat_jax.tasks import math_data

    if not cfg.manual_dir:
        raise ValueError(
            f"task.manual_dir is empty: name the directory holding {cfg.name}'s train.jsonl and test.jsonl"
        )
    optional = lambda v: None if v is None else int(v)
    levels = tuple(cfg.levels) or None
    task = math_data.MathTask(
        family=str(cfg.name),
        manual_dir=str(pathlib.Path(str(cfg.manual_dir)).expanduser()),
        target=str(cfg.target),
        train_levels=levels,
        train_count=optional(cfg.train_count),
        train_offset=int(cfg.train_offset),
        train_seed=int(cfg.seed),
        eval_levels=levels,
        eval_count=optional(cfg.eval_count),
        eval_seed=int(cfg.seed),
        max_len=int(cfg.max_len),
        max_prompt_tokens=int(cfg.max_prompt_tokens),
        limit_train_prompts=bool(cfg.limit_train_prompts),
        max_new_tokens=int(cfg.max_new_tokens),
    )
    return math_data.load(task, encoder, data_dir=cfg.get("data_dir") or None)
