"""The paper's own setting end to end on CPU: tiny random Hugging Face checkpoints (Llama 3, Mistral, Qwen2
chat templates), MATH-format files, LoRA SFT warm-up -> branch -> evaluation, RL, export -> transformers."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax import testing
from experiments import common, evaluate, export, rl, sft


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    testing.write_math_jsonl(root / "math", num_train=24, num_test=8)
    for family in ("llama", "mistral", "qwen2"):
        testing.write_checkpoint(root / family, family)
    return root


def _config(spec, root, family="llama", **overrides):
    base = {"model.checkpoint": str(root / family), "task.manual_dir": str(root / "math")}
    return common.load_config(spec, {**base, **overrides})


def test_sft_warmup_branch_evaluate_export(setting, tmp_path):
    warm = sft.run(_config("configs/sft/math.py:passn_warmup,smoke", setting), str(tmp_path / "warm"))
    assert warm["eval"]["pass@k"]["k"] == [1, 2, 4] and warm["eval_problems"] == 4
    assert warm["trainable_params"] < warm["num_params"] / 4  # LoRA: only the adapters train
    branch_cfg = _config("configs/sft/math.py:passn16,smoke", setting, init_from=str(tmp_path / "warm"))
    branch = sft.run(branch_cfg, str(tmp_path / "b"))
    assert branch["objective"]["strategy"] == "passn" and branch["objective"]["n"] == 4
    # Checkpoints and params/ hold the adapters (and optimizer), never the frozen base.
    saved = sum(f.stat().st_size for f in (tmp_path / "b" / "params").rglob("*") if f.is_file())
    assert saved < 4 * branch["num_params"]  # the base alone would be 4 bytes per parameter
    # The untrained checkpoint is the evaluation's baseline row.
    runs = f"base=untrained,b={tmp_path / 'b'}"
    eval_cfg = _config("configs/eval/math.py:table2,smoke", setting, runs=runs)
    report = evaluate.run(eval_cfg, str(tmp_path / "eval"))
    assert set(report["curves"]) == {"base", "b"}
    assert report["curves"]["b"]["pass@k"] == branch["eval"]["pass@k"]
    # Export merges the adapters: transformers loads the directory and gets the policy's logits.
    out = export.export(branch_cfg, str(tmp_path / "b"), str(tmp_path / "hf"))
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    trained = _config("configs/sft/math.py:passn16,smoke", setting, init_from=str(tmp_path / "b"))
    policy, data = common.policy_and_data(trained)
    tokens = jnp.asarray(data.eval.prompts[:2])
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    ours = np.asarray(policy.apply(policy.full, tokens, positions)[0])[..., : data.vocab_size]
    theirs = hf(torch.as_tensor(np.array(tokens))).logits.detach().numpy()[..., : data.vocab_size]
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=2e-4)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["vocab_size"] == 128


@pytest.mark.slow  # 15 s: the fast tier keeps RL over a frozen base in tests/test_frozen_base.py
def test_rl_pass_at_4_log_with_kl(setting, tmp_path):
    warm = _config("configs/sft/math.py:rl_passn_warmup,smoke", setting)
    sft.run(warm, str(tmp_path / "warm"))
    cfg = _config("configs/rl/math.py:passn4_log,smoke", setting, init_from=str(tmp_path / "warm"))
    report = rl.run(cfg, str(tmp_path / "rl"))
    assert report["steps"] == 2 and report["final_train_metrics"]["loss/total"] != 0
    assert "reward/mean" in report["final_train_metrics"] and "rl/kl" in report["final_train_metrics"]


@pytest.mark.slow  # two more RL variants end to end: make test-slow
@pytest.mark.parametrize("variant", ["passn_standard", "maj4_raw"])
def test_rl_variants(setting, tmp_path, variant):
    report = rl.run(_config(f"configs/rl/math.py:{variant},smoke", setting), str(tmp_path / variant))
    assert report["steps"] == 2 and "maj@k" in report["eval"]


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_each_template_family_encodes_and_evaluates(setting, tmp_path, family):
    cfg = _config("configs/eval/math.py:table4,smoke", setting, family, runs="base=untrained")
    report = evaluate.run(cfg, str(tmp_path / family))
    assert report["eval_problems"] == 4 and set(report["curves"]) == {"base"}


def test_math_task_without_checkpoint_is_an_error(setting):
    cfg = common.load_config("configs/sft/math.py:passn_warmup,smoke", {"task.manual_dir": str(setting)})
    with pytest.raises(ValueError, match=r"needs a pretrained policy: set model\.checkpoint"):
        common.policy_and_data(cfg)
    cfg = _config("configs/sft/math.py:passn_warmup,smoke", setting, **{"model.checkpoint": "/nonexistent"})
    with pytest.raises(FileNotFoundError, match=r"model\.checkpoint=./nonexistent. is not a Hugging Face"):
        common.policy_and_data(cfg)


@pytest.mark.slow  # 8 s: meshes are covered fast by tests/test_mesh_steps.py, processes by test_multihost
def test_four_devices_match_one(setting, tmp_path):
    """Data parallel over 4 devices (batch 4, eval chunk 4): the same loss curve and adapters as 1 device."""
    import jax

    from cat_jax import train_lib

    runs = {}
    for devices in (1, 4):
        cfg = _config("configs/sft/math.py:passn_warmup,smoke", setting, **{"mesh.devices": devices})
        runs[devices] = sft.run(cfg, str(tmp_path / f"d{devices}"))
    curves = {d: [r["loss/total"] for r in train_lib.read_metrics(tmp_path / f"d{d}")] for d in runs}
    np.testing.assert_allclose(curves[4], curves[1], rtol=1e-5, atol=1e-6)
    policy, _ = common.policy_and_data(cfg)
    one = common.load_params(tmp_path / "d1", policy.params)
    four = common.load_params(tmp_path / "d4", policy.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), one, four)
    assert runs[4]["eval"]["pass@k"] == runs[1]["eval"]["pass@k"]


def test_plan_counts_the_smoke_policy(setting):
    """--plan's counts are the built policy's: every base parameter, and exactly the LoRA adapters trained."""
    import jax

    cfg = _config("configs/sft/math.py:passn16,smoke", setting)
    planned = common.plan_for(cfg)
    policy, _ = common.policy_and_data(cfg)
    assert planned.num_params == sum(x.size for x in jax.tree.leaves(policy.frozen))
    assert planned.trainable_params == sum(x.size for x in jax.tree.leaves(policy.params))
    assert planned.fits is None  # CPU reports no memory limit; a GPU / TPU run is checked against its own


@pytest.mark.slow  # two CLI processes: make test-slow
def test_cli_plan_then_smoke_run(setting, tmp_path):
    import subprocess
    import sys

    args = [
        sys.executable, "-m", "experiments.sft", "--config=configs/sft/math.py:passn_warmup,smoke",
        f"--config.model.checkpoint={setting / 'llama'}", f"--config.task.manual_dir={setting / 'math'}",
        f"--workdir={tmp_path / 'run'}",
    ]  # fmt: skip
    plan = subprocess.run([*args, "--plan"], capture_output=True, text=True, check=True, timeout=300)
    assert "trainable (lora)" in plan.stdout and not (tmp_path / "run").exists()
    subprocess.run(args, capture_output=True, text=True, check=True, timeout=300)
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["eval"]["pass@k"]["k"] == [1, 2, 4]
