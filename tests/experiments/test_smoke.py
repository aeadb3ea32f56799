"""Smoke runs of the experiment modules: each config's smoke variant end to end on CPU, plus resume."""

import json

import pytest

from experiments import common, evaluate, quickstart, rl, sft


def test_sft_warmup_then_branch(tmp_path):
    warm = sft.run(common.load_config("configs/sft/arith.py:warmup,smoke"), str(tmp_path / "warm"))
    assert warm["eval"]["pass@k"]["k"] == [1, 2, 4]
    branch_cfg = common.load_config(
        "configs/sft/arith.py:maj8_3,smoke",
        {"init_from": str(tmp_path / "warm"), "objective.reduction": "token_mean"},
    )
    branch = sft.run(branch_cfg, str(tmp_path / "maj"))
    saved = json.loads((tmp_path / "maj" / "results.json").read_text())
    assert saved["objective"]["strategy"] == "majority" and "maj@k" in saved["eval"]
    assert branch["final_train_metrics"]["sft/log_p"] != warm["final_train_metrics"]["sft/log_p"]
    # Rerunning a finished run resumes at its last step and only re-evaluates.
    again = sft.run(branch_cfg, str(tmp_path / "maj"))
    assert again["eval"] == branch["eval"]
    # Side-by-side evaluation with a temperature sweep: JSON, table and plots.
    runs = f"warm={tmp_path / 'warm'},maj={tmp_path / 'maj'}"
    eval_cfg = common.load_config("configs/eval/arith.py:smoke", {"runs": runs, "temperatures": [1.0, 1.5]})
    report = evaluate.run(eval_cfg, str(tmp_path / "eval"))
    assert set(report["curves"]) == {"warm T=1", "warm T=1.5", "maj T=1", "maj T=1.5"}
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| maj T=1.5 |" in table and (tmp_path / "eval" / "pass_at_k.png").stat().st_size > 1000
    assert report["curves"]["maj T=1"]["pass@k"] == branch["eval"]["pass@k"]


def test_rl_smoke(tmp_path):
    report = rl.run(common.load_config("configs/rl/arith.py:passn4_log,smoke"), str(tmp_path / "a"))
    assert report["steps"] == 2 and "weights/mean" in report["final_train_metrics"]
    # PKPO with its k on a schedule: one compiled step per scheduled value, the value logged per step.
    cfg = common.load_config("configs/rl/arith.py:pkpo4,smoke", {"n_schedule": "0:2,1:4"})
    rl.run(cfg, str(tmp_path / "b"))
    logged = [json.loads(line)["schedule/value"] for line in (tmp_path / "b" / "metrics.jsonl").open()]
    assert logged == [2, 4]


def test_config_errors():
    with pytest.raises(KeyError, match=r"no field 'opt\.learning_rate'"):
        common.load_config("configs/sft/arith.py:smoke", {"opt.learning_rate": 1.0})
    with pytest.raises(ValueError, match="unknown phase"):
        common.load_config("configs/sft/arith.py:passn3")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        common.load_config("configs/sft/nope.py")
    with pytest.raises(ValueError, match="unknown variant"):
        common.load_config("configs/rl/arith.py:maj")
    with pytest.raises(ValueError, match="must start at step 0"):
        common.parse_schedule("5:4", 1)
    with pytest.raises(ValueError, match="step:value"):
        common.parse_schedule("0-4", 1)
    assert common.value_at(common.parse_schedule("0:4,10:16", 1), 9) == 4
    with pytest.raises(ValueError, match="runs must look like"):
        evaluate.parse_runs("ce:/tmp/x")


def test_quickstart_smoke(tmp_path):
    table = quickstart.run(str(tmp_path), smoke=True, progress=False)
    assert "| ce |" in table and "| passn16 |" in table and "pass@k" in table
