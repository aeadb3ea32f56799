"""Protein Best-of-N experiment: its config sections, the branch names, the smoke run.

The token-id rewards it trains on are tested against the Python references in tests/test_tasks_protein.py.
"""

import hashlib
import json
import re

import numpy as np
import pytest

from cat_jax import advantages as adv
from cat_jax import losses, sampling
from experiments import common
from experiments import protein as exp


def test_config_sections_build_the_library_dataclasses():
    # The overrides in results/protein/long_rl's command keep working after the sectioned config.
    overrides = {"uncond.steps": 150, "cond.steps": 150, "uncond.seeds": (0,), "cond.seeds": (0,)}
    for spec in ("configs/protein/protein.py", "configs/protein/protein.py:smoke"):
        config = common.load_config(spec, {**overrides, "results_dir": "/tmp/x"})
        for setting, quantile in (("uncond", "history"), ("cond", "within_prompt")):
            cfg = config[setting]
            assert sampling.SampleConfig(**cfg.rollout.to_dict()).num_samples == cfg.rollout.num_samples
            assert adv.AdvantageConfig(**cfg.advantages.to_dict()).clip == 5.0
            assert losses.PolicyLossConfig(**cfg.loss.to_dict()).kl_beta == cfg.loss.kl_beta
            assert common.optimizer_config(cfg.opt, total_steps=cfg.steps).weight_decay == 0.01
            w = exp.weight_config("bon2", **cfg.weights.to_dict())
            assert (w.strategy, w.n, w.normalize, w.quantile) == ("bon", 2, True, quantile)
        for phase in ("pretrain", "cond_warmup"):
            opt = common.optimizer_config(config[phase].opt, total_steps=config[phase].steps)
            assert opt.schedule == "cosine" and 0 < opt.warmup_steps < opt.total_steps


# sha256 of the arrays the experiment built in memory before it read CatProtein (experiments/protein.py at
# 8a76954: pretraining_data, conditional_sft_data, conditional_prompts on protein.pretraining_corpus /
# conditional_pairs), measured before the switch: the full run and the smoke.
OLD_ARRAYS = {
    "": "5963224cca146e87eff79ae0beaac72a8d482f36173a2353d75b027549f2518b",
    "smoke": "d2e1744f76366595f90ae7ce58a62f1c166a039ad383f157b9b1cdd3ba9e2407",
}


@pytest.mark.parametrize(
    "variant", [pytest.param("", marks=pytest.mark.slow, id="full"), pytest.param("smoke", id="smoke")]
)
def test_arrays_read_through_the_builder_equal_the_old_in_memory_ones(variant):
    arrays = exp.read_data(common.load_config(f"configs/protein/protein.py:{variant}"))
    flat = {f"{phase}/{k}": v for phase in ("pretrain", "cond_warmup", "cond_train", "cond_test")
            for k, v in arrays[phase].items()}  # fmt: skip
    flat["corpus"] = np.frombuffer("\n".join(arrays["corpus"]).encode(), np.uint8)
    h = hashlib.sha256()
    for k in sorted(flat):
        v = np.asarray(flat[k])
        h.update(f"{k}{v.dtype}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
    assert h.hexdigest() == OLD_ARRAYS[variant]
    assert arrays["cond_train"]["prompts"].shape[1] == 21  # BOS + the longest input (19) + '>'


def test_weight_config_names():
    assert exp.weight_config("standard", quantile="history").strategy == "standard"
    w = exp.weight_config("bon4", quantile="history")
    assert (w.strategy, w.n, w.normalize, w.quantile) == ("bon", 4, True, "history")
    with pytest.raises(ValueError, match="branch must be"):
        exp.weight_config("best4", quantile="history")


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_smoke_run_writes_every_report_file(tmp_path):
    config = common.load_config("configs/protein/protein.py:smoke")
    report = exp.run(config, str(tmp_path))
    out = tmp_path / "report"
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"] == config.command and saved["command"].startswith("python -m experiments.protein")
    for setting, reference in (("uncond", "Pre-trained LM"), ("cond", "Conditional warm-up")):
        assert set(saved[setting]) == {reference, "BoN-2"}
        rec = saved[setting]["BoN-2"]
        seeds = len(config[setting].seeds)
        assert rec["seeds"] == seeds and len(rec["per_seed"]) == seeds
        for name in ("with_replacement", "without_replacement"):
            curve = rec["across_seeds"][name]
            assert curve["k"] == list(config.eval[f"{setting}_ks"]) and np.all(
                np.diff(curve["mean"]) >= -1e-6
            )
    table = (out / "table.md").read_text()
    assert config.command in table and "| BoN-2 (2) |" in table and "| BoN-2 (1) |" in table
    for png in ("best_of_k.png", "hydrophobicity.png"):
        assert (out / png).stat().st_size > 5000
    assert report["uncond"]["BoN-2"]["per_seed"][0]["train_reward_mean"]
    assert re.search(r"Wall time \(s\): pretrain \d+", table)
