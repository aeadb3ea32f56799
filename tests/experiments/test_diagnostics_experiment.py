"""Smoke run of experiments/diagnostics.py on a tiny random model (1-digit multiplication: 100 answers)."""

import json

import jax
import numpy as np
import pytest

from cat_jax import evaluation, reporting
from cat_jax.models import llama
from experiments import common
from experiments import diagnostics as exp

CONFIG = "configs/sft/arith.py:ce,smoke"
OVERRIDES = {"task.digits": 1}  # answers are the 100 two-digit strings + EOS: seconds, not minutes


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_smoke_run_writes_files_and_matches_teacher_forced_pass1(tmp_path):
    cfg = common.load_config(CONFIG, OVERRIDES)
    data = common.task_data(cfg.task)
    model_cfg = common.scratch_model_config(cfg.model, data.vocab_size)
    graphdef, params = llama.init(model_cfg, jax.random.key(3))
    common.save_params(tmp_path / "runs" / "ce", params)
    reporting.write_json(tmp_path / "runs" / "ce" / "results.json", {})
    common.save_params(tmp_path / "runs" / "passn4", params)  # no results.json: still training

    problems = len(data.eval.prompts)
    out = tmp_path / "out"
    payload = exp.run(
        tmp_path / "runs",
        out,
        branches=("ce", "passn4"),
        config=CONFIG,
        overrides=OVERRIDES,
        problems=problems,
        ns=(4,),
        command="python -m experiments.diagnostics --smoke-test",
    )

    assert sorted(p.name for p in out.iterdir()) == ["results.json", "table.md", "weight_curves.png"]
    assert json.loads((out / "results.json").read_text())["command"].startswith("python -m experiments.")
    assert "python -m experiments.diagnostics" in (out / "table.md").read_text()
    assert b"made by: python -m experiments.diagnostics" in (out / "weight_curves.png").read_bytes()
    assert list(payload["models"]) == ["ce"] and "passn4" in payload["skipped"]
    assert payload["answer_categories"] == 101
    assert payload["cosine_table"]["max_abs_diff_vs_spec"] < 1e-4

    recs = payload["models"]["ce"]["problems"]
    assert len(recs) == problems
    # The enumerated answer distribution gives the correct answer the probability that one teacher-forced
    # pass over (prompt, answer + EOS) gives it: the exact pass@1 of the model.
    held_out = (data.eval.prompts, data.eval.lengths, data.eval.targets, data.eval.target_lengths)
    ref = evaluation.exact_pass_at_k(
        llama.decoder(graphdef), params, *held_out, temperatures=[1.0], ks=[1], pad_id=data.pad_id
    )
    p_target = np.array([r["p_target"] for r in recs])
    np.testing.assert_allclose(p_target.mean(), ref["T1/pass@1"], rtol=1e-4)
    np.testing.assert_allclose(np.log(p_target).mean(), ref["T1/log_p"], rtol=1e-4)
    for r in recs:
        assert 0 <= r["p_invalid"] < 1 and abs(r["raw_one_minus_sum"]) < 1
        d = r["rho"]["4"]
        assert (d["rho"] is None) == (d["reason"] is not None)
        if d["rho"] is not None:
            assert d["rho"] >= 1 - 1e-9 and 0 <= d["c_rival"] <= d["a"]
