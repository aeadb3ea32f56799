r"""Experiment 5 (SPEC §3.6, §4): diagonal-approximation ratio rho on trained models, weight curves, cosines.

Three outputs in ``--results`` (default ``results/diagnostics``):

* ``weight_curves.png``: the analytic CAT weights as functions of the success probability ``p``: Pass@N for
  N = 1, 4, 16, 64 and Majority (N, k) = (8, 3), (16, 4), (64, 26) (the paper's Table 3), in the log (SFT)
  form ``w = p F'(p) / F(p)`` and the raw (RL) form ``F'(p)`` (SPEC §1.3, Table 1).
* the train-N x test-N cosine table of the Pass@N SFT weight functions (App. E,
  :func:`cat_jax.diagnostics.passn_weight_cosine_table`).
* rho on the *trained* SFT models' answer distributions. 2-digit multiplication has a finite answer set: the
  10^4 four-digit strings followed by EOS; anything else the model can emit is "invalid". For each of the
  first ``--problems`` held-out problems the model's exact probability of every answer is computed by teacher
  forcing (the answer digits share prefixes: one batched pass over the 10^3 three-digit prefixes, then one
  cached step per last digit), the invalid mass is ``1 - sum``, and that ``10^4 + 1``-category distribution
  with the correct answer as target goes to :func:`cat_jax.diagnostics.sensitivity` (exact strict-plurality
  forced-vote sensitivities, ``rho = a / (a - C)``) for each budget in ``--ns``::

    python -m experiments.diagnostics                      # workdirs/paper/sft/seed0/* -> results/diagnostics
    python -m experiments.diagnostics --problems=20 --ns=8

A branch whose ``results.json`` does not exist yet (training still running) is skipped with a message.
The analytic curves, the cosine table and the markdown are in :mod:`experiments.diagnostics_report`.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from cat_jax import diagnostics, reporting
from cat_jax.models import llama
from cat_jax.tasks import arithmetic, tokenizers
from experiments import cli, common
from experiments.diagnostics_report import (
    FIG9_P_MAX,
    MAJORITY_NK,
    NAMES,
    PASSN_NS,
    SPEC_COSINES,
    markdown,
    plot_weight_curves,
    weight_curves,
)

BRANCHES = tuple(NAMES)
# float32 logits leave the answer masses summing to 1 only up to rounding; beyond this the 1 - sum is not
# rounding and the distribution is rejected rather than clamped.
ROUNDING = 1e-4


# ----------------------------------------------------------------------------- exact answer distributions


@functools.partial(jax.jit, static_argnames=("apply", "model_cfg", "answer_len"))
def _answer_log_probs(apply, model_cfg, params, prompt, digit_ids, eos_id, temperature, *, answer_len):
    """``[10^L]`` log-probability (temperature ``T``) of every ``L``-digit answer + EOS after ``prompt``.

    Index ``i`` is the answer whose digits spell ``i`` zero-padded. One pass over the ``10^(L-1)`` prefixes
    (prompt + first ``L-1`` digits) gives every digit's conditional; the KV cache of each prefix is then
    repeated for its 10 last digits and one decoding step gives ``P(EOS | prompt, answer)``.
    """
    m = 10 ** (answer_len - 1)
    p_len = prompt.shape[0]
    width = p_len + answer_len
    pref = np.array([[int(c) for c in f"{i:0{answer_len - 1}d}"] for i in range(m)], np.int32)
    pref = pref.reshape(m, answer_len - 1)
    tokens = jnp.concatenate([jnp.broadcast_to(prompt, (m, p_len)), digit_ids[pref]], axis=1)
    positions = jnp.broadcast_to(jnp.arange(width - 1, dtype=jnp.int32), (m, width - 1))
    cache = llama.init_cache(model_cfg, m, width)
    logits, cache = apply(params, tokens, positions, cache)
    logp = jax.nn.log_softmax(logits[:, p_len - 1 :].astype(jnp.float32) / temperature, axis=-1)
    digit_logp = logp[..., digit_ids]  # [m, L, 10]: answer digit j's conditional at slot j
    prefix_logp = jnp.sum(jnp.take_along_axis(digit_logp[:, : answer_len - 1], pref[..., None], 2)[..., 0], 1)
    last_logp = digit_logp[:, answer_len - 1]  # [m, 10]
    cache = jax.tree.map(lambda a: jnp.repeat(a, 10, axis=0), cache)
    last = jnp.tile(digit_ids, m)[:, None]
    logits2, _ = apply(params, last, jnp.full((10 * m, 1), width - 1, jnp.int32), cache)
    eos_logp = jax.nn.log_softmax(logits2[:, 0].astype(jnp.float32) / temperature, axis=-1)[:, eos_id]
    return (prefix_logp[:, None] + last_logp).reshape(-1) + eos_logp


def answer_distribution(log_p: np.ndarray) -> tuple[np.ndarray, float]:
    """``[10^L + 1]`` float64 distribution (answers, then invalid) and the raw ``1 - sum`` before rounding."""
    p = np.exp(np.asarray(log_p, np.float64))
    raw_invalid = float(1.0 - p.sum())
    if raw_invalid < -ROUNDING:
        raise ValueError(f"answer probabilities sum to {p.sum()} > 1 + {ROUNDING}: not float32 rounding")
    # Rounding of float32 logits can make 1 - sum slightly negative; that is 0 invalid mass, renormalised.
    dist = np.append(p, max(raw_invalid, 0.0))
    return dist / dist.sum(), raw_invalid


def _summary(values: Sequence[float]) -> dict:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"count": 0}
    return {
        "count": int(v.size),
        "mean": float(v.mean()),
        "se": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None,
        "median": float(np.median(v)),
        "q10": float(np.quantile(v, 0.1)),
        "q90": float(np.quantile(v, 0.9)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def diagnose_model(apply, model_cfg, params, data, *, problems: int, ns, temperature: float) -> dict:
    """Exact answer distributions of the first ``problems`` held-out prompts and rho at each budget."""
    tok = tokenizers.CharTokenizer(arithmetic.ALPHABETS["multiplication"])
    digit_ids = jnp.asarray(tok.encode("0123456789"), jnp.int32)
    answer_len = int(data.eval.target_lengths[0]) - 1
    records = []
    for i in range(problems):
        length = int(data.eval.lengths[i])
        prompt = jnp.asarray(data.eval.prompts[i, :length], jnp.int32)
        log_p = _answer_log_probs(
            apply,
            model_cfg,
            params,
            prompt,
            digit_ids,
            int(data.stop_tokens[0]),
            jnp.float32(temperature),
            answer_len=answer_len,
        )
        dist, raw_invalid = answer_distribution(jax.device_get(log_p))
        answer = tok.decode(data.eval.targets[i, : answer_len + 1].tolist())
        target = int(answer)
        rec = {
            "prompt": tok.decode(data.eval.prompts[i, 1:length].tolist()),
            "answer": answer,
            "p_target": float(dist[target]),
            "p_invalid": float(dist[-1]),
            "raw_one_minus_sum": raw_invalid,
            "p_top_rival": float(np.max(np.delete(dist[:-1], target))),
            "target_is_mode": bool(np.argmax(dist) == target),
            "rho": {},
        }
        for n in ns:
            if not 0 < dist[target] < 1:
                rec["rho"][str(n)] = {"rho": None, "reason": f"p_target = {dist[target]} is not in (0, 1)"}
                continue
            with jax.enable_x64(True):
                d = diagnostics.sensitivity(dist, target, n=n)
            rec["rho"][str(n)] = {"rho": d.rho, "a": d.a, "c_rival": d.c_rival, "reason": d.reason}
        records.append(rec)
    summary = {
        "p_target": _summary([r["p_target"] for r in records]),
        "p_invalid": _summary([r["p_invalid"] for r in records]),
        "target_is_mode": float(np.mean([r["target_is_mode"] for r in records])),
    }
    for n in ns:
        vals = [r["rho"][str(n)]["rho"] for r in records]
        summary[f"rho@{n}"] = {
            **_summary([v for v in vals if v is not None]),
            "undefined": sum(v is None for v in vals),
        }
        # Figure 9's problems all had p_target <= 10/32: the regime where the vote is far from saturated.
        hard = [
            v for v, r in zip(vals, records, strict=True) if v is not None and r["p_target"] <= FIG9_P_MAX
        ]
        summary[f"rho@{n}_p_le_{FIG9_P_MAX}"] = _summary(hard)
    return {"summary": summary, "problems": records}


# ----------------------------------------------------------------------------- the experiment


def run(
    workdir: str | pathlib.Path,
    results: str | pathlib.Path,
    *,
    branches: Sequence[str] = BRANCHES,
    config: str = "configs/sft/arith.py",
    overrides: dict | None = None,
    problems: int = 50,
    ns: Sequence[int] = (8, 16),
    command: str = "python -m experiments.diagnostics",
) -> dict:
    """Write ``weight_curves.png``, ``table.md`` and ``results.json`` to ``results``; return the payload."""
    started = time.perf_counter()
    bad = [b for b in branches if b not in BRANCHES]
    if bad:
        raise ValueError(f"branches must be among {list(BRANCHES)}, got {bad}")
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 1:
        raise ValueError(f"ns must be budgets >= 1, got {ns}")
    out = pathlib.Path(results)
    out.mkdir(parents=True, exist_ok=True)

    curves = weight_curves()
    plot_weight_curves(curves, out / "weight_curves.png", command)
    cos = np.asarray(diagnostics.passn_weight_cosine_table(PASSN_NS), np.float64)

    cfg = common.load_config(config, overrides)
    if cfg.task.name != "multiply":
        raise ValueError(f"the exact answer enumeration needs task.name='multiply', got {cfg.task.name!r}")
    data = common.task_data(cfg.task)
    if problems < 1 or problems > len(data.eval.prompts):
        raise ValueError(f"problems must be in [1, {len(data.eval.prompts)}] (held-out size), got {problems}")
    model_cfg = common.model_config(cfg, data)
    graphdef, template = llama.init(model_cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)
    models, skipped = {}, {}
    for branch in branches:
        run_dir = pathlib.Path(workdir) / branch
        if not (run_dir / "results.json").exists():
            skipped[branch] = f"{run_dir / 'results.json'} does not exist (training not finished)"
            logging.warning("skipping %s: %s", branch, skipped[branch])
            cli.say(f"skipping {branch}: {skipped[branch]}", flush=True)
            continue
        t0 = time.perf_counter()
        params = common.load_params(run_dir, template)
        models[branch] = diagnose_model(
            apply,
            model_cfg,
            params,
            data,
            problems=problems,
            ns=ns,
            temperature=float(cfg.eval.temperature),
        )
        models[branch]["seconds"] = round(time.perf_counter() - t0, 1)
        cli.say(f"{branch}: {json.dumps(models[branch]['summary'])}", flush=True)

    seconds = round(time.perf_counter() - started, 1)
    payload = {
        "command": command,
        "workdir": str(workdir),
        "config": config,
        "overrides": overrides or {},
        "problems": problems,
        "answer_categories": 10 ** (int(data.eval.target_lengths[0]) - 1) + 1,
        "temperature": float(cfg.eval.temperature),
        "ns": ns,
        "wall_seconds": seconds,
        "weight_curves": {
            "p_grid_points": len(curves["p"]),
            "passn_ns": list(PASSN_NS),
            "majority_nk": [list(x) for x in MAJORITY_NK],
        },
        "cosine_table": {
            "ns": list(PASSN_NS),
            "values": cos.tolist(),
            "max_abs_diff_vs_spec": float(np.max(np.abs(cos - SPEC_COSINES))),
        },
        "skipped": skipped,
        "models": models,
    }
    reporting.write_json(out / "results.json", payload)
    reporting.write_text(out / "table.md", markdown(payload))
    return payload


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()  # jax.distributed when asked (flags, env or a detected cluster); logs the topology
    command = cli.command("experiments.diagnostics")
    run(
        _WORKDIR.value,
        _RESULTS.value,
        branches=_BRANCHES.value,
        config=_CONFIG.value,
        problems=_PROBLEMS.value,
        ns=[int(n) for n in _NS.value],
        command=command.strip(),
    )


if __name__ == "__main__":
    # Flags are defined only when run as a program, so several experiment modules can be imported together.
    _WORKDIR = flags.DEFINE_string(
        "workdir", "workdirs/paper/sft/seed0", "Folder holding one SFT workdir per branch."
    )
    _BRANCHES = flags.DEFINE_list(
        "branches", list(BRANCHES), f"Branches to diagnose (valid: {', '.join(BRANCHES)})."
    )
    _CONFIG = flags.DEFINE_string(
        "config", "configs/sft/arith.py", "The config the branches were trained with."
    )
    _RESULTS = flags.DEFINE_string("results", "results/diagnostics", "Output folder.")
    _PROBLEMS = flags.DEFINE_integer(
        "problems", 50, "Held-out problems per model (the first ones of the eval split)."
    )
    _NS = flags.DEFINE_list("ns", ["8", "16"], "Plurality budgets N for rho.")
    app.run(main)
