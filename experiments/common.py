"""Glue shared by the experiment modules: config loading, ConfigDict -> typed dataclass conversion, mesh and
parameter placement, and :func:`run_phase`, the one "train a phase, then evaluate it" of every training run.

(The ``TaskData`` section at the bottom builds the arithmetic tasks' arrays.)
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cat_jax import evaluation, reporting, rl, sharding, train_lib
from cat_jax.models import llama
from cat_jax.tasks import arithmetic, tokenizers

write_json = reporting.write_json  # the name experiments and their tests have always used


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
    held_out = (data.eval_prompts, data.eval_lengths, data.eval_targets, data.eval_target_lengths)
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
    save_params(workdir, result.state.params)
    report = evaluate(apply, result.state.params, model_cfg, data, config.eval)
    report.update(
        steps=training.num_steps,
        train_seconds=round(train_seconds, 1),
        final_train_metrics=result.metrics,
        num_params=model_cfg.num_params(),
        **extra_report,
    )
    write_json(pathlib.Path(workdir) / "results.json", report)
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


# ----------------------------------------------------------------------------- task data for experiments


@dataclasses.dataclass(frozen=True)
class TaskData:
    """Arrays an experiment needs from a verifiable task, already tokenised.

    ``train_tokens``/``train_labels`` ``[N, L]`` (labels -100 on prompt and padding, SPEC §3.1), and the same
    problems as prompts / targets for RL;
    ``eval_prompts`` ``[B, P]`` right-padded with ``eval_lengths`` ``[B]``; ``eval_targets`` ``[B, T]``
    (answer tokens + EOS, padded) with ``eval_target_lengths``; ``score(tokens, mask) -> Scored`` for
    ``[B, N, L]`` completions of the eval prompts.
    """

    vocab_size: int
    pad_id: int
    stop_tokens: tuple[int, ...]
    max_new_tokens: int
    train_tokens: np.ndarray
    train_labels: np.ndarray
    train_prompts: np.ndarray
    train_lengths: np.ndarray
    train_targets: np.ndarray
    train_target_lengths: np.ndarray
    eval_prompts: np.ndarray
    eval_lengths: np.ndarray
    eval_targets: np.ndarray
    eval_target_lengths: np.ndarray
    # Where the task's answers form a small finite set (modular_chain: every residue), all of them as
    # ``[C, A]`` tokens (answer + EOS) and each train problem's answer index ``[N]``: exact plurality SFT
    # enumerates them. None where the set is too large to enumerate per step (multiply: 10^4 answers).
    answer_tokens: np.ndarray | None = None
    train_answer_index: np.ndarray | None = None

    def candidate_batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Exact-plurality SFT batch of train problems ``idx``: every candidate answer after each prompt.

        ``candidate_tokens``/``candidate_labels`` ``[b, C, P + A]`` (labels -100 off the answer) and
        ``target [b]``, the input of ``losses.make_plurality_sft_loss_fn``; row ``target`` of a problem
        holds exactly its ``train_tokens`` sequence.
        """
        if self.answer_tokens is None or self.train_answer_index is None:
            raise ValueError(
                "this task does not enumerate its answers; objective.strategy='plurality' needs a task with "
                "a small finite answer set (task.name='modular_chain')"
            )
        prompts, lens = self.train_prompts[idx], self.train_lengths[idx]
        a = self.answer_tokens.shape[1]
        width = prompts.shape[1] + a
        pos = np.arange(width)[None, :]
        rel = pos - lens[:, None]  # [b, L] position inside the answer
        in_answer = ((rel >= 0) & (rel < a))[:, None, :]
        answers = np.moveaxis(self.answer_tokens[:, np.clip(rel, 0, a - 1)], 0, 1)  # [b, C, L]
        padded = np.full((len(idx), width), self.pad_id, np.int32)
        padded[:, : prompts.shape[1]] = prompts
        in_prompt = (pos < lens[:, None])[:, None, :]
        tokens = np.where(in_prompt, padded[:, None, :], np.where(in_answer, answers, self.pad_id))
        return {
            "candidate_tokens": tokens.astype(np.int32),
            "candidate_labels": np.where(in_answer, answers, tokenizers.IGNORE).astype(np.int32),
            "target": self.train_answer_index[idx].astype(np.int32),
        }

    def score(self, tokens: np.ndarray, mask: np.ndarray) -> evaluation.Scored:
        """Exact match of each completion (up to and including EOS) with its target, as in RL training."""
        b = tokens.shape[0]
        scores = rl.exact_match_scores(
            jnp.asarray(tokens),
            jnp.asarray(mask, bool),
            {
                "targets": jnp.asarray(self.eval_targets),
                "target_lengths": jnp.asarray(self.eval_target_lengths),
                "stop_token": jnp.full((b,), self.stop_tokens[0], jnp.int32),
            },
        )
        return evaluation.Scored(
            correct=np.asarray(scores.rewards) > 0,
            answer_ids=np.asarray(scores.answer_ids),
            valid=np.asarray(scores.valid),
        )


def task_data(cfg: ml_collections.ConfigDict) -> TaskData:
    """Build the task named ``cfg.name`` (valid: ``multiply``, ``modular_chain``)."""
    builders = {"multiply": _multiply, "modular_chain": _modular_chain}
    if cfg.name not in builders:
        raise ValueError(f"task.name must be one of {sorted(builders)}, got {cfg.name!r}")
    return builders[cfg.name](cfg)


def _multiply(cfg: ml_collections.ConfigDict) -> TaskData:
    """``BOS a x b =`` -> the product as exactly 2·digits zero-padded digits, then EOS (EXPERIMENTS.md)."""
    pool = arithmetic.multiplication_problems(int(cfg.digits))
    need = int(cfg.num_train) + int(cfg.num_eval)
    if need > len(pool):
        raise ValueError(
            f"num_train + num_eval = {need} exceeds the {len(pool)} distinct {cfg.digits}-digit problems"
        )
    train, held = arithmetic.split_problems(pool, int(cfg.num_train), int(cfg.num_eval), seed=int(cfg.seed))
    return _answer_only(train, held, tokenizers.CharTokenizer(arithmetic.ALPHABETS["multiplication"]))


def _modular_chain(cfg: ml_collections.ConfigDict) -> TaskData:
    """``BOS start op v ... m<modulus> =`` -> the final value (zero-padded to the modulus width), then EOS."""
    need = int(cfg.num_train) + int(cfg.num_eval)
    pool = arithmetic.sample_modular_chains(
        need,
        steps=int(cfg.steps),
        modulus=int(cfg.modulus),
        max_operand=int(cfg.max_operand),
        seed=int(cfg.seed),
    )
    train, held = arithmetic.split_problems(pool, int(cfg.num_train), int(cfg.num_eval), seed=int(cfg.seed))
    tok = tokenizers.CharTokenizer(arithmetic.ALPHABETS["modular_chain"])
    width = len(str(int(cfg.modulus) - 1))
    answers = np.array([tok.encode(f"{v:0{width}d}", eos=True) for v in range(int(cfg.modulus))], np.int32)
    return dataclasses.replace(
        _answer_only(train, held, tok),
        answer_tokens=answers,
        train_answer_index=np.array([int(p.answer) for p in train], np.int32),
    )


def _answer_only(
    train: list[arithmetic.Problem], held: list[arithmetic.Problem], tok: tokenizers.CharTokenizer
) -> TaskData:
    """Prompt ``BOS + prompt``, target ``answer + EOS``, right-padded to the longest of the task."""
    prompts = [tok.encode(p.prompt, bos=True) for p in (*train, *held)]
    targets = [tok.encode(p.answer, eos=True) for p in (*train, *held)]
    p_max, t_max = max(map(len, prompts)), max(map(len, targets))

    def pad(rows: list[list[int]], width: int) -> np.ndarray:
        out = np.full((len(rows), width), tok.pad_id, np.int32)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    seqs = [tokenizers.layout(p, t, p_max + t_max, tok.pad_id) for p, t in zip(prompts, targets, strict=True)]
    tokens = np.stack([s["tokens"] for s in seqs])
    labels = np.stack([s["labels"] for s in seqs])
    p_arr, t_arr = pad(prompts, p_max), pad(targets, t_max)
    p_len = np.array([len(p) for p in prompts], np.int32)
    t_len = np.array([len(t) for t in targets], np.int32)
    tr, ev = slice(0, len(train)), slice(len(train), len(train) + len(held))
    return TaskData(
        vocab_size=tok.vocab_size,
        pad_id=tok.pad_id,
        stop_tokens=(tok.eos_id,),
        max_new_tokens=t_max,
        train_tokens=tokens[tr],
        train_labels=labels[tr],
        train_prompts=p_arr[tr],
        train_lengths=p_len[tr],
        train_targets=t_arr[tr],
        train_target_lengths=t_len[tr],
        eval_prompts=p_arr[ev],
        eval_lengths=p_len[ev],
        eval_targets=t_arr[ev],
        eval_target_lengths=t_len[ev],
    )
