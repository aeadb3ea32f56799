r"""Protein Best-of-N at CPU scale: the paper's Table 6 analogue (SPEC §3.4, §5), every phase in one command.

    python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein

0. **Data**: the corpus and the conditional pairs are ``cat_protein`` records (``CatProtein``, prepared once
   in ``config.data_dir``; ``cat_jax.tasks.protein_data`` lays them out), batched by the one batcher
   (``cat_jax.data.batches``, a seeded permutation per epoch: a pure function of the step). A corpus whose
   family knobs (``pretrain.rare_fraction``, ``rare_beta``, ``common_beta``, ``min_len``) are not the
   library's defaults is drawn in memory by the same ``pretraining_corpus`` (:func:`pretraining_corpus`).
1. **Pre-training**: a tiny Llama-style protein LM learns ``cat_jax.tasks.protein.pretraining_corpus`` (by
   default most sequences at hydrophobicity h ~ 0.35-0.45, 3% near 0.75) from scratch, next-token CE on
   ``BOS seq EOS``. Its samples play ProtGPT2's part: mass at the 4-height reward mode, little at the
   12-height one (``:rare``: rarer still, best-of-64 about 6).
2. **Unconditional RL** from it (prompt = BOS): standard group-advantage RL vs Best-of-N weights
   ``w = N q^{N-1}`` with reward-history quantiles, N = 2, 4, 8 (SPEC §2.3, §2.5), one run per seed.
3. **Conditional warm-up** on the synthetic input -> target pairs (``BOS input '>' target EOS``, target
   supervised), then **conditional RL**: standard vs BoN-2/4/8 with within-prompt quantiles.
4. **Evaluation**: one pool of samples per unconditional model, many samples per held-out conditional prompt;
   exact expected best-of-k reward with and without replacement (:func:`cat_jax.operators.best_of_k`),
   mean ± SE across seeds, the share of invalid samples (reward -5) beside every row, each Best-of-N branch
   minus standard RL paired by seed; sample hydrophobicity histograms; learning curves of the RL runs
   (``experiments.protein_report``).

Rewards are SPEC §3.4's on token ids inside the jitted RL step (``cat_jax.tasks.protein``'s
``unconditional_rewards`` / ``conditional_rewards``, equal to its Python references on the decoded text).
Every phase auto-resumes from its folder under the workdir; outputs (``results.json``, ``table.md``,
``best_of_k.png``, ``hydrophobicity.png``, ``learning_curves.png``) go to ``config.results_dir``.

**With ``config.model.checkpoint``** (a local ``GPT2LMHeadModel`` directory such as ProtGPT2; the paper's
setting, ``configs/protein/protein.py:paper``): no pre-training, the checkpoint is the initial model and the
"Pre-trained LM" row; full-model fine-tuning (float32 masters, the config's compute dtype); the checkpoint's
tokenizer lays out SPEC §3.4's text (unconditional prompt = one BOS token, EOS if it has none; conditional
prompt ``"Input: " + seq + " \n Output:"``, warm-up rows prompt + " " + target + EOS, everything after the
prompt supervised: ``protein_data.text_sft_arrays``); sampling stops at its EOS ids; rewards are the Python
references on the decoded text, on the host inside the jitted RL step (``protein.host_score_fn``) and in the
evaluation alike.
"""

from __future__ import annotations

import functools
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jaxtyping import Array

from cat_jax import advantages as adv
from cat_jax import evaluation, losses, models, reporting, rl, sampling, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama
from cat_jax.tasks import protein, protein_data
from experiments import cli, common
from experiments import protein_report as report_lib

# Character vocabulary (``protein.tokenizer()``): pad 0, BOS 1, EOS 2, the 20 residues, and '>' closing a
# conditional prompt (the character-level stand-in for SPEC's "Input: ... Output:" text; it is not an amino
# acid, so a sample that emits it is invalid, as prose is for ProtGPT2).
TOKENIZER = protein.tokenizer()
PAD, BOS, EOS = TOKENIZER.pad_id, TOKENIZER.bos_id, TOKENIZER.eos_id
SETTINGS = ("uncond", "cond")
MIN_LEN = {"uncond": protein.UNCOND_MIN_LEN, "cond": protein.COND_MIN_LEN}


# ----------------------------------------------------------------------------- rewards of a setting


def rewards(completions: Array, mask: Array, batch: dict, *, setting: str) -> Array:
    """``[B, M]`` rewards of a setting's completions; ``batch``: its prompts (cond: with the input counts)."""
    if setting == "uncond":
        return protein.unconditional_rewards(completions, mask)
    max_input = batch["prompts"].shape[1] - 2  # BOS + input + '>'
    return protein.conditional_rewards(
        completions, mask, batch["input_length"], batch["input_hydrophobic"], max_input=max_input
    )


def scores(completions: Array, mask: Array, batch: dict, *, setting: str) -> rl.RolloutScores:
    """``score_fn`` of the RL step of ``setting``: the rewards, and validity (long enough, no '>')."""
    r = rewards(completions, mask, batch, setting=setting)
    n, _, invalid = protein.residue_counts(completions, mask)
    # Best-of-N needs no answer clusters: one id per prompt keeps RolloutScores' [B, M] contract.
    return rl.RolloutScores(r, jnp.zeros(r.shape, jnp.int32), (n >= MIN_LEN[setting]) & ~invalid)


# One compile per pool shape instead of one per eager op (the evaluation calls these on host arrays).
_jit_counts = jax.jit(protein.residue_counts)
_jit_rewards = jax.jit(rewards, static_argnames="setting")


def token_pool_scores(tokens: np.ndarray, mask: np.ndarray, prompts: dict, *, setting: str) -> dict:
    """Rewards, hydrophobicity (NaN: no residue or not a protein) and length ``[B, N]`` of char-vocabulary
    samples."""
    r = _jit_rewards(tokens, mask, prompts, setting=setting)
    n, c, invalid = (np.asarray(x) for x in _jit_counts(tokens, mask))
    h = np.where((n > 0) & ~invalid, c / np.maximum(n, 1), np.nan)
    return {"rewards": np.asarray(r, np.float64), "h": h, "length": n}


# ----------------------------------------------------------------------------- the model of a run


class Setup(NamedTuple):
    """What differs between the from-scratch char-level model and a checkpoint with its own tokenizer."""

    model_cfg: Any
    apply: Any  # hashable logits function (jit-static)
    params: Any  # scratch: the initialisation pre-training starts from; checkpoint: the initial model
    make_cache: Callable  # make_cache(rows, slots): an empty KV cache
    pad_id: int
    stop_tokens: tuple[int, ...]  # sampling stops at these
    bos_id: int  # the unconditional prompt (one token)
    score_fns: dict  # setting -> cat_jax.rl.ScoreFn of the RL step
    pool_scores: Callable  # (tokens, mask, prompts, *, setting) -> {"rewards", "h", "length"} [B, N]
    description: str  # the report's "Model:" line ("": the from-scratch model's)
    pretrains: bool  # True: the initial model is pre-trained here (scratch); False: a checkpoint


def scratch_setup(config: ml_collections.ConfigDict) -> Setup:
    """The tiny Llama-style model on ``protein.tokenizer()``, token-id rewards inside the RL step."""
    model_cfg = common.scratch_model_config(config.model, TOKENIZER.vocab_size)
    graphdef, init_params = llama.init(model_cfg, jax.random.key(int(config.pretrain.seed)))
    return Setup(
        model_cfg,
        llama.decoder(graphdef),
        init_params,
        functools.partial(llama.init_cache, model_cfg),
        PAD,
        (EOS,),
        BOS,
        {setting: functools.partial(scores, setting=setting) for setting in SETTINGS},
        token_pool_scores,
        "",  # the report's default line (results.json as before checkpoints existed)
        True,
    )


def _load_checkpoint(model: ml_collections.ConfigDict):
    """``common.load_checkpoint(model)`` for a full fine-tune without a chat template (SPEC §3.4: raw
    text): the "plain" template's encoder only supplies the stop tokens; no prompt is rendered with it."""
    if common.lora_config(model) is not None:
        raise ValueError(
            f"model.lora.rank={int(model.lora.rank)}: the protein experiment fine-tunes the whole checkpoint "
            "(SPEC §3.4); set model.lora.rank=0"
        )
    ckpt, encoder = common.load_checkpoint(model, template=str(model.chat_template) or "plain")
    if ckpt.tokenizer.eos_id is None:
        raise ValueError(f"model.checkpoint={str(model.checkpoint)!r} names no eos_token_id in config.json")
    return ckpt, encoder


def checkpoint_setup(config: ml_collections.ConfigDict, ckpt, encoder, pairs: dict) -> Setup:
    """A checkpoint's policy (``common.build_policy``: full fine-tuning, the vocabulary limit) and the
    decoded-text rewards of its samples; ``pairs``: the conditional (input, target) pairs per split."""
    policy = common.build_policy(config, None, ckpt, encoder)
    tok = ckpt.tokenizer
    stops = tuple(encoder.stop_tokens)
    inputs = {split: [src for src, _ in pairs[split]] for split in ("train", "test")}

    def pool_scores(tokens, mask, prompts, *, setting):
        texts = protein.completion_texts(tokens, mask, tok.decode, stops)
        rows = None if setting == "uncond" else [inputs["test"][int(i)] for i in prompts["input_index"]]
        length, h = protein.text_stats(texts)
        return {"rewards": protein.text_rewards(texts, rows), "h": h, "length": length}

    return Setup(
        policy.model_cfg,
        policy.apply,
        policy.params,
        functools.partial(models.init_cache, policy.model_cfg),
        tok.pad_id,
        stops,
        tok.bos_id if tok.bos_id is not None else tok.eos_id,
        {
            "uncond": protein.host_score_fn(tok.decode, stops),
            "cond": protein.host_score_fn(tok.decode, stops, inputs=inputs["train"]),
        },
        pool_scores,
        f"{policy.model_cfg.num_params():,}-parameter checkpoint {config.model.checkpoint} "
        f"({type(policy.model_cfg).__name__}), fully fine-tuned",
        False,
    )


# ----------------------------------------------------------------------------- data


def read_data(config: ml_collections.ConfigDict, tokenizer=None) -> dict:
    """Every array of the run, read through ``CatProtein`` (prepared once in ``config.data_dir``).

    ``corpus``: the pre-training sequences; ``pretrain`` / ``cond_warmup``: SFT ``tokens``/``labels``;
    ``cond_train`` / ``cond_test``: the RL and held-out prompts with their input counts; ``pairs``: the
    conditional (input, target) pairs per split. With a checkpoint's ``tokenizer``: SPEC §3.4's text layout
    of it, and no corpus (nothing is pre-trained).
    """
    data_dir = config.get("data_dir") or None
    sizes = {
        "warmup": int(config.cond_warmup.num_pairs),
        "train": int(config.cond.num_train_prompts),
        "test": int(config.eval.cond_prompts),
    }
    pairs = protein_data.read_pairs(sizes, data_dir=data_dir)
    if tokenizer is not None:
        return {
            "corpus": None,
            "pairs": pairs,
            "cond_warmup": protein_data.text_sft_arrays(pairs["warmup"], tokenizer),
            "cond_train": protein_data.text_prompt_arrays(pairs["train"], tokenizer),
            "cond_test": protein_data.text_prompt_arrays(pairs["test"], tokenizer),
        }
    corpus = pretraining_corpus(config.pretrain, data_dir=data_dir)
    return {
        "pairs": pairs,
        "corpus": corpus,
        "pretrain": protein_data.sft_arrays([("", s) for s in corpus]),
        "cond_warmup": protein_data.sft_arrays(pairs["warmup"]),
        "cond_train": protein_data.prompt_arrays(pairs["train"]),
        "cond_test": protein_data.prompt_arrays(pairs["test"]),
    }


def pretraining_corpus(pre: ml_collections.ConfigDict, *, data_dir=None) -> list[str]:
    """The ``pretrain`` section's corpus, read through ``CatProtein`` (its family knobs in the config)."""
    knobs = {k: pre.get(k, d) for k, d in protein_data.CORPUS_KNOBS.items()}
    return protein_data.read_corpus(
        int(pre.num_sequences),
        seed=int(pre.corpus_seed),
        max_len=int(pre.max_len),
        data_dir=data_dir,
        **knobs,
    )


def device_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int):
    """``batches(step)``: the one batcher's rows of ``arrays`` (``protein_data.batches``) as jnp arrays."""
    rows = protein_data.batches(arrays, batch_size, seed=seed)
    return lambda step: {k: jnp.asarray(v) for k, v in rows(step).items() if k in arrays}


# ----------------------------------------------------------------------------- phases


def _copy(tree):
    # Every phase donates its state to the jitted step; fresh buffers keep the shared initial weights alive.
    return jax.tree.map(jnp.array, tree)


def _finished(workdir: pathlib.Path) -> bool:
    return (workdir / "params").exists() and (workdir / "final_metrics.json").exists()


def train_phase(workdir: pathlib.Path, state, step, batches, *, num_steps: int, progress: bool):
    """Run ``step`` to ``num_steps`` (auto-resume, one checkpoint at the end); save and return the params.

    Every phase of the experiment (pre-training, warm-up, each RL run) goes through here. Not
    ``common.run_phase``: these phases have no arithmetic task to evaluate after training.
    """
    result = train_lib.train_loop(
        state,
        step,
        batches,
        num_steps=num_steps,
        workdir=workdir,
        checkpoint_every=num_steps,
        log_every=1,
        progress=progress,
    )
    if result.preempted:
        raise SystemExit(f"preempted in {workdir} at step {int(result.state.step)}; rerun to resume")
    common.save_params(workdir, result.state.params)
    reporting.write_json(workdir / "final_metrics.json", result.metrics)
    return result.state.params


def sft_phase(cfg, arrays, params, workdir: pathlib.Path, *, apply, progress: bool):
    """CE (token mean) on ``arrays``' ``tokens``/``labels`` from ``params`` with ``cfg.opt`` (pre-training,
    warm-up)."""
    if _finished(workdir):
        return common.load_params(workdir, params)
    steps = int(cfg.steps)
    tx = train_lib.make_optimizer(common.optimizer_config(cfg.opt, total_steps=steps))
    objective = losses.SFTObjective("ce", reduction="token_mean")
    step = jax.jit(
        train_lib.make_train_step(losses.make_sft_loss_fn(apply, objective=objective), tx), donate_argnums=0
    )
    state = train_lib.TrainState.create(_copy(params), tx, seed=int(cfg.seed))
    batches = device_batches(arrays, batch_size=int(cfg.batch_size), seed=int(cfg.seed))
    return train_phase(workdir, state, step, batches, num_steps=steps, progress=progress)


def weight_config(branch: str, *, quantile: str, normalize: bool = True) -> wts.WeightConfig:
    """``standard`` or ``bon{N}``: ``w = N q^{N-1}``, sample-normalised to mean 1, no clip (SPEC §3.4)."""
    if branch == "standard":
        return wts.WeightConfig()
    if not (branch.startswith("bon") and branch[3:].isdigit() and int(branch[3:]) >= 1):
        raise ValueError(f"branch must be 'standard' or 'bon<N>' (e.g. bon4), got {branch!r}")
    return wts.WeightConfig(strategy="bon", n=int(branch[3:]), normalize=normalize, quantile=quantile)


def make_protein_rl_step(cfg, branch: str, *, setting: str, setup: Setup):
    """The jitted CAT RL step of one branch of ``setting`` (uncond | cond) and its optimizer."""
    tx = train_lib.make_optimizer(common.optimizer_config(cfg.opt, total_steps=int(cfg.steps)))
    step = rl.make_rl_step(
        setup.apply,
        tx,
        setup.make_cache,
        rollout=sampling.SampleConfig(**cfg.rollout.to_dict()),
        weights=weight_config(branch, **cfg.weights.to_dict()),
        advantages=adv.AdvantageConfig(**cfg.advantages.to_dict()),
        loss=losses.PolicyLossConfig(**cfg.loss.to_dict()),
        score_fn=setup.score_fns[setting],
        stop_tokens=setup.stop_tokens,
        pad_id=setup.pad_id,
    )
    return jax.jit(step, donate_argnums=0), tx


def rl_phase(cfg, branch, seed, params, workdir, *, setting, batches, compiled, progress, setup):
    """One RL run from ``params`` (also the frozen KL reference); the compiled step is shared across seeds."""
    if _finished(workdir):
        return common.load_params(workdir, params)
    if (setting, branch) not in compiled:
        compiled[setting, branch] = make_protein_rl_step(cfg, branch, setting=setting, setup=setup)
    step, tx = compiled[setting, branch]
    extra = {"reference": _copy(params)}
    w = weight_config(branch, **cfg.weights.to_dict())
    if w.strategy == "bon" and w.quantile == "history":
        extra["history"] = adv.RewardHistory.create()
    state = train_lib.TrainState.create(_copy(params), tx, seed=int(seed), extra=extra)
    return train_phase(workdir, state, step, batches, num_steps=int(cfg.steps), progress=progress)


def rl_setting(config, setting: str, init_params, prompts: dict, root: pathlib.Path, **kw) -> dict:
    """Every branch x seed of ``setting`` from ``init_params``: ``{label: [(seed, workdir, params)]}``.

    Unconditional: every step's batch is the same B BOS prompts; conditional: B of ``prompts`` per step in
    a seeded order (one per RL seed).
    """
    cfg = config[setting]
    b = int(cfg.prompts_per_step)
    bos = kw["setup"].bos_id
    fixed = {"prompts": jnp.full((b, 1), bos, jnp.int32), "lengths": jnp.ones((b,), jnp.int32)}
    models: dict = {}
    for branch in cfg.branches:
        for seed in cfg.seeds:
            wd = root / setting / branch / f"seed{seed}"
            if setting == "uncond":
                batches = lambda _: fixed
            else:
                batches = device_batches(prompts, batch_size=b, seed=int(seed))
            params = rl_phase(cfg, branch, seed, init_params, wd, setting=setting, batches=batches, **kw)
            models.setdefault(report_lib.BRANCH_LABELS[branch], []).append((seed, wd, params))
    return models


# ----------------------------------------------------------------------------- evaluation


def evaluate_model(setup: Setup, params, prompts, *, setting, config, path: pathlib.Path) -> dict:
    """Rewards and hydrophobicity ``[B, N]`` of a model's samples (cached in ``path``, an ``.npz``).

    Sampled with the setting's training rollout settings, one key (``config.eval.seed``) for every model.
    """
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    uncond = setting == "uncond"
    sample_cfg = sampling.SampleConfig(
        **{
            **config[setting].rollout.to_dict(),
            "num_samples": int(config.eval.uncond_samples if uncond else config.eval.cond_samples),
            "chunk": 1 if uncond else int(config.eval.chunk),
        }
    )
    tokens, mask = evaluation.generate(
        setup.apply,
        params,
        setup.make_cache,
        prompts["prompts"],
        prompts["lengths"],
        jax.random.key(int(config.eval.seed)),
        sample_cfg,
        stop_tokens=setup.stop_tokens,
        pad_id=setup.pad_id,
    )
    out = setup.pool_scores(tokens, mask, prompts, setting=setting)
    if reporting.is_writer():  # one cache file per model, written once in a multi-process run
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    return out


# ----------------------------------------------------------------------------- the experiment


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Every phase, branch and seed of the experiment; writes the report files; returns results.json."""
    t_start = time.perf_counter()
    root = pathlib.Path(workdir)
    out_dir = pathlib.Path(config.results_dir) if config.results_dir else root / "report"
    timings: dict[str, float] = {}
    runs = lambda setting: [
        root / setting / b / f"seed{s}" for b in config[setting].branches for s in config[setting].seeds
    ]
    pretrained_checkpoint = bool(config.model.get("checkpoint"))
    # Which phases do work in this call (the others resume from disk and keep their stored wall time).
    fresh = {
        "pretrain": not pretrained_checkpoint and not _finished(root / "pretrain"),
        "uncond_rl": not all(map(_finished, runs("uncond"))),
        "cond_warmup": not _finished(root / "cond_warmup"),
        "cond_rl": not all(map(_finished, runs("cond"))),
        "evaluate": not all(
            (wd / "eval.npz").exists()
            for wd in [root / "pretrain", root / "cond_warmup", *runs("uncond"), *runs("cond")]
        ),
    }
    progress = bool(config.progress)

    # "pretrain": pre-training from scratch, or loading the checkpoint (its wall time includes the data).
    t = time.perf_counter()
    if pretrained_checkpoint:
        ckpt, encoder = _load_checkpoint(config.model)
        arrays = read_data(config, ckpt.tokenizer)
        setup = checkpoint_setup(config, ckpt, encoder, arrays["pairs"])
        pretrained = setup.params
    else:
        setup = scratch_setup(config)
        arrays = read_data(config)  # every phase's data (seconds, counted in pre-training's wall time)
        pretrained = sft_phase(
            config.pretrain,
            arrays["pretrain"],
            setup.params,
            root / "pretrain",
            apply=setup.apply,
            progress=progress,
        )
    timings["pretrain"] = time.perf_counter() - t
    shared = {"compiled": {}, "progress": progress, "setup": setup}

    t = time.perf_counter()
    models = {"uncond": {report_lib.REFERENCES["uncond"]: [(None, root / "pretrain", pretrained)]}}
    models["uncond"].update(rl_setting(config, "uncond", pretrained, {}, root, **shared))
    timings["uncond_rl"] = time.perf_counter() - t

    t = time.perf_counter()
    warm = sft_phase(
        config.cond_warmup,
        arrays["cond_warmup"],
        pretrained,
        root / "cond_warmup",
        apply=setup.apply,
        progress=progress,
    )
    timings["cond_warmup"] = time.perf_counter() - t

    t = time.perf_counter()
    models["cond"] = {report_lib.REFERENCES["cond"]: [(None, root / "cond_warmup", warm)]}
    models["cond"].update(rl_setting(config, "cond", warm, arrays["cond_train"], root, **shared))
    timings["cond_rl"] = time.perf_counter() - t

    t = time.perf_counter()
    prompts = {
        "uncond": {"prompts": np.full((1, 1), setup.bos_id, np.int32), "lengths": np.ones(1, np.int32)},
        "cond": arrays["cond_test"],
    }
    pools = lambda setting, wd, params: evaluate_model(
        setup, params, prompts[setting], setting=setting, config=config, path=wd / "eval.npz"
    )
    evals = {  # setting -> label -> [(seed, workdir, pools)]
        setting: {
            label: [(s, wd, pools(setting, wd, p)) for s, wd, p in ms]
            for label, ms in models[setting].items()
        }
        for setting in SETTINGS
    }
    report = report_lib.results(
        config,
        evals,
        corpus=arrays["corpus"],
        cond_prompts=prompts["cond"],
        num_params=setup.model_cfg.num_params(),
        model=setup.description,
    )
    timings["evaluate"] = time.perf_counter() - t
    report["seconds"] = report_lib.phase_seconds(root / "timings.json", timings, fresh)
    report["seconds_this_call"] = round(time.perf_counter() - t_start, 1)
    report_lib.write(report, evals, out_dir)
    return report


def summary(config: ml_collections.ConfigDict, workdir: str, report: dict) -> str:
    """What the program prints: the report's table."""
    out = pathlib.Path(config.results_dir) if config.results_dir else pathlib.Path(workdir) / "report"
    return (out / "table.md").read_text()


if __name__ == "__main__":
    cli.program(run, summary, workdir_help="Where every phase's checkpoints, metrics and pools go.")
