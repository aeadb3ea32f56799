"""Protein Best-of-N experiment: its config sections, the branch names, the smoke run.

The token-id rewards it trains on are tested against the Python references in tests/test_tasks_protein.py.
"""

import hashlib
import json
import re
from unittest import mock

import jax
import numpy as np
import pytest

from cat_jax import advantages as adv
from cat_jax import losses, sampling, testing
from cat_jax.tasks import protein, protein_data
from experiments import common
from experiments import protein as exp
from experiments import protein_report as report_lib


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
@pytest.mark.parametrize("variant", ["smoke", "rare,smoke"])
def test_smoke_run_writes_every_report_file(tmp_path, variant):
    config = common.load_config(f"configs/protein/protein.py:{variant}")
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
    for png in ("best_of_k.png", "hydrophobicity.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 5000
    assert report["uncond"]["BoN-2"]["per_seed"][0]["train_reward_mean"]
    assert len(report["uncond"]["BoN-2"]["per_seed"][0]["train_invalid_frac"]) == 1  # 2 steps: one window
    assert table.count(f"| {report_lib.INVALID_HEADER} |") == 4  # every best-of-k table
    assert re.search(r"Wall time \(s\): pretrain \d+", table)


def test_paper_variant_is_spec_3_4():
    c = common.load_config("configs/protein/protein.py:paper")
    assert c.model.checkpoint and c.model.lora.rank == 0 and c.results_dir == "results/protein_paper"
    u, k = c.uncond, c.cond
    assert (u.rollout.num_samples, u.rollout.temperature, u.rollout.top_k, u.rollout.max_new_tokens) == (
        32,
        1.2,
        50,
        64,
    )
    assert (u.opt.lr, u.loss.kl_beta, u.weights.quantile) == (1e-5, 0.3, "history")
    assert (k.rollout.num_samples, k.rollout.temperature, k.rollout.top_k, k.rollout.max_new_tokens) == (
        25,
        1.3,
        0,
        32,
    )
    assert (k.opt.lr, k.loss.kl_beta, k.weights.quantile) == (2e-6, 0.05, "within_prompt")
    for rl in (u, k):
        assert (rl.prompts_per_step, rl.steps, rl.advantages.clip) == (4, 300, 5.0)
        opt = common.optimizer_config(rl.opt, total_steps=rl.steps)
        assert (opt.schedule, opt.weight_decay, opt.clip_norm) == ("constant", 0.01, 1.0)
    w = c.cond_warmup
    opt = common.optimizer_config(w.opt, total_steps=w.steps)
    assert (w.batch_size, opt.accum_steps, opt.total_steps, w.num_pairs) == (25, 4, 60, 2000)
    assert (opt.lr, opt.schedule, opt.warmup_steps, opt.weight_decay, opt.clip_norm) == (
        5e-6,
        "constant",
        0,
        0.01,
        1.0,
    )
    assert (c.eval.cond_prompts, c.eval.cond_samples, c.eval.uncond_samples) == (150, 32, 512)
    assert adv.RewardHistory.create().capacity == 4000
    smoke = common.load_config("configs/protein/protein.py:paper,smoke")
    assert smoke.command.startswith(
        "python -m experiments.protein --config=configs/protein/protein.py:paper,smoke"
    )
    assert smoke.cond_warmup.steps == 2 * smoke.cond_warmup.opt.accum_steps


def _protein_leaning_gpt2(path):
    """A tiny random GPT-2 checkpoint whose samples are mostly residues (some EOS), so that the smoke run
    sees valid proteins: the residue (and EOS) embedding rows share a direction the final LayerNorm's bias
    points along."""
    import safetensors.numpy as st

    testing.write_checkpoint(path, "gpt2")
    tensors = st.load_file(str(path / "model.safetensors"))
    wte = tensors["transformer.wte.weight"]
    rng = np.random.default_rng(0)
    u = rng.normal(size=wte.shape[1]).astype(np.float32)
    u /= np.linalg.norm(u)
    tok = json.loads((path / "tokenizer.json").read_text())["model"]["vocab"]
    for c in protein.ALPHABET:
        wte[tok[c]] += 2.0 * u
    eos = json.loads((path / "config.json").read_text())["eos_token_id"]
    wte[eos] += 1.2 * u
    tensors["transformer.ln_f.bias"] = (tensors["transformer.ln_f.bias"] + 2.0 * u).astype(np.float32)
    st.save_file(tensors, str(path / "model.safetensors"))


@pytest.mark.slow  # a tiny GPT-2 checkpoint through the paper's variant (smoke): ~30 s
def test_checkpoint_run_paper_smoke(tmp_path):
    _protein_leaning_gpt2(tmp_path / "gpt2")
    config = common.load_config(
        "configs/protein/protein.py:paper,smoke", {"model.checkpoint": str(tmp_path / "gpt2")}
    )
    report = exp.run(config, str(tmp_path / "run"))
    assert "GPT2Config" in report["model"] and "pretraining_corpus_h" not in report
    assert not (tmp_path / "run" / "pretrain" / "params").exists()  # the checkpoint is the initial model
    for setting, reference in (("uncond", "Pre-trained LM"), ("cond", "Conditional warm-up")):
        assert set(report[setting]) == {reference, "BoN-2"}
        metrics = report[setting]["BoN-2"]["per_seed"][0]["final_train_metrics"]
        assert "reward/mean" in metrics and "rl/kl" in metrics
        curve = report[setting]["BoN-2"]["across_seeds"]["with_replacement"]
        assert np.all(np.diff(curve["mean"]) >= -1e-6)
    # Evaluation pools: rewards are the references' function of the decoded text's h and length.
    for wd, setting in (("pretrain", "uncond"), ("uncond/bon2/seed0", "uncond"), ("cond_warmup", "cond")):
        with np.load(tmp_path / "run" / wd / "eval.npz") as f:
            r, h, n = f["rewards"], f["h"], f["length"]
        ok = np.isfinite(h) & (n >= (protein.UNCOND_MIN_LEN if setting == "uncond" else protein.COND_MIN_LEN))
        assert (r[~ok] == protein.INVALID_REWARD).all() and (r[ok] > -2.01).all()
        if setting == "uncond":
            assert ok.any()
            np.testing.assert_allclose(r[ok], protein.unconditional_reward_of_h(h[ok]), rtol=1e-12)
    # Full fine-tuning: the warm-up changed every tensor of the checkpoint (no adapters, no frozen part).
    ckpt, _ = exp._load_checkpoint(config.model)
    warm = common.load_params(tmp_path / "run" / "cond_warmup", ckpt.params)
    pairs = zip(jax.tree.leaves(warm), jax.tree.leaves(ckpt.params), strict=True)
    assert all(not np.array_equal(a, b) for a, b in pairs)
    table = (tmp_path / "run" / "report" / "table.md").read_text()
    assert config.command in table and "| BoN-2 (2) |" in table


def test_lora_with_a_checkpoint_is_refused(tmp_path):
    testing.write_checkpoint(tmp_path, "gpt2")
    config = common.load_config(
        "configs/protein/protein.py:paper,smoke", {"model.checkpoint": str(tmp_path), "model.lora.rank": 4}
    )
    with pytest.raises(ValueError, match=r"model\.lora\.rank=4: the protein experiment fine-tunes the whole"):
        exp.run(config, str(tmp_path / "run"))


def test_rare_variant_is_a_rare_mode_at_spec_scale():
    from configs.protein import protein as cfg_module

    c = common.load_config("configs/protein/protein.py:rare")
    assert c.results_dir == "results/protein_rare" and c.command.startswith(
        "python -m experiments.protein --config=configs/protein/protein.py:rare"
    )
    assert tuple(c.pretrain.common_beta) == cfg_module.COMMON_BETA
    assert c.pretrain.rare_fraction == cfg_module.RARE_FRACTION and tuple(c.pretrain.rare_beta) == (
        60.0,
        20.0,
    )
    assert (c.uncond.loss.kl_beta, c.cond.loss.kl_beta) == (0.3, 0.05)  # SPEC §3.4
    assert (c.uncond.opt.lr, c.cond.opt.lr) == (cfg_module.UNCOND_LR, cfg_module.COND_LR)
    assert c.uncond.steps == c.cond.steps == cfg_module.RARE_STEPS
    assert c.uncond.branches == ("standard", "bon2", "bon4", "bon8") and tuple(c.cond.seeds) == (0, 1, 2)
    default = common.load_config("configs/protein/protein.py")
    assert c.uncond.rollout == default.uncond.rollout and c.cond.rollout == default.cond.rollout
    smoke = common.load_config("configs/protein/protein.py:rare,smoke")
    assert smoke.command.startswith(
        "python -m experiments.protein --config=configs/protein/protein.py:rare,smoke"
    )
    assert smoke.results_dir == "" and smoke.pretrain.rare_fraction == cfg_module.RARE_FRACTION
    with pytest.raises(ValueError, match="variants 'paper' and 'rare' exclude each other"):
        common.load_config("configs/protein/protein.py:paper,rare")


def test_corpus_knobs_go_through_catprotein(tmp_path):
    pre = common.load_config("configs/protein/protein.py:rare,smoke").pretrain
    want = protein.pretraining_corpus(
        pre.num_sequences,
        pre.corpus_seed,
        max_len=pre.max_len,
        rare_fraction=pre.rare_fraction,
        common_beta=tuple(pre.common_beta),
    )
    assert exp.pretraining_corpus(pre, data_dir=tmp_path) == want
    assert want != protein.pretraining_corpus(pre.num_sequences, pre.corpus_seed, max_len=pre.max_len)
    # Both the default knobs and the rare ones are read through the builder (one data path).
    default = common.load_config("configs/protein/protein.py:smoke").pretrain
    with mock.patch.object(exp.protein_data, "read_corpus", return_value=["BUILDER"]) as read:
        assert exp.pretraining_corpus(default) == ["BUILDER"]
    knobs = protein_data.CORPUS_KNOBS
    read.assert_called_once_with(64, seed=0, max_len=32, data_dir=None, **knobs)


def test_invalid_share_of_a_hand_made_pool(tmp_path):
    r = protein.INVALID_REWARD
    pools = [  # two seeds' pools [1, 4]: 2 of 4 and 1 of 4 samples invalid
        np.array([[r, 4.0, 12.0, r]]),
        np.array([[4.0, r, 3.0, 1.0]]),
    ]
    assert [report_lib.invalid_fraction(p) for p in pools] == [0.5, 0.25]
    runs = [(seed, tmp_path, {"rewards": p, "h": np.full(p.shape, 0.4)}) for seed, p in enumerate(pools)]
    rec = report_lib.model_record(runs, setting="uncond", ks=[1, 2], cond_prompts={})
    assert rec["invalid_across_seeds"]["mean"] == pytest.approx(0.375)
    assert rec["invalid_across_seeds"]["se"] == pytest.approx(0.125)  # std (ddof 1) 0.1768 / sqrt(2)
    one = report_lib.model_record(runs[:1], setting="uncond", ks=[1, 2], cond_prompts={})
    assert one["invalid_across_seeds"] == {"mean": 0.5, "se": None}
    table = "| model | @1 |\n|---|---|\n| A | 1.00 |\n| B | 2.00 |"
    assert report_lib.with_invalid_column(
        table, [rec["invalid_across_seeds"], one["invalid_across_seeds"]]
    ) == (
        "| model | @1 | invalid (R = -5) |\n|---|---|---|\n| A | 1.00 | 0.375 ± 0.125 |\n| B | 2.00 | 0.500 |"
    )
    with pytest.raises(ValueError, match="the table has 2 rows for 1 invalid shares"):
        report_lib.with_invalid_column(table, [one["invalid_across_seeds"]])


def test_committed_default_table_is_the_render_of_its_results():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "results" / "protein"
    report = json.loads((root / "results.json").read_text())
    plots = ["best_of_k.png", "hydrophobicity.png"]  # the run predates learning_curves.png
    assert report_lib.markdown_report(report, plots=plots) == (root / "table.md").read_text()
