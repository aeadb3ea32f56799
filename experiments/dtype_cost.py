r"""The numerical cost of bfloat16 compute: one trained model evaluated with float32 and bfloat16 matmuls.

The model's parameters stay float32; only ``LlamaConfig.compute_dtype`` changes (matmul inputs and KV cache in
bfloat16, float32 accumulation, softmax, log-softmax and sampling). Three measures (issue 14 item 1):

1. sampled tokens identical to float32's with the same key (the draws of :func:`common.sample_and_score`):
   per generated position and per whole completion;
2. max |log p| difference on the held-out sequences, teacher-forced (per token and per sequence);
3. exact pass@k / maj@k of both, with their standard errors (must agree within SE).

Usage (the parameters are ``config.init_from``'s final ``params/``, e.g. a warm-up)::

    python -m experiments.sft --config=configs/sft/arith.py:warmup --workdir=/tmp/cat/warmup
    python -m experiments.dtype_cost --config=configs/sft/arith.py:warmup \
        --config.init_from=/tmp/cat/warmup --workdir=/tmp/cat/dtype_cost

Writes ``results.json`` into the workdir (committed run: results/dtype_cost/).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cat_jax import evaluation, reporting, sampling
from cat_jax.models import llama
from experiments import cli, common

DTYPES = ("float32", "bfloat16")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Evaluate ``config.init_from``'s parameters with float32 and bfloat16 compute; write results.json."""
    if not config.init_from:
        raise ValueError("config.init_from must name the workdir of a finished run whose params/ to evaluate")
    data = common.task_data(config.task)
    base = common.model_config(config, data)
    _, template = llama.init(base, jax.random.key(0))
    params = common.load_params(config.init_from, template)
    ks = [k for k in config.eval.ks if k <= int(config.eval.num_samples)]
    ev = data.eval
    target_mask = np.arange(ev.targets.shape[1])[None, :] < ev.target_lengths[:, None]
    seqs, seq_mask = sampling.join(
        jnp.asarray(ev.prompts),
        jnp.asarray(ev.lengths),
        jnp.asarray(ev.targets)[:, None],
        jnp.asarray(target_mask)[:, None],
        pad_id=data.pad_id,
    )
    samples, token_logp, curves = {}, {}, {}
    for name in DTYPES:
        cfg = dataclasses.replace(base, compute_dtype=name)
        apply = llama.decoder(llama.abstract(cfg)[0])
        sample_cfg = sampling.SampleConfig(
            num_samples=int(config.eval.num_samples),
            max_new_tokens=int(data.max_new_tokens),
            temperature=float(config.eval.temperature),
            chunk=int(config.eval.chunk),
        )
        samples[name] = evaluation.generate(
            apply,
            params,
            lambda b, s, cfg=cfg: llama.init_cache(cfg, b, s),
            ev.prompts,
            ev.lengths,
            jax.random.key(int(config.eval.seed)),
            sample_cfg,
            stop_tokens=data.stop_tokens,
            pad_id=data.pad_id,
        )
        score = jax.jit(sampling.sequence_log_probs, static_argnums=0)
        token_logp[name] = np.asarray(score(apply, params, seqs[:, 0], seq_mask[:, 0]))
        curves[name] = evaluation.curves(data.score(*samples[name]), ks)

    (t32, m32), (t16, m16) = samples["float32"], samples["bfloat16"]
    generated = m32 | m16  # a position either run generated
    same_pos = (t32 == t16) & (m32 == m16)
    same_seq = np.all(same_pos | ~generated, axis=-1)
    tok_diff = np.abs(token_logp["bfloat16"] - token_logp["float32"])[np.asarray(seq_mask[:, 0])]
    seq_diff = np.abs(token_logp["bfloat16"].sum(-1) - token_logp["float32"].sum(-1))
    agreement = {}
    for metric in curves["float32"]:
        a, b = curves["float32"][metric], curves["bfloat16"][metric]
        diff = np.abs(np.asarray(b.mean) - np.asarray(a.mean))
        se = np.maximum(np.asarray(a.se), np.asarray(b.se))
        agreement[metric] = {
            "k": [int(k) for k in a.ks],
            "abs_diff": [float(d) for d in diff],
            "se": [float(s) for s in se],
            "within_se": bool(np.all(diff <= se)),
        }
    report = {
        "command": cli.command("experiments.dtype_cost"),
        "init_from": str(config.init_from),
        "model": dataclasses.asdict(base),
        "eval_problems": int(ev.prompts.shape[0]),
        "eval_samples": int(config.eval.num_samples),
        "temperature": float(config.eval.temperature),
        "identical_token_fraction": float(same_pos[generated].mean()),
        "identical_completion_fraction": float(same_seq.mean()),
        "generated_positions": int(generated.sum()),
        "max_abs_token_logp_diff": float(tok_diff.max()),
        "mean_abs_token_logp_diff": float(tok_diff.mean()),
        "max_abs_sequence_logp_diff": float(seq_diff.max()),
        "scored_tokens": int(tok_diff.size),
        "agreement": agreement,
        "curves": {n: {m: evaluation.curve_record(c) for m, c in cs.items()} for n, cs in curves.items()},
    }
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    reporting.write_json(out / "results.json", report)
    return report


def summary(config, workdir: str, report: dict) -> str:
    """The scalar measures and the agreement verdicts (the curves are in results.json)."""
    keys = [k for k in report if k.startswith(("identical", "max_abs", "mean_abs"))]
    lines = [f"{k}: {report[k]:.6g}" for k in keys]
    lines += [f"{m} within SE at every k: {a['within_se']}" for m, a in report["agreement"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    cli.program(run, summary, workdir_help="Where results.json goes.")
