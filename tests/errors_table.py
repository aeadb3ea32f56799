"""The bad-input table of docs/errors.md, as data: every case names an API, a bad input, how it is called and
what the user gets (exception type and a message regex, or a documented non-raising result such as NaN).

``python tests/errors_table.py`` runs every case in a plain interpreter (no jaxtyping import hook: what a user
sees) and rewrites docs/errors.md with the messages it observed; ``--json`` prints the observations instead.
tests/test_errors.py runs this script, checks every case against its row and that docs/errors.md is current.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
# The same platform as the test suite (8 fake CPU devices), so device counts in messages are fixed.
ENV = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


@dataclasses.dataclass(frozen=True)
class Case:
    api: str  # module.function as users write it
    kind: str  # one of KINDS
    given: str  # the bad input, as a user would write it
    call: Callable[[], Any]
    exc: type[BaseException] | None  # None: the call returns, and `check(result)` must hold
    match: str  # regex on str(exception), or the documented result when exc is None
    check: Callable[[Any], bool] | None = None


KINDS = (
    "shape",
    "dtype",
    "empty",
    "NaN/inf",
    "domain",
    "static argument",
    "missing file",
    "unknown name",
    "config typo",
)


def _lazy(module: str):
    """Import on use: main() must set the platform (8 CPU devices) before anything imports jax."""
    import importlib

    return importlib.import_module(module)


def _np():
    import numpy as np

    return np


def _jnp():
    import jax.numpy as jnp

    return jnp


def _all_nan(x) -> bool:
    return bool(_np().isnan(_np().asarray(x)).all())


@functools.lru_cache(maxsize=1)
def _tiny():
    return _lazy("cat_jax.testing").tiny_model()


def _sample(**over):
    jnp, tiny = _jnp(), _tiny()
    llama, sampling = _lazy("cat_jax.models.llama"), _lazy("cat_jax.sampling")
    import jax

    kw = {
        "prompts": jnp.array([[5, 6, 7, 0]]),
        "lengths": jnp.array([3]),
        "cache": llama.init_cache(tiny.config, 1, 4 + 2),
        "num_samples": 2,
        "max_new_tokens": 2,
        "strategy": sampling.Temperature(1.0),
    } | over
    args = (tiny.apply, tiny.params, kw.pop("cache"), kw.pop("prompts"), kw.pop("lengths"), jax.random.key(0))
    return sampling.sample(*args, **kw)


def _train_loop(**over):
    import jax.numpy as jnp

    tl = _lazy("cat_jax.train_lib")
    import optax

    tx = optax.sgd(0.1)
    state = tl.TrainState.create({"w": jnp.zeros(2)}, tx, seed=0)

    def nan_step(state, batch):
        return state, {"loss/total": jnp.nan, "train/finite": jnp.asarray(False)}

    with tempfile.TemporaryDirectory() as d:
        kw = {"num_steps": 2, "workdir": d, "progress": False} | over
        return tl.train_loop(state, nan_step, lambda step: None, **kw)


def _jsonl(text: str, fields=("question", "answer")):
    data = _lazy("cat_jax.data")
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "train.jsonl"
        path.write_text(text)
        try:
            return data.read_jsonl(path, fields)
        except ValueError as e:  # the message names the temporary file; show it relative to the folder
            raise ValueError(str(e).replace(d + os.sep, "")) from None


def _cli(module: str, *flags: str):
    """Run an experiment CLI as a user would; a non-zero exit raises :class:`CliError` with its last line."""
    out = subprocess.run(
        [sys.executable, "-m", module, *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
    )
    if out.returncode == 0:
        return out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("Pass --help")]
    raise CliError(out.returncode, lines[-1] if lines else "")


class CliError(Exception):
    """A CLI run that exited non-zero: its exit status and the last line of its stderr."""

    def __init__(self, code: int, last_line: str):
        super().__init__(last_line)
        self.code = code


def _hf_config(**extra) -> dict:
    """A minimal valid Llama config.json, plus ``extra`` fields."""
    base = {
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 16,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    return base | extra


def cases() -> list[Case]:
    np, jnp = _np(), _jnp()
    import jax

    obj = _lazy("cat_jax.objectives")
    ops = _lazy("cat_jax.operators")
    plu = _lazy("cat_jax.plurality")
    dia = _lazy("cat_jax.diagnostics")
    wts = _lazy("cat_jax.weights")
    adv = _lazy("cat_jax.advantages")
    los = _lazy("cat_jax.losses")
    smp = _lazy("cat_jax.sampling")
    llama = _lazy("cat_jax.models.llama")
    convert = _lazy("cat_jax.models.convert")
    lora = _lazy("cat_jax.models.lora")
    tl = _lazy("cat_jax.train_lib")
    shd = _lazy("cat_jax.sharding")
    rl = _lazy("cat_jax.rl")
    ev = _lazy("cat_jax.evaluation")
    arith = _lazy("cat_jax.tasks.arithmetic")
    answers = _lazy("cat_jax.tasks.math_answers")
    toks = _lazy("cat_jax.tasks.tokenizers")
    common = _lazy("experiments.common")
    evaluate = _lazy("experiments.evaluate")

    lp = jnp.array([-0.1, -2.3])
    ids = np.array([[1, 1, 2]], np.int32)
    ok3 = np.array([[True, True, False]])
    binary = np.array([[1.0, 0.0], [0.0, 0.0]])
    pn = wts.WeightConfig(strategy="passn", n=4)
    labels = np.array([[-100, 5, 6]])
    c = Case
    return [
        # ------------------------------------------------------------------ objectives
        c(
            "objectives.passn_sft_loss",
            "static argument",
            "n=0",
            lambda: obj.passn_sft_loss(lp, n=0),
            ValueError,
            r"n must be an integer in >= 1, got 0",
        ),
        c(
            "objectives.passn_sft_loss",
            "static argument",
            "n=4.0",
            lambda: obj.passn_sft_loss(lp, n=4.0),
            ValueError,
            r"n must be a Python integer, got 4\.0 \(float\)",
        ),
        c(
            "objectives.passn_sft_loss",
            "static argument",
            'reduction="avg"',
            lambda: obj.passn_sft_loss(lp, n=4, reduction="avg"),
            ValueError,
            r"reduction must be one of \['mean', 'none', 'sum'\], got 'avg'",
        ),
        c(
            "objectives.passn_sft_loss",
            "static argument",
            "n traced under jit (not static)",
            lambda: jax.jit(obj.passn_sft_loss)(lp, n=4),
            ValueError,
            r"n must be a Python integer",
        ),
        c(
            "objectives.majority_sft_loss",
            "static argument",
            "k > n (n=4, k=5)",
            lambda: obj.majority_sft_loss(lp, n=4, k=5),
            ValueError,
            r"k must be an integer in \[1, 4\], got 5",
        ),
        c(
            "objectives.passn_sft_loss",
            "domain",
            "log p > 0 (a positive NLL), validate=True",
            lambda: obj.passn_sft_loss(jnp.array([2.3]), n=4, validate=True),
            ValueError,
            r"log_p must be a finite log-probability <= 0 \(summed, not a positive NLL\)",
        ),
        c(
            "objectives.passn_sft_loss",
            "NaN/inf",
            "log p = NaN or -inf, validate=True",
            lambda: obj.passn_sft_loss(jnp.array([jnp.nan, -jnp.inf]), n=4, validate=True),
            ValueError,
            r"log_p must be a finite log-probability <= 0",
        ),
        c(
            "objectives.passn_sft_loss",
            "domain",
            "log p > 0, default validate=False (also under jit)",
            lambda: obj.passn_sft_loss(jnp.array([2.3]), n=4),
            None,
            "NaN (documented: out-of-domain values give NaN, never a clamped number)",
            _all_nan,
        ),
        c(
            "objectives.passn_probability",
            "domain",
            "p = 1.5, validate=True",
            lambda: obj.passn_probability(1.5, n=4, validate=True),
            ValueError,
            r"p must lie in \[0, 1\] and not be NaN; got \[1\.5\]",
        ),
        c(
            "objectives.passn_probability",
            "domain",
            "p = 1.5 under jit",
            lambda: jax.jit(functools.partial(obj.passn_probability, n=4))(jnp.array([1.5])),
            None,
            "NaN (no clamping; a trainer's non-finite guard stops on it)",
            _all_nan,
        ),
        c(
            "objectives.majority_rl_weight",
            "NaN/inf",
            "p = NaN, validate=True",
            lambda: obj.majority_rl_weight(jnp.array([jnp.nan]), n=8, k=3, validate=True),
            ValueError,
            r"p must lie in \[0, 1\] and not be NaN; got \[nan\]",
        ),
        c(
            "objectives.bon_rl_weight",
            "domain",
            "q = -0.1, validate=True",
            lambda: obj.bon_rl_weight(-0.1, n=4, validate=True),
            ValueError,
            r"q must lie in \[0, 1\]",
        ),
        c(
            "objectives.passn_sft_weight_from_logp",
            "static argument",
            "validate=True inside jit",
            lambda: jax.jit(functools.partial(obj.passn_sft_weight_from_logp, n=4, validate=True))(lp),
            ValueError,
            r"validate=True needs a concrete log_p, but it is traced",
        ),
        c(
            "objectives.passn_sft_loss",
            "dtype",
            "integer or boolean log p",
            lambda: obj.passn_sft_loss(jnp.array([0, -1]), n=4, reduction="none"),
            None,
            "computed in JAX's default float (int/bool -> float32; float16/bfloat16 -> float32)",
            lambda x: str(x.dtype) == "float32",
        ),
        c(
            "objectives.passn_sft_loss",
            "empty",
            'log p of shape [0], reduction="mean"',
            lambda: obj.passn_sft_loss(jnp.zeros((0,)), n=4),
            None,
            'NaN, as jnp.mean of nothing ("sum" gives 0, "none" an empty array)',
            _all_nan,
        ),
        c(
            "objectives.get",
            "unknown name",
            'get("pass", n=4)',
            lambda: obj.get("pass", n=4),
            ValueError,
            r"strategy must be one of \['bon', 'ce', 'majority', 'passn'\], got 'pass'",
        ),
        c(
            "objectives.get",
            "static argument",
            'get("majority", n=8) (k missing)',
            lambda: obj.get("majority", n=8),
            ValueError,
            r"strategy 'majority' got budgets \['n'\]: .*missing 1 required keyword-only argument: 'k'",
        ),
        c(
            "objectives.from_success_fn",
            "static argument",
            "success_fn=0.5 (not callable)",
            lambda: obj.from_success_fn(0.5),
            ValueError,
            r"success_fn must be callable, got float",
        ),
        c(
            "objectives.passn_sft_loss",
            "dtype",
            "complex log p",
            lambda: obj.passn_sft_loss(jnp.array([-1 + 1j]), n=2),
            ValueError,
            r"expected real numbers, got dtype complex64",
        ),
        c(
            "numerics.log1mexp",
            "domain",
            "u = 0.5 > 0",
            lambda: _lazy("cat_jax.numerics").log1mexp(jnp.asarray(0.5)),
            None,
            "NaN (defined for u <= 0; never clamped)",
            _all_nan,
        ),
        c(
            "numerics.log_binomial_row",
            "static argument",
            "n=-1",
            lambda: _lazy("cat_jax.numerics").log_binomial_row(-1),
            ValueError,
            r"n must be an integer in >= 0, got -1",
        ),
        # ------------------------------------------------------------------ operators
        c(
            "operators.pass_at_k",
            "shape",
            "correct of shape [N] (no problem axis)",
            lambda: ops.pass_at_k(np.ones(3, bool), k=1),
            ValueError,
            r"correct must be a \[B, N\] array with N >= 1 samples per problem, got shape \(3,\)",
        ),
        c(
            "operators.pass_at_k",
            "empty",
            "correct of shape [B, 0]",
            lambda: ops.pass_at_k(np.ones((2, 0), bool), k=1),
            ValueError,
            r"correct must be a \[B, N\] array with N >= 1 samples per problem, got shape \(2, 0\)",
        ),
        c(
            "operators.pass_at_k",
            "static argument",
            "k > n (k=5, n=3)",
            lambda: ops.pass_at_k(ok3, k=5),
            ValueError,
            r"k must be an integer in \[1, 3\], got 5",
        ),
        c(
            "operators.pass_at_k",
            "dtype",
            "correct as floats (0.3, 1.0, 0.0)",
            lambda: ops.pass_at_k(np.array([[0.3, 1.0, 0.0]]), k=1),
            ValueError,
            r"correct must be boolean or exactly 0/1",
        ),
        c(
            "operators.majority_at_k",
            "dtype",
            "answer_ids as floats",
            lambda: ops.majority_at_k(ids.astype(float), ok3, k=2),
            ValueError,
            r"answer_ids must be integer cluster labels, got dtype float",
        ),
        c(
            "operators.majority_at_k",
            "shape",
            "correct [1, 2] vs answer_ids [1, 3]",
            lambda: ops.majority_at_k(ids, ok3[:, :2], k=2),
            ValueError,
            r"correct must have the shape of answer_ids \(1, 3\), got \(1, 2\)",
        ),
        c(
            "operators.majority_at_k",
            "static argument",
            'ties="random"',
            lambda: ops.majority_at_k(ids, ok3, k=2, ties="random"),
            ValueError,
            r"ties must be one of \['fail', 'first'\], got 'random'",
        ),
        c(
            "operators.majority_at_k",
            "domain",
            "one answer id marked both correct and wrong",
            lambda: ops.majority_at_k(ids, np.array([[True, False, False]]), k=2),
            ValueError,
            r"correct disagrees with answer_ids inside one cluster: problem 0, answer id 1",
        ),
        c(
            "operators.majority_at_k",
            "static argument",
            "max_clusters below the distinct answers",
            lambda: ops.majority_at_k(ids, ok3, k=2, max_clusters=1),
            ValueError,
            r"max_clusters=1 but a problem has 2 distinct valid answers",
        ),
        c(
            "operators.best_of_k",
            "NaN/inf",
            "a NaN reward",
            lambda: ops.best_of_k(np.array([[1.0, np.nan]]), k=1),
            ValueError,
            r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): nan",
        ),
        c(
            "operators.scaling_curve",
            "static argument",
            "ks=[1, 5] with n=3",
            lambda: ops.scaling_curve(ops.pass_at_k, ok3, ks=[1, 5]),
            ValueError,
            r"ks must be an integer in \[1, 3\], got 5",
        ),
        c(
            "operators.scaling_curve",
            "empty",
            "ks=[]",
            lambda: ops.scaling_curve(ops.pass_at_k, ok3, ks=[]),
            ValueError,
            r"ks must name at least one budget",
        ),
        c(
            "operators.majority_vote",
            "shape",
            "answer_ids of shape [N]",
            lambda: ops.majority_vote(np.array([1, 2])),
            ValueError,
            r"answer_ids must be a \[B, N\] array",
        ),
        c(
            "operators.best_of_n",
            "NaN/inf",
            "a NaN reward",
            lambda: ops.best_of_n(np.array([[1.0, np.nan]])),
            ValueError,
            r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): nan",
        ),
        c(
            "weights.mean_normalize",
            "empty",
            "an empty weight array",
            lambda: wts.mean_normalize(np.zeros((0,), np.float32)),
            ValueError,
            r"w must hold at least one weight to normalise, got an empty array",
        ),
        c(
            "operators.best_of_k",
            "NaN/inf",
            "an inf reward",
            lambda: ops.best_of_k(np.array([[1.0, np.inf]]), k=1),
            ValueError,
            r"rewards must be finite \(no NaN/inf\); first bad entry at \(0, 1\): inf",
        ),
        c(
            "operators.pass_at_k",
            "NaN/inf",
            "correct containing NaN",
            lambda: ops.pass_at_k(np.array([[np.nan, 1.0]]), k=1),
            ValueError,
            r"correct must be boolean or exactly 0/1, got \[nan\]",
        ),
        c(
            "operators.pass_at_k",
            "static argument",
            "k=True",
            lambda: ops.pass_at_k(ok3, k=True),
            ValueError,
            r"k must be a Python integer, got True \(bool\)",
        ),
        c(
            "operators.pass_at_k",
            "empty",
            "correct of shape [0, N] (no problems)",
            lambda: ops.pass_at_k(np.zeros((0, 3), bool), k=1),
            None,
            "an empty [0] array",
            lambda x: x.shape == (0,),
        ),
        # ------------------------------------------------------------------ plurality, diagnostics
        c(
            "plurality.plurality_win_probability",
            "shape",
            "probs of shape [C]",
            lambda: plu.plurality_win_probability(np.array([0.5, 0.5]), np.array([0]), n=4),
            ValueError,
            r"probs must be a \[B, C\] array, got shape \(2,\)",
        ),
        c(
            "plurality.plurality_win_probability",
            "domain",
            "probs summing to 1.5",
            lambda: plu.plurality_win_probability(np.array([[1.0, 0.5]]), np.array([0]), n=4),
            ValueError,
            r"probs must",
        ),
        c(
            "plurality.plurality_win_probability",
            "domain",
            "target = 2 with C = 2 answers",
            lambda: plu.plurality_win_probability(np.array([[0.5, 0.5]]), np.array([2]), n=4),
            ValueError,
            r"target must index one of the 2 answers, got \[2\]",
        ),
        c(
            "plurality.majority_exact_sft_loss",
            "static argument",
            'reduction="avg"',
            lambda: plu.majority_exact_sft_loss(
                jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([0]), n=4, reduction="avg"
            ),
            ValueError,
            r"reduction must be one of",
        ),
        c(
            "diagnostics.sensitivity",
            "domain",
            "p not summing to 1",
            lambda: dia.sensitivity(np.array([0.5, 0.6]), 0, n=4),
            ValueError,
            r"p must be a probability vector \(>= 0, sums to 1\)",
        ),
        c(
            "diagnostics.sensitivity",
            "unknown name",
            'strategy="vote"',
            lambda: dia.sensitivity(np.array([0.5, 0.5]), 0, n=4, strategy="vote"),
            ValueError,
            r"strategy must be one of",
        ),
        c(
            "diagnostics.plus_ratio_to_rho",
            "domain",
            "r = 0.3 (outside (0.5, 1])",
            lambda: dia.plus_ratio_to_rho([0.3]),
            ValueError,
            r"r must lie in \(0\.5, 1\]",
        ),
        c(
            "plurality.plurality_win_probability",
            "NaN/inf",
            "a NaN probability",
            lambda: plu.plurality_win_probability(np.array([[np.nan, 0.5]]), np.array([0]), n=4),
            ValueError,
            r"probs must be >= 0 with rows summing to at most 1",
        ),
        c(
            "plurality.plurality_win_probability",
            "static argument",
            "n=4.0",
            lambda: plu.plurality_win_probability(np.array([[0.5, 0.5]]), np.array([0]), n=4.0),
            ValueError,
            r"n must be a Python integer, got 4\.0 \(float\)",
        ),
        c(
            "diagnostics.sensitivity",
            "domain",
            "target = 5 with 2 categories",
            lambda: dia.sensitivity(np.array([0.5, 0.5]), 5, n=4),
            ValueError,
            r"target must be an integer in \[0, 1\], got 5",
        ),
        c(
            "diagnostics.sensitivity",
            "static argument",
            'strategy="best_of_n" without rewards',
            lambda: dia.sensitivity(np.array([0.5, 0.5]), 0, n=4, strategy="best_of_n"),
            ValueError,
            r"rewards are required for strategy='best_of_n'",
        ),
        c(
            "diagnostics.sensitivity_mc",
            "static argument",
            "trials=1",
            lambda: dia.sensitivity_mc(np.array([0.5, 0.5]), 0, n=4, trials=1),
            ValueError,
            r"trials must be an integer in >= 2, got 1",
        ),
        c(
            "diagnostics.passn_weight_cosine_table",
            "static argument",
            "ns=(0, 4)",
            lambda: dia.passn_weight_cosine_table((0, 4)),
            ValueError,
            r"n must be an integer in >= 1, got 0",
        ),
        # ------------------------------------------------------------------ weights, advantages
        c(
            "weights.WeightConfig",
            "unknown name",
            'strategy="pass"',
            lambda: wts.WeightConfig(strategy="pass"),
            ValueError,
            r"strategy must be one of \['bon', 'majority', 'passn', 'standard'\], got 'pass'",
        ),
        c(
            "weights.WeightConfig",
            "static argument",
            'strategy="standard", n=4',
            lambda: wts.WeightConfig(strategy="standard", n=4),
            ValueError,
            r"n must be 1 with strategy='standard'",
        ),
        c(
            "weights.WeightConfig",
            "static argument",
            "clip=0",
            lambda: wts.WeightConfig(strategy="passn", n=4, clip=0.0),
            ValueError,
            r"clip must be a number > 0 or None, got 0\.0",
        ),
        c(
            "weights.cat_weights",
            "shape",
            "rewards of shape [M]",
            lambda: wts.cat_weights(np.ones(4), config=pn),
            ValueError,
            r"rewards must have shape \[B, M\], got \(4,\)",
        ),
        c(
            "weights.cat_weights",
            "domain",
            "reward 0.5 with strategy='passn' (needs a verifier)",
            lambda: wts.cat_weights(np.array([[1.0, 0.5]]), np.zeros((1, 2)), config=pn),
            ValueError,
            r"rewards must be exactly 0 or 1 \(strategy='passn' needs a binary verifier\); got \[0\.5\]",
        ),
        c(
            "weights.cat_weights",
            "NaN/inf",
            "a NaN reward with strategy='passn'",
            lambda: wts.cat_weights(np.array([[1.0, np.nan]]), np.zeros((1, 2)), config=pn),
            ValueError,
            r"rewards must be exactly 0 or 1 .*got \[nan\]",
        ),
        c(
            "weights.cat_weights",
            "static argument",
            "probability='sequence' without old_logp",
            lambda: wts.cat_weights(binary, config=pn),
            ValueError,
            r"old_logp must be given with probability='sequence'",
        ),
        c(
            "weights.cat_weights",
            "shape",
            "old_logp [2, 1] vs rewards [2, 2]",
            lambda: wts.cat_weights(binary, np.zeros((2, 1)), config=pn),
            ValueError,
            r"old_logp must have the rewards' shape \(2, 2\), got \(2, 1\)",
        ),
        c(
            "weights.cat_weights",
            "static argument",
            "strategy='majority' without answer_ids",
            lambda: wts.cat_weights(
                binary, config=wts.WeightConfig(strategy="majority", n=4, probability="empirical")
            ),
            ValueError,
            r"answer_ids and answer_valid must be given with strategy='majority'",
        ),
        c(
            "weights.pkpo_pass_rewards",
            "static argument",
            "k > M (k=3, M=2)",
            lambda: wts.pkpo_pass_rewards(binary, k=3),
            ValueError,
            r"k must be an integer in \[1, 2\], got 3",
        ),
        c(
            "weights.get_transform",
            "unknown name",
            '"pkpo"',
            lambda: wts.get_transform("pkpo"),
            ValueError,
            r"transform must be one of",
        ),
        c(
            "advantages.group_advantages",
            "shape",
            "a scalar reward",
            lambda: adv.group_advantages(np.float32(1.0)),
            ValueError,
            r"rewards must have shape \[\.\.\., M\], got a scalar",
        ),
        c(
            "advantages.group_advantages",
            "empty",
            "rewards of shape [B, 0]",
            lambda: adv.group_advantages(np.zeros((2, 0))),
            ValueError,
            r"M \(rewards\.shape\[-1\]\) must be an integer in >= 2, got 0",
        ),
        c(
            "advantages.group_advantages",
            "static argument",
            "eps=-1",
            lambda: adv.group_advantages(binary, eps=-1.0),
            ValueError,
            r"eps must be >= 0, got -1\.0",
        ),
        c(
            "advantages.group_advantages",
            "domain",
            "reward 0.5 with all_wrong_penalty > 0",
            lambda: adv.group_advantages(np.array([[0.5, 0.0]]), all_wrong_penalty=0.5),
            ValueError,
            r"rewards must be exactly 0 or 1",
        ),
        c(
            "advantages.passk_group_advantages",
            "static argument",
            "k > M (k=3, M=2)",
            lambda: adv.passk_group_advantages(binary, k=3),
            ValueError,
            r"k must be an integer in \[1, 2\]",
        ),
        c(
            "advantages.AdvantageConfig",
            "static argument",
            "all_wrong_penalty with filter_zero_variance",
            lambda: adv.AdvantageConfig(all_wrong_penalty=0.5, filter_zero_variance=True),
            ValueError,
            r"all_wrong_penalty > 0 contradicts filter_zero_variance=True",
        ),
        c(
            "advantages.AdvantageConfig",
            "unknown name",
            'estimator="grpo"',
            lambda: adv.AdvantageConfig(estimator="grpo"),
            ValueError,
            r"estimator must be one of",
        ),
        c(
            "advantages.RewardHistory.create",
            "static argument",
            "capacity=0",
            lambda: adv.RewardHistory.create(capacity=0),
            ValueError,
            r"capacity must be an integer in >= 1",
        ),
        c(
            "weights.WeightConfig",
            "static argument",
            'strategy="majority", n=1',
            lambda: wts.WeightConfig(strategy="majority", n=1),
            ValueError,
            r"n must be >= 2 with strategy='majority', got n=1",
        ),
        c(
            "weights.WeightConfig",
            "static argument",
            'strategy="bon", form="log"',
            lambda: wts.WeightConfig(strategy="bon", n=4, form="log"),
            ValueError,
            r"form must be 'raw' with strategy='bon' \(rank weight only\), got 'log'",
        ),
        c(
            "weights.cat_weights",
            "static argument",
            "config as a dict",
            lambda: wts.cat_weights(binary, config={}),
            ValueError,
            r"config must be a WeightConfig, got dict",
        ),
        c(
            "weights.cat_weights",
            "NaN/inf",
            "a NaN reward with strategy='bon'",
            lambda: wts.cat_weights(np.array([[1.0, np.nan]]), config=wts.WeightConfig(strategy="bon", n=4)),
            ValueError,
            r"rewards must be finite to rank them, got \[nan\]",
        ),
        c(
            "weights.sequence_probability",
            "domain",
            "old_logp = 0.5 > 0",
            lambda: wts.sequence_probability(jnp.array([0.5])),
            None,
            "p = 1: SPEC §2.5 clips log p_old to [-50, 0] and p to [1e-10, 1 - 1e-10] (the reference's rule)",
            lambda x: float(x[0]) == 1.0,
        ),
        c(
            "advantages.within_prompt_quantiles",
            "NaN/inf",
            "a NaN reward",
            lambda: adv.within_prompt_quantiles(np.array([[1.0, np.nan]])),
            ValueError,
            r"rewards must be finite to rank them, got \[nan\]",
        ),
        c(
            "advantages.compute_advantages",
            "static argument",
            "config as a dict",
            lambda: adv.compute_advantages(binary, config={}),
            ValueError,
            r"config must be an AdvantageConfig, got dict",
        ),
        c(
            "advantages.group_advantages",
            "NaN/inf",
            "a NaN reward (no all_wrong_penalty)",
            lambda: adv.group_advantages(np.array([[1.0, np.nan]])),
            None,
            "NaN advantages for that prompt (a trainer's non-finite guard stops on them)",
            _all_nan,
        ),
        # ------------------------------------------------------------------ losses
        c(
            "losses.check_supervision",
            "dtype",
            "float labels",
            lambda: los.check_supervision(labels.astype(float)),
            ValueError,
            r"labels must be an integer array \[\.\.\., L\], got float64\[1, 3\]",
        ),
        c(
            "losses.check_supervision",
            "domain",
            "a label id >= vocab_size",
            lambda: los.check_supervision(labels, vocab_size=6),
            ValueError,
            r"labels must be -100 or in \[0, 6\), got \[6\]",
        ),
        c(
            "losses.check_supervision",
            "domain",
            "a supervised label at position 0",
            lambda: los.check_supervision(np.array([[5, 6]])),
            ValueError,
            r"labels at position 0 must be -100: no logit predicts the first token",
        ),
        c(
            "losses.check_supervision",
            "shape",
            "mask [1, 2] vs labels [1, 3]",
            lambda: los.check_supervision(labels, np.ones((1, 2))),
            ValueError,
            r"mask must have the labels' shape \(1, 3\), got \(1, 2\)",
        ),
        c(
            "losses.SFTObjective",
            "unknown name",
            'strategy="pass"',
            lambda: los.SFTObjective(strategy="pass"),
            ValueError,
            r"strategy must be one of",
        ),
        c(
            "losses.SFTObjective",
            "static argument",
            'strategy="passn", n=4, k=2',
            lambda: los.SFTObjective(strategy="passn", n=4, k=2),
            ValueError,
            r"k is only used by strategy='majority', got k=2",
        ),
        c(
            "losses.SFTObjective",
            "static argument",
            'reduction="mean"',
            lambda: los.SFTObjective(reduction="mean"),
            ValueError,
            r"reduction must be one of \['sequence_mean', 'token_mean'\], got 'mean'",
        ),
        c(
            "losses.PolicyLossConfig",
            "static argument",
            "clip_ratio=1.5",
            lambda: los.PolicyLossConfig(clip_ratio=1.5),
            ValueError,
            r"clip_ratio must be in \(0, 1\), got 1\.5",
        ),
        c(
            "losses.make_sft_loss_fn",
            "static argument",
            'objective="passn" (a string)',
            lambda: los.make_sft_loss_fn(None, objective="passn"),
            ValueError,
            r"objective must be an SFTObjective, got str",
        ),
        c(
            "losses.weighted_policy_loss",
            "shape",
            "advantages [3] vs log_probs [2]",
            lambda: los.weighted_policy_loss(jnp.zeros(2), jnp.zeros(3), jnp.ones(2)),
            ValueError,
            r"advantages must have the log_probs' shape \(2,\), got \(3,\)",
        ),
        c(
            "losses.token_log_probs",
            "shape",
            "labels [1, 2] vs logits [1, 3, V]",
            lambda: los.token_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[0, 1]])),
            ValueError,
            r"labels must have shape \(1, 3\) \(logits without V\), got \(1, 2\)",
        ),
        c(
            "losses.token_log_probs",
            "domain",
            "a label id >= V (no validation)",
            lambda: los.token_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[-100, 7, 1]])),
            None,
            "NaN at that position; completion_log_probs(validate=True) and check_supervision raise instead",
            lambda x: bool(np.isnan(np.asarray(x)[0, 1])),
        ),
        c(
            "losses.completion_log_probs",
            "domain",
            "a label id >= V, validate=True",
            lambda: los.completion_log_probs(jnp.zeros((1, 3, 5)), jnp.array([[-100, 7, 1]]), validate=True),
            ValueError,
            r"labels must be -100 or in \[0, 5\), got \[7\]",
        ),
        c(
            "losses.check_supervision",
            "empty",
            "a row without any target",
            lambda: los.check_supervision(np.array([[-100, -100]])),
            ValueError,
            r"labels: every row needs >= 1 target, rows \[0\] have none",
        ),
        c(
            "losses.sft_loss",
            "empty",
            "a row without any target (no validation)",
            lambda: los.sft_loss(
                jnp.zeros((1, 3, 5)), jnp.array([[-100, -100, -100]]), objective=los.SFTObjective()
            )[0],
            None,
            "NaN loss (0/0); check_supervision raises instead",
            _all_nan,
        ),
        c(
            "losses.policy_loss_terms",
            "static argument",
            'surrogate="clipped" without old log-probs',
            lambda: los.policy_loss_terms(
                jnp.zeros((1, 3)),
                jnp.ones((1, 3), bool),
                jnp.zeros(1),
                jnp.ones(1),
                config=los.PolicyLossConfig(surrogate="clipped"),
            ),
            ValueError,
            r"old \(token log-probs of the sampling policy\) is required by surrogate='clipped'",
        ),
        c(
            "losses.make_rl_loss_fn",
            "shape",
            "a batch without mask, advantages, weights",
            lambda: los.make_rl_loss_fn(None, config=los.PolicyLossConfig())(None, {"tokens": 1}, None),
            ValueError,
            r"batch is missing \['mask', 'advantages', 'weights'\]",
        ),
        c(
            "losses.PolicyLossConfig",
            "unknown name",
            'surrogate="ppo"',
            lambda: los.PolicyLossConfig(surrogate="ppo"),
            ValueError,
            r"surrogate must be one of",
        ),
        c(
            "losses.make_plurality_sft_loss_fn",
            "static argument",
            "n=0",
            lambda: los.make_plurality_sft_loss_fn(None, n=0),
            ValueError,
            r"n must be an integer in >= 1, got 0",
        ),
        # ------------------------------------------------------------------ sampling, models
        c(
            "sampling.Temperature",
            "domain",
            "temperature=0",
            lambda: smp.Temperature(0.0),
            ValueError,
            r"temperature must be a float > 0 for sampling, got 0\.0; use Greedy\(\) for argmax",
        ),
        c(
            "sampling.TopP",
            "domain",
            "p=1.5",
            lambda: smp.TopP(1.5),
            ValueError,
            r"top-p must be in \(0, 1\], got p=1\.5; use p=1 to disable the filter",
        ),
        c(
            "sampling.TopK",
            "static argument",
            "k=-1",
            lambda: smp.TopK(-1),
            ValueError,
            r"k must be an integer in >= 0, got -1",
        ),
        c(
            "sampling.strategy_for",
            "domain",
            "top_p=1.5",
            lambda: smp.strategy_for(top_p=1.5),
            ValueError,
            r"top-p must be in \(0, 1\], got p=1\.5",
        ),
        c(
            "sampling.sample",
            "static argument",
            "num_samples=0",
            lambda: _sample(num_samples=0),
            ValueError,
            r"num_samples must be an integer in >= 1, got 0",
        ),
        c(
            "sampling.sample",
            "unknown name",
            'strategy="greedy" (a string)',
            lambda: _sample(strategy="greedy"),
            ValueError,
            r"strategy must be one of Greedy, Temperature, TopK, TopP; got 'greedy'",
        ),
        c(
            "sampling.sample",
            "domain",
            "a prompt length of 0",
            lambda: _sample(lengths=jnp.array([0])),
            ValueError,
            r"prompt lengths must be in \[1, 4\] \(right padding\), got \[0\]",
        ),
        c(
            "sampling.sample",
            "shape",
            "a KV cache with fewer slots than prompt + max_new_tokens",
            lambda: _sample(max_new_tokens=8),
            ValueError,
            r"cache",
        ),
        c(
            "models.LlamaConfig",
            "static argument",
            "hidden_size=0",
            lambda: llama.LlamaConfig.tiny(hidden_size=0),
            ValueError,
            r"LlamaConfig\.hidden_size must be a positive int, got 0",
        ),
        c(
            "models.LlamaConfig",
            "static argument",
            "num_heads=4, num_kv_heads=3",
            lambda: llama.LlamaConfig.tiny(num_heads=4, num_kv_heads=3),
            ValueError,
            r"num_heads=4 must be a multiple of num_kv_heads=3 \(GQA\)",
        ),
        c(
            "models.LlamaConfig",
            "unknown name",
            'param_dtype="float8"',
            lambda: llama.LlamaConfig.tiny(param_dtype="float8"),
            ValueError,
            r"param_dtype must be one of",
        ),
        c(
            "models.preset",
            "unknown name",
            '"llama-7b"',
            lambda: llama.preset("llama-7b"),
            ValueError,
            r"unknown model preset 'llama-7b'; valid names:",
        ),
        c(
            "models.convert.load",
            "missing file",
            '"no/such/checkpoint"',
            lambda: convert.load("no/such/checkpoint"),
            FileNotFoundError,
            r"No such file or directory: 'no/such/checkpoint/config\.json'",
        ),
        c(
            "models.convert.config_from_hf",
            "unknown name",
            'architectures=["GPT2LMHeadModel"]',
            lambda: convert.config_from_hf({"architectures": ["GPT2LMHeadModel"]}),
            ValueError,
            r"GPT2LMHeadModel",
        ),
        c(
            "models.lora.LoRAConfig",
            "static argument",
            "rank=0",
            lambda: lora.LoRAConfig(rank=0),
            ValueError,
            r"rank must be an integer in >= 1, got 0",
        ),
        c(
            "models.lora.LoRAConfig",
            "unknown name",
            'targets=("qkv",)',
            lambda: lora.LoRAConfig(targets=("qkv",)),
            ValueError,
            r"LoRA targets must be a non-empty subset of",
        ),
        c(
            "models.preset",
            "config typo",
            'preset("tiny", hidden_sizes=64)',
            lambda: llama.preset("tiny", hidden_sizes=64),
            TypeError,
            r"unexpected keyword argument 'hidden_sizes'",
        ),
        c(
            "models.convert.config_from_hf",
            "config typo",
            "an unknown config.json field foo=1",
            lambda: convert.config_from_hf(_hf_config(foo=1)),
            ValueError,
            r"unsupported config\.json field foo=1; cat_jax would ignore it, so it refuses",
        ),
        c(
            "models.convert.config_from_hf",
            "domain",
            'rope_scaling={"rope_type": "yarn"}',
            lambda: convert.config_from_hf(_hf_config(rope_scaling={"rope_type": "yarn"})),
            ValueError,
            r"RoPE type 'yarn' is not supported \(only 'default' and 'llama3'\)",
        ),
        c(
            "models.convert.config_from_hf",
            "missing file",
            "config.json without num_attention_heads",
            lambda: convert.config_from_hf(
                {k: v for k, v in _hf_config().items() if k != "num_attention_heads"}
            ),
            KeyError,
            r"num_attention_heads",
        ),
        c(
            "models.lora.LoRAConfig",
            "domain",
            "alpha=0",
            lambda: lora.LoRAConfig(alpha=0),
            ValueError,
            r"alpha must be a number > 0, got 0",
        ),
        # ------------------------------------------------------------ train_lib, sharding, rl, evaluation
        c(
            "train_lib.OptimizerConfig",
            "unknown name",
            'schedule="step"',
            lambda: tl.OptimizerConfig(schedule="step"),
            ValueError,
            r"schedule must be one of \['constant', 'cosine', 'linear'\], got 'step'",
        ),
        c(
            "train_lib.OptimizerConfig",
            "static argument",
            'schedule="cosine" without total_steps',
            lambda: tl.OptimizerConfig(schedule="cosine"),
            ValueError,
            r"schedule='cosine' needs total_steps > warmup_steps, got total_steps=0, warmup_steps=0",
        ),
        c(
            "train_lib.OptimizerConfig",
            "domain",
            "lr=0",
            lambda: tl.OptimizerConfig(lr=0.0),
            ValueError,
            r"lr must be > 0, got 0\.0",
        ),
        c(
            "train_lib.TrainState.create",
            "static argument",
            "seed=-1",
            lambda: tl.TrainState.create({}, _lazy("optax").sgd(0.1), seed=-1),
            ValueError,
            r"seed must be an integer in >= 0, got -1",
        ),
        c(
            "train_lib.Checkpointer",
            "missing file",
            'workdir="/dev/null/run" (not a directory)',
            lambda: tl.Checkpointer("/dev/null/run"),
            OSError,
            r"workdir '/dev/null/run' is not writable \(Not a directory\); choose another --workdir",
        ),
        c(
            "train_lib.train_loop",
            "static argument",
            "checkpoint_every=0",
            lambda: _train_loop(checkpoint_every=0),
            ValueError,
            r"checkpoint_every must be an integer in >= 1",
        ),
        c(
            "train_lib.train_loop",
            "NaN/inf",
            "a step whose loss is NaN",
            _train_loop,
            FloatingPointError,
            r"non-finite loss or gradient at step 0 \(loss=nan\); the state was not updated and the last "
            r"checkpoint is intact",
        ),
        c(
            "sharding.make_mesh",
            "static argument",
            "fsdp=3 with 8 devices",
            lambda: shd.make_mesh(8, fsdp=3),
            ValueError,
            r"fsdp=3 must divide the number of devices \(8\)",
        ),
        c(
            "sharding.make_mesh",
            "static argument",
            "num_devices=64 with 8 visible",
            lambda: shd.make_mesh(64),
            ValueError,
            r"num_devices=64 but only 8 devices are visible",
        ),
        c(
            "sharding.shard_batch",
            "shape",
            "a batch of 6 rows on 8 devices",
            lambda: shd.shard_batch({"x": np.zeros((6, 2))}, shd.make_mesh(8)),
            ValueError,
            r"divisible by the 8 devices",
        ),
        c(
            "rl.RolloutConfig",
            "static argument",
            "num_samples=1 (no group to compare)",
            lambda: rl.RolloutConfig(num_samples=1, max_new_tokens=4),
            ValueError,
            r"num_samples must be an integer in >= 2, got 1",
        ),
        c(
            "evaluation.SampleConfig",
            "domain",
            "top_p=0",
            lambda: ev.SampleConfig(top_p=0.0),
            ValueError,
            r"top-p must be in \(0, 1\], got p=0\.0",
        ),
        c(
            "evaluation.generate",
            "shape",
            "prompts of shape [P]",
            lambda: ev.generate(None, None, None, np.zeros(4), np.zeros(1), None, ev.SampleConfig()),
            ValueError,
            r"prompts must be \[B, P\] with lengths \[B\]; got \(4,\) and \(1,\)",
        ),
        c(
            "train_lib.OptimizerConfig",
            "NaN/inf",
            "lr=nan",
            lambda: tl.OptimizerConfig(lr=float("nan")),
            ValueError,
            r"lr must be > 0, got nan",
        ),
        c(
            "train_lib.OptimizerConfig",
            "static argument",
            "clip_norm=0",
            lambda: tl.OptimizerConfig(clip_norm=0.0),
            ValueError,
            r"clip_norm must be > 0 or None, got 0\.0",
        ),
        c(
            "train_lib.OptimizerConfig",
            "static argument",
            "accum_steps=0",
            lambda: tl.OptimizerConfig(accum_steps=0),
            ValueError,
            r"accum_steps must be an integer in >= 1, got 0",
        ),
        c(
            "train_lib.Checkpointer",
            "static argument",
            "keep=0",
            lambda: tl.Checkpointer("/dev/null/run", keep=0),
            ValueError,
            r"keep must be an integer in >= 1, got 0",
        ),
        c(
            "train_lib.Checkpointer",
            "unknown name",
            'best_mode="low"',
            lambda: tl.Checkpointer("/dev/null/run", best_mode="low"),
            ValueError,
            r"best_mode must be one of \['max', 'min'\], got 'low'",
        ),
        c(
            "train_lib.MetricWriter",
            "static argument",
            "resume_step=-1",
            lambda: tl.MetricWriter("/dev/null/run", resume_step=-1),
            ValueError,
            r"resume_step must be an integer in >= 0, got -1",
        ),
        c(
            "sharding.make_mesh",
            "static argument",
            "num_devices=0",
            lambda: shd.make_mesh(0),
            ValueError,
            r"num_devices must be an integer in >= 1, got 0",
        ),
        c(
            "rl.make_rl_step",
            "static argument",
            "transform_k=9 > num_samples=4",
            lambda: rl.make_rl_step(
                None,
                None,
                None,
                rollout=rl.RolloutConfig(num_samples=4, max_new_tokens=4),
                weights=wts.WeightConfig(),
                advantages=adv.AdvantageConfig(),
                loss=los.PolicyLossConfig(),
                reward_transform="pkpo_pass",
                transform_k=9,
            ),
            ValueError,
            r"transform_k must be an integer in \[1, 4\], got 9",
        ),
        c(
            "rl.RolloutConfig",
            "domain",
            "temperature=0",
            lambda: rl.RolloutConfig(num_samples=4, max_new_tokens=4, temperature=0.0),
            ValueError,
            r"temperature must be a float > 0 for sampling",
        ),
        c(
            "evaluation.curves",
            "static argument",
            "ks=[1, 4] with N=3 samples",
            lambda: ev.curves(ev.Scored(correct=np.ones((2, 3), bool)), [1, 4]),
            ValueError,
            r"ks must be an integer in \[1, 3\], got 4",
        ),
        c(
            "evaluation.markdown_table",
            "static argument",
            "a budget the curve does not have",
            lambda: ev.markdown_table({"ce": ops.scaling_curve(ops.pass_at_k, ok3)}, [1, 8]),
            ValueError,
            r"curve 'ce' has no budgets \[8\]; it has ks=\[1, 2, 3\]",
        ),
        # ------------------------------------------------------------------ tasks, data
        c(
            "tasks.arithmetic.modular_chain_problem",
            "unknown name",
            'operator "/"',
            lambda: arith.modular_chain_problem(3, [("/", 2)], 97),
            ValueError,
            r"unknown operator '/'; expected one of \+ - \*",
        ),
        c(
            "tasks.arithmetic.iter_family",
            "unknown name",
            '"division"',
            lambda: list(arith.iter_family("division")),
            ValueError,
            r"unknown task family 'division'; expected 'multiplication' or 'modular_chain'",
        ),
        c(
            "tasks.math_answers.extract_answer",
            "unknown name",
            'mode="last"',
            lambda: answers.extract_answer("1", mode="last"),
            ValueError,
            r"unknown extraction mode 'last'",
        ),
        c(
            "tasks.tokenizers.CharTokenizer.encode",
            "domain",
            "a character outside the alphabet",
            lambda: toks.CharTokenizer("0123456789").encode("12a"),
            ValueError,
            r"character 'a' is not in the tokenizer alphabet",
        ),
        c(
            "tasks.tokenizers.HFTokenizer",
            "missing file",
            '"no/such/tokenizer.json"',
            lambda: toks.HFTokenizer("no/such/tokenizer.json"),
            FileNotFoundError,
            r"no tokenizer file at no/such/tokenizer\.json",
        ),
        c(
            "data.read_jsonl",
            "missing file",
            '"no/such/train.jsonl"',
            lambda: _lazy("cat_jax.data").read_jsonl(pathlib.Path("no/such/train.jsonl"), ["question"]),
            FileNotFoundError,
            r"missing file no/such/train\.jsonl",
        ),
        c(
            "data.read_jsonl",
            "dtype",
            "a line that is not JSON",
            lambda: _jsonl('{"question": "1", "answer": "2"}\n{oops\n'),
            ValueError,
            r"train\.jsonl:2: malformed json",
        ),
        c(
            "data.batches",
            "static argument",
            "batch_size=6 with group_size=4",
            lambda: next(_lazy("cat_jax.data").batches([], None, 8, 0, 6, group_size=4)),
            ValueError,
            r"batch_size 6 must be a positive multiple of group_size 4",
        ),
        c(
            "tasks.arithmetic.multiplication_problem",
            "domain",
            "a=123 with digits=2",
            lambda: arith.multiplication_problem(123, 45, digits=2),
            ValueError,
            r"a and b must have exactly digits=2 digits \(\[10, 100\)\), got 123 and 45",
        ),
        c(
            "tasks.arithmetic.multiplication_problems",
            "static argument",
            "digits=0",
            lambda: arith.multiplication_problems(0),
            ValueError,
            r"digits must be an integer >= 1, got 0",
        ),
        c(
            "tasks.arithmetic.modular_chain_problem",
            "domain",
            "modulus=0",
            lambda: arith.modular_chain_problem(3, [("+", 2)], 0),
            ValueError,
            r"modulus must be an integer >= 2, got 0",
        ),
        c(
            "tasks.arithmetic.sample_modular_chains",
            "domain",
            "more chains than exist",
            lambda: arith.sample_modular_chains(10**9, steps=1, modulus=3),
            ValueError,
            r"asked for 1000000000 distinct chains but only \d+ exist",
        ),
        c(
            "tasks.arithmetic.split_problems",
            "domain",
            "num_train + num_test > problems",
            lambda: arith.split_problems(arith.multiplication_problems(1), 100, 100),
            ValueError,
            r"num_train \+ num_test = 200 exceeds 81 problems",
        ),
        c(
            "tasks.tokenizers.CharTokenizer",
            "domain",
            "an alphabet with a repeated character",
            lambda: toks.CharTokenizer("aab"),
            ValueError,
            r"alphabet has repeated characters",
        ),
        c(
            "tasks.tokenizers.layout",
            "empty",
            "an empty prompt",
            lambda: toks.layout([], [5, 6], 8, 0),
            ValueError,
            r"empty prompt: the first position must be unsupervised",
        ),
        c(
            "tasks.tokenizers.layout",
            "shape",
            "a prompt that fills max_len",
            lambda: toks.layout([5] * 8, [6], 8, 0),
            ValueError,
            r"prompt of 8 tokens fills the 8-token window; nothing left to supervise",
        ),
        c(
            "tasks.math_answers.cluster_answers",
            "shape",
            "ragged rows",
            lambda: answers.cluster_answers([["1", "2"], ["1"]]),
            ValueError,
            r"row 1 has 1 answers, expected 2",
        ),
        c(
            "tasks.protein.conditional_pairs",
            "domain",
            "n=-1",
            lambda: _lazy("cat_jax.tasks.protein").conditional_pairs(-1, "train"),
            ValueError,
            r"n must be an integer >= 0, got -1",
        ),
        c(
            "tasks.protein.pretraining_corpus",
            "domain",
            "min_len > max_len",
            lambda: _lazy("cat_jax.tasks.protein").pretraining_corpus(2, min_len=10, max_len=5),
            ValueError,
            r"lengths need 1 <= min_len <= max_len, got min_len=10, max_len=5",
        ),
        # ------------------------------------------------------------------ experiments: configs and CLIs
        c(
            "experiments.common.load_config",
            "config typo",
            '{"opt.learning_rate": 1.0}',
            lambda: common.load_config("configs/sft/arith.py:smoke", {"opt.learning_rate": 1.0}),
            KeyError,
            r"config has no field 'opt\.learning_rate'; valid fields here: \['accum_steps', 'clip_norm'",
        ),
        c(
            "experiments.common.load_config",
            "unknown name",
            '"configs/sft/arith.py:passn3"',
            lambda: common.load_config("configs/sft/arith.py:passn3"),
            ValueError,
            r"unknown phase 'passn3'; valid phases:",
        ),
        c(
            "experiments.common.load_config",
            "unknown name",
            '"configs/rl/arith.py:maj"',
            lambda: common.load_config("configs/rl/arith.py:maj"),
            ValueError,
            r"unknown variant 'maj'",
        ),
        c(
            "experiments.common.load_config",
            "missing file",
            '"configs/sft/nope.py"',
            lambda: common.load_config("configs/sft/nope.py"),
            FileNotFoundError,
            r"config file 'configs/sft/nope\.py' does not exist",
        ),
        c(
            "experiments.common.parse_schedule",
            "domain",
            '"5:4" (does not start at 0)',
            lambda: common.parse_schedule("5:4", 1),
            ValueError,
            r"schedule must start at step 0, got '5:4'",
        ),
        c(
            "experiments.common.parse_schedule",
            "dtype",
            '"0-4"',
            lambda: common.parse_schedule("0-4", 1),
            ValueError,
            r"schedule must look like '0:4,100:16' \(step:value, \.\.\.\), got '0-4'",
        ),
        c(
            "experiments.common.load_params",
            "missing file",
            'init_from="no/such/run"',
            lambda: common.load_params("no/such/run", {}),
            FileNotFoundError,
            r"init_from='no/such/run' has no params/ \(run that phase to the end first\)",
        ),
        c(
            "experiments.common.task_data",
            "unknown name",
            'task.name="division"',
            lambda: common.task_data(
                common.load_config("configs/sft/arith.py:smoke", {"task.name": "division"}).task
            ),
            ValueError,
            r"task\.name must be one of .*got 'division'",
        ),
        c(
            "experiments.evaluate.parse_runs",
            "dtype",
            '"ce:/tmp/x"',
            lambda: evaluate.parse_runs("ce:/tmp/x"),
            ValueError,
            r"runs must look like 'name=workdir,name=workdir', got item 'ce:/tmp/x'",
        ),
        c(
            "experiments.evaluate.parse_runs",
            "empty",
            '""',
            lambda: evaluate.parse_runs(""),
            ValueError,
            r"runs is empty: give at least one 'name=workdir'",
        ),
        c(
            "experiments.common.load_config",
            "config typo",
            '{"optim.lr": 1.0} (a parent that does not exist)',
            lambda: common.load_config("configs/sft/arith.py:smoke", {"optim.lr": 1.0}),
            KeyError,
            r"optim.*Did you mean \"opt\"",
        ),
        c(
            "python -m experiments.rl",
            "config typo",
            "--config.mesh.device=0",
            lambda: _cli(
                "experiments.rl",
                "--config=configs/rl/arith.py:smoke",
                "--workdir=/tmp/never_written",
                "--config.mesh.device=0",
            ),
            CliError,
            r"config has no field 'mesh\.device'; valid fields of 'mesh': \['devices', 'fsdp'\]",
        ),
        c(
            "python -m experiments.sft",
            "missing file",
            "--config=configs/sft/nope.py",
            lambda: _cli("experiments.sft", "--config=configs/sft/nope.py", "--workdir=/tmp/never_written"),
            CliError,
            r"No such file or directory: 'configs/sft/nope\.py'",
        ),
        c(
            "python -m experiments.sft",
            "config typo",
            "--config.opt.learning_rate=1",
            lambda: _cli(
                "experiments.sft",
                "--config=configs/sft/arith.py:smoke",
                "--workdir=/tmp/never_written",
                "--config.opt.learning_rate=1",
            ),
            CliError,
            r"config has no field 'opt\.learning_rate'; valid fields of 'opt': \['accum_steps'",
        ),
        c(
            "python -m experiments.rl",
            "missing file",
            "--workdir omitted",
            lambda: _cli("experiments.rl", "--config=configs/rl/arith.py:smoke"),
            CliError,
            r"Flag --workdir must have a value other than None",
        ),
    ]


# ----------------------------------------------------------------------------- running and rendering


def case_id(case: Case) -> str:
    return f"{case.api}: {case.given}"


def observe(case: Case) -> dict:
    """Run one case; report what it raised (or returned) and whether that is what the table says."""
    row = {"id": case_id(case), "api": case.api, "given": case.given, "kind": case.kind}
    try:
        with _quiet():
            result = case.call()
    except Exception as e:  # the whole point: record any exception, expected or not
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raised = f"exit status {e.code}" if isinstance(e, CliError) else f"`{type(e).__name__}`"
        row |= {"raised": raised, "message": message}
        row["ok"] = (
            case.exc is not None
            and isinstance(e, case.exc)
            and re.search(case.match, message, flags=re.DOTALL) is not None
        )
        return row
    # A documented result (NaN, a dtype): the table shows the documented text, the check proves it.
    row |= {"raised": None, "message": case.match, "result": repr(result)[:200]}
    row["ok"] = case.exc is None and bool(case.check(result))
    return row


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def observe_all() -> list[dict]:
    return [observe(case) for case in cases()]


def _cell(text: str, limit: int = 170) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def render(rows: list[dict]) -> str:
    """docs/errors.md from what running the cases produced (:func:`observe` rows, in table order)."""
    lines = [
        "# Bad input: what you get",
        "",
        "Generated by `python tests/errors_table.py` from the cases in that file; `tests/test_errors.py`",
        "runs every case and fails if a row here differs from what the code does. Messages are the observed",
        "ones (first 170 characters), from a plain `import cat_jax` on CPU.",
        "",
        "Conventions: a bad static argument (budget, option name, config field) raises `ValueError` naming",
        "the argument and the allowed values, before anything is compiled. Array *values* are checked",
        "eagerly where the API says so (`validate=True` on the objectives; by default on concrete inputs",
        "of the operators, weights and advantages); under `jit` out-of-domain values give NaN, which the",
        "non-finite guard of `train_lib` turns into a `FloatingPointError` naming the step. Rows that say",
        "*returns* are documented results, not errors. With a jaxtyping import hook active (as in this",
        "repository's tests) a wrong rank or dtype may be reported first as `jaxtyping.TypeCheckError`.",
        "",
        "| API | bad input | kind | you get | message |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        got = row["raised"] or "returns"
        api, given, kind, message = row["api"], _cell(row["given"], 80), row["kind"], _cell(row["message"])
        lines.append(f"| `{api}` | {given} | {kind} | {got} | {message} |")
    return "\n".join(lines) + "\n"


def run_subprocess() -> list[dict]:
    """Observe every case in a fresh interpreter without the tests' jaxtyping hook."""
    out = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"errors_table.py --json failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str]) -> int:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    rows = observe_all()
    if "--json" in argv:
        print(json.dumps(rows))
        return 0
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"MISMATCH {r['id']}: {r['raised']}: {r['message']}", file=sys.stderr)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(rows))
    print(f"wrote {DOC.relative_to(ROOT)} ({len(rows)} cases, {len(bad)} mismatches)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
