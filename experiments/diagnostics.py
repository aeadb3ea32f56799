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
"""

from __future__ import annotations

import functools
import json
import pathlib
import shlex
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cat_jax import diagnostics, objectives
from cat_jax.models import llama
from cat_jax.tasks import arithmetic, tokenizers
from experiments import common, paper

NAMES = {"warmup": "CE warm-up", **paper.SFT_BRANCHES}  # the SFT study's runs, in its order
BRANCHES = tuple(NAMES)
PASSN_NS = (1, 4, 16, 64)
MAJORITY_NK = ((8, 3), (16, 4), (64, 26))
# SPEC §3.6 (App. E), our independent computation: the table this script must reproduce.
SPEC_COSINES = np.array(
    [
        [1, 0.7409, 0.4180, 0.2160],
        [0.7409, 1, 0.7757, 0.4423],
        [0.4180, 0.7757, 1, 0.7775],
        [0.2160, 0.4423, 0.7775, 1],
    ]
)
# float32 logits leave the answer masses summing to 1 only up to rounding; beyond this the 1 - sum is not
# rounding and the distribution is rejected rather than clamped.
ROUNDING = 1e-4
FIG9_P_MAX = 0.3125  # largest p_target among the 81 problems of the paper's Figure 9 (SPEC §4.2)

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "workdirs/paper/sft/seed0", "Folder holding one SFT workdir per branch.")
flags.DEFINE_list("branches", list(BRANCHES), f"Branches to diagnose (valid: {', '.join(BRANCHES)}).")
flags.DEFINE_string("config", "configs/sft/arith.py", "The config the branches were trained with.")
flags.DEFINE_string("results", "results/diagnostics", "Output folder.")
flags.DEFINE_integer("problems", 50, "Held-out problems per model (the first ones of the eval split).")
flags.DEFINE_list("ns", ["8", "16"], "Plurality budgets N for rho.")


# ----------------------------------------------------------------------------- analytic parts


def weight_curves(points: int = 2001) -> dict:
    """Log (SFT) and raw (RL) CAT weights on a ``p`` grid for the Pass@N and Majority budgets."""
    p = np.linspace(0.0, 1.0, points)
    x = jnp.asarray(p)
    curves = {}
    for n in PASSN_NS:
        curves[f"Pass@{n}"] = (objectives.passn_sft_weight(x, n=n), objectives.passn_rl_weight(x, n=n))
    for n, k in MAJORITY_NK:
        curves[f"Maj ({n}, {k})"] = (
            objectives.majority_sft_weight(x, n=n, k=k),
            objectives.majority_rl_weight(x, n=n, k=k),
        )
    return {
        "p": p,
        "log": {name: np.asarray(s, np.float64) for name, (s, _) in curves.items()},
        "raw": {name: np.asarray(r, np.float64) for name, (_, r) in curves.items()},
    }


def plot_weight_curves(curves: dict, path: pathlib.Path, command: str) -> None:
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    titles = {
        "log": "log form (SFT weight)  w = p F'(p) / F(p)",
        "raw": "raw form (RL weight)  w = F'(p)",
    }
    for i, form in enumerate(("log", "raw")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (name, w) in enumerate(curves[form].items()):
            style = "-" if name.startswith("Pass") else "--"
            ax.plot(curves["p"], w, style, color=f"C{j}", label=name)
        ax.set_xlabel("p (probability of the correct answer)")
        ax.set_title(titles[form], fontsize=10)
        ax.set_yscale("log")  # the budgets span weights from 1e-3 to N; linear axes hide the Pass@N tails
        ax.set_ylim(1e-3, 100)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Description": f"made by: {command}"})


def cosine_markdown(table: np.ndarray) -> str:
    head = "| train N \\ test N | " + " | ".join(map(str, PASSN_NS)) + " |\n"
    head += "|---" * (len(PASSN_NS) + 1) + "|\n"
    rows = "".join(
        f"| {n} | " + " | ".join(f"{v:.4f}" for v in row) + " |\n"
        for n, row in zip(PASSN_NS, table, strict=True)
    )
    return head + rows


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
    answer_len = int(data.eval_target_lengths[0]) - 1
    records = []
    for i in range(problems):
        length = int(data.eval_lengths[i])
        prompt = jnp.asarray(data.eval_prompts[i, :length], jnp.int32)
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
        answer = tok.decode(data.eval_targets[i, : answer_len + 1].tolist())
        target = int(answer)
        rec = {
            "prompt": tok.decode(data.eval_prompts[i, 1:length].tolist()),
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
    if problems < 1 or problems > len(data.eval_prompts):
        raise ValueError(f"problems must be in [1, {len(data.eval_prompts)}] (held-out size), got {problems}")
    model_cfg = llama.LlamaConfig.tiny(vocab_size=data.vocab_size, **cfg.model.to_dict())
    graphdef, template = llama.init(model_cfg, jax.random.key(0))
    apply = llama.decoder(graphdef)
    models, skipped = {}, {}
    for branch in branches:
        run_dir = pathlib.Path(workdir) / branch
        if not (run_dir / "results.json").exists():
            skipped[branch] = f"{run_dir / 'results.json'} does not exist (training not finished)"
            logging.warning("skipping %s: %s", branch, skipped[branch])
            print(f"skipping {branch}: {skipped[branch]}", flush=True)
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
        print(f"{branch}: {json.dumps(models[branch]['summary'])}", flush=True)

    seconds = round(time.perf_counter() - started, 1)
    payload = {
        "command": command,
        "workdir": str(workdir),
        "config": config,
        "overrides": overrides or {},
        "problems": problems,
        "answer_categories": 10 ** (int(data.eval_target_lengths[0]) - 1) + 1,
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
    common.write_json(out / "results.json", payload)
    (out / "table.md").write_text(_markdown(payload))
    return payload


def _markdown(payload: dict) -> str:
    ns, models = payload["ns"], payload["models"]
    md = [
        "# Diagnostics (SPEC §3.6, §4): weight curves, Pass@N cosine table, rho on trained models\n\n",
        f"Command: `{payload['command']}` (wall time {payload['wall_seconds']:.0f} s)\n\n",
        "Weight curves: `weight_curves.png` (log/SFT form `pF'/F` and raw/RL form `F'`, Pass@N for "
        "N = 1, 4, 16, 64 and Majority (8, 3), (16, 4), (64, 26)).\n\n",
        "## Cosine similarity of Pass@N SFT weight functions on p in [0, 1] (2,001-point trapezoid)\n\n",
        cosine_markdown(np.asarray(payload["cosine_table"]["values"])),
        "\nLargest difference from the SPEC §3.6 table: "
        f"{payload['cosine_table']['max_abs_diff_vs_spec']:.1e} "
        "(the SPEC values are rounded to 4 decimals).\n\n",
        "## Diagonal ratio rho = a / (a - C) on the trained models' exact answer distributions\n\n",
        f"First {payload['problems']} held-out problems; each model's exact distribution over the "
        f"{payload['answer_categories'] - 1} answers + 1 invalid category (teacher forcing, T = "
        f"{payload['temperature']:g}); strict plurality, target = the correct answer. "
        "rho: mean ± SE over problems, median [10%, 90% quantiles]; `undef` = problems where a - C <= 0.\n\n",
    ]
    md += [
        "| model | mean p(correct) | median p(correct) | correct is the mode | mean p(invalid) |\n",
        "|---|---|---|---|---|\n",
    ]
    for branch, rec in models.items():
        s = rec["summary"]
        md.append(
            f"| {NAMES[branch]} | {s['p_target']['mean']:.3f} | {s['p_target']['median']:.3f} | "
            f"{s['target_is_mode'] * 100:.0f}% | {s['p_invalid']['mean']:.1e} |\n"
        )
    md += [
        f"\n| model | N | rho mean ± SE | rho median [10%, 90%] | undef | p(correct) <= {FIG9_P_MAX}: "
        "problems, mean rho, median rho |\n",
        "|---|---|---|---|---|---|\n",
    ]
    for branch, rec in models.items():
        for n in ns:
            r, h = rec["summary"][f"rho@{n}"], rec["summary"][f"rho@{n}_p_le_{FIG9_P_MAX}"]
            if r["count"]:
                se = f" ± {r['se']:.3g}" if r["se"] is not None else ""
                cells = f"{r['mean']:.4g}{se} | {r['median']:.3f} [{r['q10']:.3f}, {r['q90']:.3f}]"
            else:
                cells = "— | —"
            sub = f"{h['count']}, {h['mean']:.3f}, {h['median']:.3f}" if h["count"] else "0, —, —"
            md.append(f"| {NAMES[branch]} | {n} | {cells} | {r['undefined']} | {sub} |\n")
    for branch, why in payload["skipped"].items():
        md.append(f"\nSkipped {NAMES[branch]}: {why}.\n")
    md += ["\n## What rho means here\n\n", _interpretation(payload), "\n"]
    return "".join(md)


def _interpretation(payload: dict) -> str:
    """A paragraph of facts computed from the numbers, tied to SPEC §1.4 / §4.1."""
    ns, models = payload["ns"], payload["models"]
    text = (
        "SPEC §1.4/§4.1: a = dP_N[win]/dp_target is the diagonal term that a CAT weight keeps, C the rival "
        "correction, a - C the true derivative of the N-vote plurality success along the proportional-decay "
        "direction; rho >= 1 means the diagonal term over-states the derivative but has the right sign, "
        "rho = 1 means it is exact (Pass@N is always exact: its success depends on p_target alone). "
        "The paper's Figure 9 (Majority, N = 8, Mistral-7B on MATH, corrected) has mean rho 1.2357 over 81 "
        "problems. "
    )
    if not models:
        return text + "No model was finished, so there are no measured values yet."
    for n in ns:
        means = {NAMES[b]: m["summary"][f"rho@{n}"].get("mean") for b, m in models.items()}
        defined = {k: v for k, v in means.items() if v is not None}
        undefined = sum(m["summary"][f"rho@{n}"]["undefined"] for m in models.values())
        total = sum(len(m["problems"]) for m in models.values())
        mins = [m["summary"][f"rho@{n}"]["min"] for m in models.values() if m["summary"][f"rho@{n}"]["count"]]
        if defined:
            lo, hi = min(defined, key=defined.get), max(defined, key=defined.get)
            text += (
                f"N = {n}: mean rho ranges from {defined[lo]:.3f} ({lo}) to {defined[hi]:.3f} ({hi}); "
                f"the smallest per-problem value is {min(mins):.3f} (>= 1 as the theory says: "
                f"{'yes' if min(mins) >= 1 - 1e-9 else 'NO'}); a - C <= 0 (rho undefined) on {undefined} of "
                f"{total} model-problem pairs. "
            )
        else:
            text += f"N = {n}: rho is undefined on every problem. "
        pairs = [
            (r["p_target"], r["rho"][str(n)]["rho"])
            for m in models.values()
            for r in m["problems"]
            if r["rho"][str(n)]["rho"] is not None
        ]
        low = [v for p, v in pairs if p <= FIG9_P_MAX]
        high = [v for p, v in pairs if p > 0.5]
        if low and high:
            text += (
                f"Pooled over models, the median rho is {np.median(low):.3f} on the {len(low)} problems with "
                f"p(correct) <= {FIG9_P_MAX} (Figure 9's range) and {np.median(high):.3f} on the {len(high)} "
                "with p(correct) > 0.5. "
            )
    return text + (
        "Large rho is expected where the vote is nearly won: a = N P[win | a forced vote for the target] and "
        "C (the same with the forced vote on a rival, averaged) both approach N as the success probability "
        "saturates, so the true derivative a - C goes to 0 while the diagonal term stays near N; means are "
        "then dominated by those problems and the median and quantiles are the better summary."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    command = "python -m experiments.diagnostics " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(
        FLAGS.workdir,
        FLAGS.results,
        branches=FLAGS.branches,
        config=FLAGS.config,
        problems=FLAGS.problems,
        ns=[int(n) for n in FLAGS.ns],
        command=command.strip(),
    )


if __name__ == "__main__":
    app.run(main)
