r"""Protein Best-of-N at CPU scale: the paper's Table 6 analogue (SPEC §3.4, §5), every phase in one command.

    python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein

1. **Pre-training**: a tiny Llama-style protein LM learns ``cat_jax.tasks.protein.pretraining_corpus`` (most
   sequences at hydrophobicity h ~ 0.35-0.45, 3% near 0.75) from scratch, next-token CE on ``BOS seq EOS``.
   Its samples play ProtGPT2's part: mass at the 4-height reward mode, little at the 12-height one.
2. **Unconditional RL** from it (prompt = BOS): standard group-advantage RL vs Best-of-N weights
   ``w = N q^{N-1}`` with reward-history quantiles, N = 2, 4, 8 (SPEC §2.3, §2.5), one run per seed.
3. **Conditional warm-up** on the synthetic input -> target pairs (``BOS input '>' target EOS``, target
   supervised), then **conditional RL**: standard vs BoN-2/4/8 with within-prompt quantiles.
4. **Evaluation**: one pool of samples per unconditional model, many samples per held-out conditional prompt;
   exact expected best-of-k reward with and without replacement (:func:`cat_jax.operators.best_of_k`),
   mean ± SE across seeds; sample hydrophobicity histograms.

Rewards are SPEC §3.4's, computed from token ids inside the jitted RL step (:func:`unconditional_rewards`,
:func:`conditional_rewards`); they equal the Python references of ``cat_jax.tasks.protein`` on the decoded
text. Every phase auto-resumes from its folder under the workdir; outputs (``results.json``, ``table.md``,
``best_of_k.png``, ``hydrophobicity.png``) go to ``config.results_dir``.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from jaxtyping import Array, ArrayLike, Bool, Float, Int
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from ml_collections import config_flags

from cat_jax import advantages as adv
from cat_jax import evaluation, losses, operators, rl, train_lib
from cat_jax import weights as wts
from cat_jax.models import llama
from cat_jax.tasks import protein
from cat_jax.tasks.tokenizers import IGNORE
from experiments import common

# Character vocabulary (``protein.tokenizer()``): pad 0, BOS 1, EOS 2, the 20 residues, and '>' closing a
# conditional prompt (the character-level stand-in for SPEC's "Input: ... Output:" text; it is not an amino
# acid, so a sample that emits it is invalid, as prose is for ProtGPT2).
SEP = protein.SEPARATOR
TOKENIZER = protein.tokenizer()
PAD, BOS, EOS = TOKENIZER.pad_id, TOKENIZER.bos_id, TOKENIZER.eos_id
SEP_ID = TOKENIZER.encode(SEP)[0]
_IS_RESIDUE = np.isin(np.arange(TOKENIZER.vocab_size), TOKENIZER.encode(protein.ALPHABET))
_IS_HYDROPHOBIC = np.isin(np.arange(TOKENIZER.vocab_size), TOKENIZER.encode(protein.HYDROPHOBIC))
UNCOND_MIN_LEN, COND_MIN_LEN, INVALID_REWARD = 10, 5, -5.0
BRANCH_LABELS = {"standard": "Standard RL", "bon2": "BoN-2", "bon4": "BoN-4", "bon8": "BoN-8"}
# SPEC §5 Table 6 (ProtGPT2), expected max reward of k samples with replacement, for the side-by-side table.
PAPER = {
    "uncond": {
        "ks": [1, 2, 4, 8, 16, 32, 64],
        "Standard RL": [3.18, 4.20, 5.30, 6.54, 8.25, 10.06, 11.40],
        "BoN-2": [7.97, 10.16, 11.41, 11.93, 12.10, 12.15, 12.16],
        "BoN-4": [9.73, 11.33, 11.92, 12.10, 12.15, 12.16, 12.16],
        "BoN-8": [9.82, 11.53, 12.04, 12.14, 12.16, 12.16, 12.16],
    },
    "cond": {
        "ks": [1, 2, 4, 8, 16, 32],
        "Standard RL": [7.26, 7.70, 8.02, 8.31, 8.60, 8.89],
        "BoN-2": [5.36, 7.64, 8.84, 9.48, 9.86, 9.96],
        "BoN-4": [5.82, 7.49, 9.05, 9.61, 9.86, 9.94],
        "BoN-8": [5.67, 7.55, 8.96, 9.40, 9.80, 9.94],
    },
}


# ----------------------------------------------------------------------------- rewards on token ids


def residue_counts(
    completions: Int[ArrayLike, "*b l"], mask: Bool[ArrayLike, "*b l"]
) -> tuple[Int[Array, "*b"], Int[Array, "*b"], Bool[Array, "*b"]]:
    """``(length, hydrophobic count, invalid)`` of the text each completion decodes to.

    Decoding as the reference does (``CharTokenizer.decode``, then SPEC's whitespace/upper-case clean-up):
    the text stops at the first EOS and reserved ids (pad, BOS) are skipped; any other non-residue
    character ('>') makes the sequence invalid.
    """
    tok = jnp.asarray(completions)
    m = jnp.asarray(mask, bool)
    before_eos = m & (jnp.cumsum(m & (tok == EOS), axis=-1) == 0)
    residue = before_eos & jnp.asarray(_IS_RESIDUE)[tok]
    hydrophobic = before_eos & jnp.asarray(_IS_HYDROPHOBIC)[tok]
    invalid = jnp.any(before_eos & (tok >= 3) & ~jnp.asarray(_IS_RESIDUE)[tok], axis=-1)
    return residue.sum(-1), hydrophobic.sum(-1), invalid


def unconditional_rewards(
    completions: Int[ArrayLike, "*b l"], mask: Bool[ArrayLike, "*b l"]
) -> Float[Array, "*b"]:
    r"""SPEC §3.4 (App. L): ``-5`` if shorter than 10 or invalid, else
    ``4 exp(-(h-0.35)^2/0.05) + 12 exp(-(h-0.75)^2/0.015) - 2·1[0.45 < h < 0.60]``.

    The window test runs on the integers (``20c > 9n`` and ``5c < 3n``), which is exact and agrees with the
    float64 reference: ``h = c/n`` is never within rounding distance of 0.45 or 0.6 unless equal to it.
    """
    n, c, invalid = residue_counts(completions, mask)
    h = c.astype(jnp.float32) / jnp.maximum(n, 1).astype(jnp.float32)
    r = 4.0 * jnp.exp(-jnp.square(h - 0.35) / 0.05) + 12.0 * jnp.exp(-jnp.square(h - 0.75) / 0.015)
    r = r - 2.0 * ((20 * c > 9 * n) & (5 * c < 3 * n)).astype(jnp.float32)
    return jnp.where((n >= UNCOND_MIN_LEN) & ~invalid, r, INVALID_REWARD)


@functools.lru_cache(maxsize=8)
def copy_window(max_input: int, max_output: int) -> np.ndarray:
    """``[n_in, c_in, n, c]``: whether App. M's copy penalty applies, decided in float64 like the reference.

    ``|h - h_in| < 0.1 and |h_in - 0.5| > 0.1`` has exact ties at these lengths (h = 0.3, h_in = 0.2 is
    common) that float64 resolves one way and float32 another; a table of the reference's own float64
    comparisons over every (length, count) pair keeps the jitted reward equal to it.
    """
    n_in = np.arange(max_input + 1)[:, None, None, None]
    c_in = np.arange(max_input + 1)[None, :, None, None]
    n = np.arange(max_output + 1)[None, None, :, None]
    c = np.arange(max_output + 1)[None, None, None, :]
    h_in, h = c_in / np.maximum(n_in, 1), c / np.maximum(n, 1)
    return (np.abs(h - h_in) < 0.1) & (np.abs(h_in - 0.5) > 0.1)


def conditional_rewards(
    completions: Int[ArrayLike, "b m l"],
    mask: Bool[ArrayLike, "b m l"],
    input_length: Int[ArrayLike, " b"],
    input_hydrophobic: Int[ArrayLike, " b"],
    *,
    max_input: int,
) -> Float[Array, "b m"]:
    r"""SPEC §3.4 (App. M): ``-5`` if shorter than 5 or invalid, else
    ``10 exp(-(h - (1 - h_in))^2 / 0.05) - 2·1[|h - h_in| < 0.1 ∧ |h_in - 0.5| > 0.1]``.

    ``input_length`` / ``input_hydrophobic`` are the residue and hydrophobic counts of each prompt's input
    sequence (at most ``max_input`` long, a static bound).
    """
    n, c, invalid = residue_counts(completions, mask)
    n_in = jnp.asarray(input_length)[:, None]
    c_in = jnp.asarray(input_hydrophobic)[:, None]
    h = c.astype(jnp.float32) / jnp.maximum(n, 1).astype(jnp.float32)
    h_in = c_in.astype(jnp.float32) / jnp.maximum(n_in, 1).astype(jnp.float32)
    r = 10.0 * jnp.exp(-jnp.square(h - (1.0 - h_in)) / 0.05)
    window = jnp.asarray(copy_window(max_input, completions.shape[-1]))[n_in, c_in, n, c]
    r = r - 2.0 * window.astype(jnp.float32)
    return jnp.where((n >= COND_MIN_LEN) & ~invalid, r, INVALID_REWARD)


# One compile per pool shape instead of one per eager op (evaluation and tests call these on host arrays).
_jit_counts = jax.jit(residue_counts)
_jit_uncond = jax.jit(unconditional_rewards)
_jit_cond = jax.jit(conditional_rewards, static_argnames="max_input")


def _scores(rewards: Array, completions: Array, mask: Array, min_len: int) -> rl.RolloutScores:
    n, _, invalid = residue_counts(completions, mask)
    # Best-of-N needs no answer clusters: one id per prompt keeps RolloutScores' [B, M] contract.
    return rl.RolloutScores(rewards, jnp.zeros(rewards.shape, jnp.int32), (n >= min_len) & ~invalid)


def unconditional_scores(completions: Array, mask: Array, batch: dict) -> rl.RolloutScores:
    """``score_fn`` of the unconditional RL step."""
    del batch
    return _scores(unconditional_rewards(completions, mask), completions, mask, UNCOND_MIN_LEN)


def conditional_scores(completions: Array, mask: Array, batch: dict) -> rl.RolloutScores:
    """``score_fn`` of the conditional RL step (``batch``: ``input_length``, ``input_hydrophobic``)."""
    max_input = batch["prompts"].shape[1] - 2  # BOS + input + '>'
    r = conditional_rewards(
        completions, mask, batch["input_length"], batch["input_hydrophobic"], max_input=max_input
    )
    return _scores(r, completions, mask, COND_MIN_LEN)


# ----------------------------------------------------------------------------- data


def _pad(rows: list[list[int]], width: int | None = None) -> np.ndarray:
    width = width or max(map(len, rows))
    out = np.full((len(rows), width), PAD, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def pretraining_data(cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``BOS seq EOS`` rows and their labels (every token after BOS), plus the sequences."""
    seqs = protein.pretraining_corpus(
        int(cfg.num_sequences), seed=int(cfg.corpus_seed), max_len=int(cfg.max_len)
    )
    tokens = _pad([TOKENIZER.encode(s, bos=True, eos=True) for s in seqs])
    labels = np.where(tokens != PAD, tokens, IGNORE)
    labels[:, 0] = IGNORE
    return tokens, labels.astype(np.int32), seqs


def conditional_sft_data(pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """``BOS input '>' target EOS`` rows; labels on the target and EOS only (SPEC §3.1 layout)."""
    rows, labels = [], []
    for src, tgt in pairs:
        prompt = TOKENIZER.encode(src + SEP, bos=True)
        target = TOKENIZER.encode(tgt, eos=True)
        rows.append(prompt + target)
        labels.append([IGNORE] * len(prompt) + target)
    tokens = _pad(rows)
    lab = np.full(tokens.shape, IGNORE, np.int32)
    for i, r in enumerate(labels):
        lab[i, : len(r)] = r
    return tokens, lab


def conditional_prompts(pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Right-padded ``BOS input '>'`` prompts with the input's residue and hydrophobic counts."""
    prompts = [TOKENIZER.encode(src + SEP, bos=True) for src, _ in pairs]
    width = 2 + max(len(src) for src, _ in pairs)
    return {
        "prompts": _pad(prompts, width),
        "lengths": np.array([len(p) for p in prompts], np.int32),
        "input_length": np.array([len(src) for src, _ in pairs], np.int32),
        "input_hydrophobic": np.array(
            [sum(ch in protein.HYDROPHOBIC for ch in s) for s, _ in pairs], np.int32
        ),
    }


# ----------------------------------------------------------------------------- phases


def _epoch_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int):
    """``batches(step)``: a function of the step only (reshuffled each epoch), so resumes are exact."""
    n = len(next(iter(arrays.values())))
    per_epoch = max(n // batch_size, 1)

    def batches(step: int):
        epoch, i = divmod(step, per_epoch)
        idx = np.random.default_rng([seed, epoch]).permutation(n)[i * batch_size : (i + 1) * batch_size]
        return {k: jnp.asarray(v[idx]) for k, v in arrays.items()}

    return batches


def _copy(tree):
    # Every phase donates its state to the jitted step; fresh buffers keep the shared initial weights alive.
    return jax.tree.map(jnp.array, tree)


def _finished(workdir: pathlib.Path) -> bool:
    return (workdir / "params").exists() and (workdir / "final_metrics.json").exists()


def _run_phase(workdir: pathlib.Path, state, step, batches, *, num_steps: int, progress: bool) -> dict:
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
    common.write_json(workdir / "final_metrics.json", result.metrics)
    return result.state.params


def sft_phase(cfg, tokens, labels, params, workdir: pathlib.Path, *, apply, progress: bool):
    """CE (token mean) on ``tokens``/``labels`` from ``params``; cosine schedule, AdamW wd 0.01, clip 1."""
    if _finished(workdir):
        return common.load_params(workdir, params)
    steps = int(cfg.steps)
    opt = train_lib.OptimizerConfig(
        lr=float(cfg.lr),
        schedule="cosine",
        total_steps=steps,
        warmup_steps=max(steps // 10, 1) if steps > 1 else 0,
        weight_decay=0.01,
        clip_norm=1.0,
    )
    tx = train_lib.make_optimizer(opt)
    objective = losses.SFTObjective("ce", reduction="token_mean")
    step = jax.jit(
        train_lib.make_train_step(losses.make_sft_loss_fn(apply, objective=objective), tx), donate_argnums=0
    )
    state = train_lib.TrainState.create(_copy(params), tx, seed=int(cfg.seed))
    batches = _epoch_batches(
        {"tokens": tokens, "labels": labels}, batch_size=int(cfg.batch_size), seed=int(cfg.seed)
    )
    return _run_phase(workdir, state, step, batches, num_steps=steps, progress=progress)


def weight_config(branch: str, *, quantile: str) -> wts.WeightConfig:
    """``standard`` or ``bon{N}``: ``w = N q^{N-1}``, sample-normalised to mean 1, no clip (SPEC §3.4)."""
    if branch == "standard":
        return wts.WeightConfig()
    if not (branch.startswith("bon") and branch[3:].isdigit() and int(branch[3:]) >= 1):
        raise ValueError(f"branch must be 'standard' or 'bon<N>' (e.g. bon4), got {branch!r}")
    return wts.WeightConfig(strategy="bon", n=int(branch[3:]), normalize=True, quantile=quantile)


def make_protein_rl_step(cfg, branch: str, *, setting: str, apply, model_cfg):
    """The jitted CAT RL step of one branch (``setting`` uncond | cond) and its optimizer."""
    quantile = "history" if setting == "uncond" else "within_prompt"
    opt = train_lib.OptimizerConfig(
        lr=float(cfg.lr), schedule="constant", total_steps=int(cfg.steps), weight_decay=0.01, clip_norm=1.0
    )
    tx = train_lib.make_optimizer(opt)
    step = rl.make_rl_step(
        apply,
        tx,
        functools.partial(llama.init_cache, model_cfg),
        rollout=rl.RolloutConfig(
            num_samples=int(cfg.num_samples),
            max_new_tokens=int(cfg.max_new_tokens),
            temperature=float(cfg.temperature),
            top_k=int(cfg.top_k),
            top_p=float(cfg.top_p),
        ),
        weights=weight_config(branch, quantile=quantile),
        advantages=adv.AdvantageConfig(clip=float(cfg.advantage_clip)),
        loss=losses.PolicyLossConfig(surrogate="reinforce", kl_beta=float(cfg.kl_beta)),
        score_fn=unconditional_scores if setting == "uncond" else conditional_scores,
        stop_tokens=(EOS,),
        pad_id=PAD,
    )
    return jax.jit(step, donate_argnums=0), tx


def rl_phase(cfg, branch, seed, params, workdir, *, setting, batches, compiled, progress, apply, model_cfg):
    """One RL run from ``params`` (also the frozen KL reference); the compiled step is shared across seeds."""
    if _finished(workdir):
        return common.load_params(workdir, params)
    if (setting, branch) not in compiled:
        compiled[setting, branch] = make_protein_rl_step(
            cfg, branch, setting=setting, apply=apply, model_cfg=model_cfg
        )
    step, tx = compiled[setting, branch]
    extra = {"reference": _copy(params)}
    if branch != "standard" and setting == "uncond":
        extra["history"] = adv.RewardHistory.create()
    state = train_lib.TrainState.create(_copy(params), tx, seed=int(seed), extra=extra)
    return _run_phase(workdir, state, step, batches, num_steps=int(cfg.steps), progress=progress)


# ----------------------------------------------------------------------------- evaluation


def sample_pool(apply, params, model_cfg, prompts: dict, *, num_samples, rl_cfg, chunk, seed) -> tuple:
    """``tokens, mask [B, N, L]`` sampled with the training rollout's settings."""
    sample_cfg = evaluation.SampleConfig(
        num_samples=int(num_samples),
        max_new_tokens=int(rl_cfg.max_new_tokens),
        temperature=float(rl_cfg.temperature),
        top_k=int(rl_cfg.top_k),
        top_p=float(rl_cfg.top_p),
        chunk=int(chunk),
    )
    return evaluation.generate(
        apply,
        params,
        functools.partial(llama.init_cache, model_cfg),
        prompts["prompts"],
        prompts["lengths"],
        jax.random.key(int(seed)),
        sample_cfg,
        stop_tokens=(EOS,),
        pad_id=PAD,
    )


def evaluate_model(apply, params, model_cfg, prompts, *, setting, config, path: pathlib.Path) -> dict:
    """Rewards and hydrophobicity ``[B, N]`` of a model's samples (cached in ``path``, an ``.npz``)."""
    if path.exists():
        with np.load(path) as f:
            return dict(f)
    uncond = setting == "uncond"
    tokens, mask = sample_pool(
        apply,
        params,
        model_cfg,
        prompts,
        num_samples=config.eval.uncond_samples if uncond else config.eval.cond_samples,
        rl_cfg=config.uncond if uncond else config.cond,
        chunk=1 if uncond else config.eval.chunk,
        seed=config.eval.seed,
    )
    if uncond:
        rewards = _jit_uncond(tokens, mask)
    else:
        max_input = prompts["prompts"].shape[1] - 2
        rewards = _jit_cond(
            tokens, mask, prompts["input_length"], prompts["input_hydrophobic"], max_input=max_input
        )
    n, c, invalid = (np.asarray(x) for x in _jit_counts(tokens, mask))
    h = np.where((n > 0) & ~invalid, c / np.maximum(n, 1), np.nan)
    out = {"rewards": np.asarray(rewards, np.float64), "h": h, "length": n}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def curves_of(rewards: np.ndarray, ks: list[int]) -> dict[str, operators.Curve]:
    """Expected best-of-k over each prompt's pool: unbiased (no replacement) and the paper's (replacement)."""
    r = jnp.asarray(rewards, jnp.float32)
    return {
        name: operators.scaling_curve(operators.best_of_k, r, ks=ks, replacement=rep)
        for name, rep in (("without_replacement", False), ("with_replacement", True))
    }


def across_seeds(per_seed: list[np.ndarray], ks) -> operators.Curve:
    """Mean and SE (ddof 1) across seeds of per-seed curve means ``[K]``."""
    v = np.stack(per_seed)
    se = v.std(axis=0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.full(v.shape[1], np.nan)
    return operators.Curve(tuple(ks), jnp.asarray(v), jnp.asarray(v.mean(0)), jnp.asarray(se))


def _record(curve: operators.Curve) -> dict:
    # One seed, one prompt or a reference model has no SE: null in the JSON, not NaN.
    rec = evaluation.curve_record(curve)
    return {**rec, "se": [None if np.isnan(v) else v for v in rec["se"]]}


def _input_dependence(h: np.ndarray, prompts: dict) -> dict:
    """Least-squares slope and correlation of a prompt's mean output h on its input h (the target has -1)."""
    h_in = prompts["input_hydrophobic"] / prompts["input_length"]
    counts = np.isfinite(h).sum(-1)
    out = np.nansum(h, axis=-1) / np.maximum(counts, 1)
    keep = counts > 0
    slope = np.polyfit(h_in[keep], out[keep], 1)[0]
    return {"slope": float(slope), "corr": float(np.corrcoef(h_in[keep], out[keep])[0, 1])}


def _hist(h: np.ndarray, bins: np.ndarray) -> list[int]:
    return np.histogram(h[np.isfinite(h)], bins=bins)[0].tolist()


def _h_summary(h: np.ndarray) -> dict:
    f = h[np.isfinite(h)]
    return {
        "mean": float(f.mean()) if f.size else None,
        "frac_low_mode_0.30_0.50": float(np.mean((f >= 0.30) & (f <= 0.50))) if f.size else None,
        "frac_high_mode_0.65_0.85": float(np.mean((f >= 0.65) & (f <= 0.85))) if f.size else None,
        "frac_valid": float(np.isfinite(h).mean()),
    }


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
    # Which phases do work in this call (the others resume from disk and keep their stored wall time).
    fresh = {
        "pretrain": not _finished(root / "pretrain"),
        "uncond_rl": not all(map(_finished, runs("uncond"))),
        "cond_warmup": not _finished(root / "cond_warmup"),
        "cond_rl": not all(map(_finished, runs("cond"))),
        "evaluate": not all(
            (wd / "eval.npz").exists()
            for wd in [root / "pretrain", root / "cond_warmup", *runs("uncond"), *runs("cond")]
        ),
    }
    model_cfg = llama.LlamaConfig.tiny(vocab_size=TOKENIZER.vocab_size, **config.model.to_dict())
    graphdef, init_params = llama.init(model_cfg, jax.random.key(int(config.pretrain.seed)))
    apply = llama.decoder(graphdef)
    progress = bool(config.progress)

    t = time.perf_counter()
    tokens, labels, corpus = pretraining_data(config.pretrain)
    pretrained = sft_phase(
        config.pretrain, tokens, labels, init_params, root / "pretrain", apply=apply, progress=progress
    )
    timings["pretrain"] = time.perf_counter() - t

    uncond_prompts = {"prompts": np.full((1, 1), BOS, np.int32), "lengths": np.ones(1, np.int32)}
    b = int(config.uncond.prompts_per_step)
    uncond_batch = {"prompts": jnp.full((b, 1), BOS, jnp.int32), "lengths": jnp.ones((b,), jnp.int32)}
    compiled: dict = {}
    models = {"uncond": {}, "cond": {}}  # setting -> label -> list of (seed, workdir, params)
    t = time.perf_counter()
    models["uncond"]["Pre-trained LM"] = [(None, root / "pretrain", pretrained)]
    for branch in config.uncond.branches:
        for seed in config.uncond.seeds:
            wd = root / "uncond" / branch / f"seed{seed}"
            params = rl_phase(
                config.uncond,
                branch,
                seed,
                pretrained,
                wd,
                setting="uncond",
                batches=lambda _: uncond_batch,
                compiled=compiled,
                progress=progress,
                apply=apply,
                model_cfg=model_cfg,
            )
            models["uncond"].setdefault(BRANCH_LABELS[branch], []).append((seed, wd, params))
    timings["uncond_rl"] = time.perf_counter() - t

    t = time.perf_counter()
    warm_tokens, warm_labels = conditional_sft_data(
        protein.conditional_pairs(int(config.cond_warmup.num_pairs), "warmup")
    )
    warm = sft_phase(
        config.cond_warmup,
        warm_tokens,
        warm_labels,
        pretrained,
        root / "cond_warmup",
        apply=apply,
        progress=progress,
    )
    timings["cond_warmup"] = time.perf_counter() - t
    t = time.perf_counter()
    train_prompts = conditional_prompts(
        protein.conditional_pairs(int(config.cond.num_train_prompts), "train")
    )
    models["cond"]["Conditional warm-up"] = [(None, root / "cond_warmup", warm)]
    for branch in config.cond.branches:
        for seed in config.cond.seeds:
            wd = root / "cond" / branch / f"seed{seed}"
            batches = _epoch_batches(
                train_prompts, batch_size=int(config.cond.prompts_per_step), seed=int(seed)
            )
            params = rl_phase(
                config.cond,
                branch,
                seed,
                warm,
                wd,
                setting="cond",
                batches=batches,
                compiled=compiled,
                progress=progress,
                apply=apply,
                model_cfg=model_cfg,
            )
            models["cond"].setdefault(BRANCH_LABELS[branch], []).append((seed, wd, params))
    timings["cond_rl"] = time.perf_counter() - t

    t = time.perf_counter()
    test_prompts = conditional_prompts(protein.conditional_pairs(int(config.eval.cond_prompts), "test"))
    prompts = {"uncond": uncond_prompts, "cond": test_prompts}
    ks = {"uncond": list(config.eval.uncond_ks), "cond": list(config.eval.cond_ks)}
    bins = np.linspace(0.0, 1.0, 21)
    report: dict = {
        "command": config.command,
        "config": config.to_dict(),
        "num_params": model_cfg.num_params(),
    }
    corpus_h = np.array([protein.hydrophobicity(s) for s in corpus])
    report["pretraining_corpus_h"] = {**_h_summary(corpus_h), "histogram": _hist(corpus_h, bins)}
    report["h_bins"] = bins.tolist()
    report["paper_table6_with_replacement"] = PAPER
    plot_curves: dict = {}
    h_pools: dict = {}
    for setting in ("uncond", "cond"):
        report[setting] = {}
        for label, runs in models[setting].items():
            per_seed, pools = [], []
            for seed, wd, params in runs:
                ev = evaluate_model(
                    apply,
                    params,
                    model_cfg,
                    prompts[setting],
                    setting=setting,
                    config=config,
                    path=wd / "eval.npz",
                )
                cs = curves_of(ev["rewards"], ks[setting])
                rec = {name: _record(c) for name, c in cs.items()}
                rec.update(seed=seed, mean_reward=float(ev["rewards"].mean()), h=_h_summary(ev["h"]))
                rec["frac_invalid_reward"] = float(np.mean(ev["rewards"] == INVALID_REWARD))
                fm = wd / "final_metrics.json"
                if seed is not None and fm.exists():
                    rec["final_train_metrics"] = json.loads(fm.read_text())
                    rec["train_reward_mean"] = _reward_trace(wd / "metrics.jsonl")
                if setting == "cond":
                    rec["output_vs_input_h"] = _input_dependence(ev["h"], prompts["cond"])
                per_seed.append(rec)
                pools.append(ev["h"].reshape(-1))
            agg = {}
            for name in ("without_replacement", "with_replacement"):
                curve = across_seeds([np.array(r[name]["mean"]) for r in per_seed], ks[setting])
                agg[name] = _record(curve)
                plot_curves.setdefault((setting, name), {})[label] = curve
            h_all = np.concatenate(pools)
            h_pools.setdefault(setting, {})[label] = h_all
            report[setting][label] = {
                "seeds": len(per_seed),
                "across_seeds": agg,
                "per_seed": per_seed,
                "h": {**_h_summary(h_all), "histogram": _hist(h_all, bins)},
            }
            report[setting][label]["h"]["frac_invalid_reward"] = float(
                np.mean([r["frac_invalid_reward"] for r in per_seed])
            )
            if setting == "cond":
                slopes = [r["output_vs_input_h"]["slope"] for r in per_seed]
                report[setting][label]["h"]["slope_on_input_h"] = float(np.mean(slopes))
    timings["evaluate"] = time.perf_counter() - t
    report["seconds"] = _phase_seconds(root, timings, fresh)
    report["seconds_this_call"] = round(time.perf_counter() - t_start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    common.write_json(out_dir / "results.json", report)
    (out_dir / "table.md").write_text(markdown_report(report, ks))
    plot_best_of_k(plot_curves, out_dir / "best_of_k.png", command=config.command)
    plot_hydrophobicity(h_pools, out_dir / "hydrophobicity.png", command=config.command)
    return report


def _phase_seconds(root: pathlib.Path, measured: dict, fresh: dict) -> dict:
    """Wall seconds per phase: measured if the phase ran in this call, else as stored when it ran."""
    path = root / "timings.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    out = {k: round(v if fresh[k] or k not in stored else stored[k], 1) for k, v in measured.items()}
    out["total"] = round(sum(out.values()), 1)
    common.write_json(path, out)
    return out


def _reward_trace(path: pathlib.Path, every: int = 10) -> list[float]:
    """Mean training reward over consecutive windows of ``every`` steps (a compact learning curve)."""
    r = [json.loads(line)["reward/mean"] for line in path.open() if "reward/mean" in line]
    return [round(float(np.mean(r[i : i + every])), 3) for i in range(0, len(r), every)]


# ----------------------------------------------------------------------------- report


def _cell(mean: float, se: float) -> str:
    return f"{mean:.2f}" if not np.isfinite(se) else f"{mean:.2f} ± {se:.2f}"


def markdown_report(report: dict, ks: dict) -> str:
    """table.md: Table 6's layout (expected max reward of k samples), both estimators, the paper's rows."""
    cfg = report["config"]
    lines = [
        "# Protein Best-of-N (Table 6 analogue)\n",
        f"Regenerate with: `{report['command']}`\n",
        f"Model: {report['num_params']:,}-parameter Llama-style protein LM pre-trained from scratch. "
        "Numbers: "
        "exact expected maximum reward of k samples drawn from each model's pool, mean ± SE across RL seeds "
        "(reference rows without an RL seed show the single pool). Unconditional: one pool of "
        f"{cfg['eval']['uncond_samples']} samples per model; conditional: mean over "
        f"{cfg['eval']['cond_prompts']} "
        f"held-out prompts x {cfg['eval']['cond_samples']} samples.\n",
    ]
    titles = {
        "uncond": "Unconditional (reward-history quantiles)",
        "cond": "Conditional (within-prompt quantiles, after the conditional warm-up)",
    }
    for setting in ("uncond", "cond"):
        for name, what in (
            ("with_replacement", "with replacement (the paper's metric)"),
            ("without_replacement", "without replacement (unbiased, random k-subset of the pool)"),
        ):
            lines.append(f"\n## {titles[setting]}: best-of-k {what}\n")
            lines.append("| model (seeds) | " + " | ".join(f"@{k}" for k in ks[setting]) + " |")
            lines.append("|---" * (len(ks[setting]) + 1) + "|")
            for label, rec in report[setting].items():
                c = rec["across_seeds"][name]
                cells = [
                    _cell(m, s if s is not None else np.nan) for m, s in zip(c["mean"], c["se"], strict=True)
                ]
                lines.append(f"| {label} ({rec['seeds']}) | " + " | ".join(cells) + " |")
        paper = PAPER[setting]
        lines.append(f"\n### Paper (ProtGPT2, SPEC §5 Table 6), {titles[setting].split(' (')[0].lower()}\n")
        lines.append("| model | " + " | ".join(f"@{k}" for k in paper["ks"]) + " |")
        lines.append("|---" * (len(paper["ks"]) + 1) + "|")
        for label in BRANCH_LABELS.values():
            lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in paper[label]) + " |")
    lines.append(
        "\n## Samples: hydrophobicity h (all seeds pooled, samples with at least one residue and no '>') "
        "and the share of invalid samples (reward -5: shorter than the minimum length or not a protein)\n"
    )
    lines.append(
        "| setting | model | mean h | share h in [0.30, 0.50] | share h in [0.65, 0.85] | share R = -5 "
        "| slope of output h on input h (target -1) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    c = report["pretraining_corpus_h"]
    lines.append(
        f"| corpus | pre-training data | {c['mean']:.3f} | {c['frac_low_mode_0.30_0.50']:.2f} | "
        f"{c['frac_high_mode_0.65_0.85']:.2f} | 0.00 | |"
    )
    for setting in ("uncond", "cond"):
        for label, rec in report[setting].items():
            h = rec["h"]
            lines.append(
                f"| {setting} | {label} | {h['mean']:.3f} | {h['frac_low_mode_0.30_0.50']:.2f} | "
                f"{h['frac_high_mode_0.65_0.85']:.2f} | {h['frac_invalid_reward']:.2f} | "
                + (f"{h['slope_on_input_h']:.2f} |" if "slope_on_input_h" in h else "|")
            )
    secs = report["seconds"]
    lines.append(
        "\nWall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()) + ". Plots: best_of_k.png, "
        "hydrophobicity.png; every number: results.json.\n"
    )
    return "\n".join(lines)


def _draw_curves(ax, curves: dict[str, operators.Curve]) -> None:
    for label, c in curves.items():
        ks = np.asarray(c.ks)
        mean = np.asarray(c.mean, np.float64)
        se = np.nan_to_num(np.asarray(c.se, np.float64))
        style = "--" if label in ("Pre-trained LM", "Conditional warm-up") else "-"
        (line,) = ax.plot(ks, mean, style, marker="o", markersize=3, label=label)
        ax.fill_between(ks, mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.grid(True, alpha=0.3)


def _save(fig: Figure, path: pathlib.Path, command: str) -> None:
    # The command that regenerates the figure, in the image and in its PNG metadata.
    fig.text(0.005, 0.003, f"regenerate: {command}", fontsize=6, color="gray", va="bottom")
    fig.savefig(path, dpi=110, metadata={"Description": f"Regenerate with: {command}"})


def plot_best_of_k(curves: dict, path: pathlib.Path, *, command: str) -> None:
    """2 x 2 panels: unconditional / conditional x with / without replacement; SE bands across seeds."""
    fig = Figure(figsize=(10, 7.5))
    FigureCanvasAgg(fig)
    titles = {"uncond": "unconditional", "cond": "conditional"}
    for i, setting in enumerate(("uncond", "cond")):
        for j, name in enumerate(("with_replacement", "without_replacement")):
            ax = fig.add_subplot(2, 2, 2 * i + j + 1)
            _draw_curves(ax, curves[setting, name])
            ax.set_title(f"{titles[setting]}, {name.replace('_', ' ')}")
            ax.set_ylabel("expected max reward of k")
            ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _save(fig, path, command)


def plot_hydrophobicity(pools: dict, path: pathlib.Path, *, command: str) -> None:
    """Histogram of sample hydrophobicity per model (unconditional with the reward curve; conditional)."""
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    bins = np.linspace(0.0, 1.0, 21)  # h is a ratio of small integers: finer bins only show aliasing
    for i, (setting, title) in enumerate((("uncond", "unconditional"), ("cond", "conditional (outputs)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, h in pools[setting].items():
            f = h[np.isfinite(h)]
            ax.hist(f, bins=bins, density=True, histtype="step", linewidth=1.5, label=label)
        if setting == "uncond":
            grid = np.linspace(0, 1, 201)
            r = 4 * np.exp(-((grid - 0.35) ** 2) / 0.05) + 12 * np.exp(-((grid - 0.75) ** 2) / 0.015)
            r -= 2.0 * ((grid > 0.45) & (grid < 0.60))
            twin = ax.twinx()
            twin.plot(grid, r, color="gray", alpha=0.5, linewidth=1)
            twin.set_ylabel("reward R(h) (gray)")
        ax.set_xlabel("hydrophobicity h of a sample")
        ax.set_ylabel("density")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _save(fig, path, command)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    run(config, _WORKDIR.value)
    out = pathlib.Path(config.results_dir) if config.results_dir else pathlib.Path(_WORKDIR.value) / "report"
    print((out / "table.md").read_text())


if __name__ == "__main__":
    # Flags are defined only when run as a program, so several experiment modules can be imported together.
    _CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
    _WORKDIR = flags.DEFINE_string("workdir", None, "Where every phase's checkpoints, metrics and pools go.")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
