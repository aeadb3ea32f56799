"""Smoke runs of the experiment modules: each config's smoke variant end to end on CPU, plus resume.

(The exact teacher-forced estimators that the studies log are tested in tests/test_evaluation.py.)
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cat_jax.models import llama
from experiments import common, evaluate, quickstart, rl, sft


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
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
    # Rerunning a finished run resumes at its last step and returns its report as it stands.
    again = sft.run(branch_cfg, str(tmp_path / "maj"))
    assert again == json.loads(json.dumps(branch))  # nothing re-evaluated or overwritten
    assert json.loads((tmp_path / "maj" / "results.json").read_text()) == saved
    # Side-by-side evaluation with a temperature sweep: JSON, table and plots.
    runs = f"warm={tmp_path / 'warm'},maj={tmp_path / 'maj'}"
    eval_cfg = common.load_config("configs/eval/arith.py:smoke", {"runs": runs, "temperatures": [1.0, 1.5]})
    report = evaluate.run(eval_cfg, str(tmp_path / "eval"))
    assert set(report["curves"]) == {"warm T=1", "warm T=1.5", "maj T=1", "maj T=1.5"}
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| maj T=1.5 |" in table and (tmp_path / "eval" / "pass_at_k.png").stat().st_size > 1000
    assert report["curves"]["maj T=1"]["pass@k"] == branch["eval"]["pass@k"]


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_rl_smoke(tmp_path):
    # With a KL term: the frozen reference must not share the (donated) parameters' buffers. The untrained
    # smoke model gets every answer wrong, so the all-wrong penalty gives the first update a gradient; a
    # large step then moves the policy off its reference and the second step's KL is clearly positive.
    overrides = {"loss.kl_beta": 0.1, "opt.lr": 0.05, "advantages.all_wrong_penalty": 0.5}
    cfg = common.load_config("configs/rl/arith.py:passn4_log,smoke", overrides)
    report = rl.run(cfg, str(tmp_path / "a"))
    assert report["steps"] == 2 and "weights/mean" in report["final_train_metrics"]
    assert report["final_train_metrics"]["rl/kl"] > 1e-6
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
    with pytest.raises(ValueError, match="'seqp' and 'exactp'"):
        common.load_config("configs/rl/arith.py:passn4_log,seqp,exactp")
    probability = lambda v: common.load_config(f"configs/rl/arith.py:{v}").weights.probability
    assert [probability(v) for v in ("passn4_log", "passn4_log,seqp", "maj4_raw,exactp")] == [
        "empirical",
        "sequence",
        "exact",
    ]
    with pytest.raises(ValueError, match="must start at step 0"):
        common.parse_schedule("5:4", 1)
    with pytest.raises(ValueError, match="step:value"):
        common.parse_schedule("0-4", 1)
    assert common.value_at(common.parse_schedule("0:4,10:16", 1), 9) == 4
    with pytest.raises(ValueError, match="runs must look like"):
        evaluate.parse_runs("ce:/tmp/x")
    # Exact plurality needs an enumerated answer set: multiplication's 10^4 answers are refused up front.
    with pytest.raises(ValueError, match=r"task\.name='modular_chain'"):
        sft.run(common.load_config("configs/sft/arith.py:plur8,smoke"), "/nonexistent/never-written")


def test_programs_start_with_cli_setup(monkeypatch):
    """Every experiment program joins a multi-process run (cli.setup) before anything else touches JAX."""
    import inspect
    import types

    from experiments import cli, diagnostics, paper, protein, rl_probe, weight_balance

    class Joined(Exception):
        pass

    def join():
        raise Joined

    monkeypatch.setattr(cli, "setup", join)
    ran = []
    main = cli.main_for(lambda c, w: ran.append((c, w)), cli.without_curves, lambda: (None, "/nowhere"))
    with pytest.raises(Joined):
        main([])
    assert ran == []
    for module in (sft, rl, evaluate, protein):  # config + workdir programs: cli.program(run, ...)
        assert "cli.program(run" in inspect.getsource(module).split('if __name__ == "__main__":')[1]
    flag = types.SimpleNamespace(value=None)
    for module in (
        quickstart,
        paper,
        rl_probe,
        diagnostics,
        weight_balance,
    ):  # programs with flags of their own
        for name in ("_WORKDIR", "_SMOKE", "_STUDY", "_SEEDS", "_RESULTS", "_CONFIG"):
            monkeypatch.setattr(module, name, flag, raising=False)
        with pytest.raises(Joined):
            module.main([])


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_quickstart_smoke(tmp_path):
    table = quickstart.run(str(tmp_path), smoke=True, progress=False)
    assert "| ce |" in table and "| passn64 |" in table and "passn64 − ce" in table and "pass@k" in table


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_paper_study_smoke(tmp_path, monkeypatch):
    from experiments import paper, paper_studies

    # Two branches keep the smoke short; the full study runs seven (configs/sft/arith.py phases).
    two = {"ce": "CE", "passn4": "Pass@4"}
    spec = paper_studies.SFT_STUDIES["sft"]
    reports = [(n, tuple(two), m, t) for n, _, m, t in spec.reports]
    monkeypatch.setitem(paper_studies.SFT_STUDIES, "sft", spec._replace(branches=two, reports=reports))
    paper.run_sft(tmp_path / "w", 0, smoke=True)
    paper.report_sft(tmp_path / "w", [0], tmp_path / "r", "python -m experiments.paper --smoke")
    for name in ("sft_passn", "sft_majority"):
        payload = json.loads((tmp_path / "r" / name / "results.json").read_text())
        assert payload["command"] == "python -m experiments.paper --smoke"
        assert "Pass@4" in payload["table/pass@k"]
        assert "python -m experiments.paper --smoke" in (tmp_path / "r" / name / "table.md").read_text()
    assert (tmp_path / "r" / "sft_passn" / "frontier.png").stat().st_size > 1000
    table = (tmp_path / "r" / "sft_passn" / "table.md").read_text()
    assert "| CE T=2 |" in table and "| Pass@4 − CE |" in table

    # The RL study from the same warm-up (--rl_lr / --rl_steps: own folder, exact learning curves).
    monkeypatch.setattr(paper_studies, "RL_HEADLINE", ("standard",))
    monkeypatch.setattr(paper_studies, "RL_BRANCHES", {"standard": "Standard"})
    paper.run_rl(tmp_path / "w", 0, smoke=True, full=False, lr=1e-5, steps=300)
    paper.report_rl(tmp_path / "w", [0], tmp_path / "r", "cmd", full_seeds=0, lr=1e-5, steps=300)
    out = tmp_path / "r" / "rl_lr1e-05_steps300"
    payload = json.loads((out / "results.json").read_text())
    # The smoke config's 2 steps ran (smoke ignores --rl_steps), and the report says so.
    assert payload["rl"]["steps"] == 2 and payload["learning_curve/pass@1"]["steps"] == [0, 2]
    assert (out / "learning_curves.png").stat().st_size > 0
    assert "## Exact held-out pass@1 along RL training" in (out / "table.md").read_text()


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_modchain_study_smoke_runs_exact_plurality(tmp_path, monkeypatch):
    from experiments import paper, paper_studies

    spec = paper_studies.SFT_STUDIES["modchain"]
    two = {"ce": "CE", "plur8": "Plurality 8"}
    reports = [(n, tuple(two), m, t) for n, _, m, t in spec.reports]
    monkeypatch.setitem(paper_studies.SFT_STUDIES, "modchain", spec._replace(branches=two, reports=reports))
    paper.run_sft(tmp_path / "w", 0, smoke=True, study="modchain")
    paper.report_sft(tmp_path / "w", [0], tmp_path / "r", "cmd", study="modchain", smoke=True)
    run = json.loads((tmp_path / "w" / "modchain" / "seed0" / "plur8" / "results.json").read_text())
    assert run["objective"]["strategy"] == "plurality"
    assert 0 < run["final_train_metrics"]["sft/answer_mass"] <= 1
    table = (tmp_path / "r" / "sft_modchain" / "table.md").read_text()
    assert "| Plurality 8 − CE |" in table and "## maj@k (%)" in table and "| CE T=2 |" in table
    assert "Control 3: temperature sweep of the exact maj@k" in table and "| T=0.25 |" in table
    sweep = json.loads((tmp_path / "r" / "sft_modchain" / "results.json").read_text())["exact_majority_sweep"]
    assert set(sweep["maj@4"]) == {"warm-up", "CE", "Plurality 8"}


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_rl_probe_smoke(tmp_path, monkeypatch):
    from cat_jax import rl as cat_rl
    from experiments import rl_probe

    cfg = common.load_config("configs/rl/arith.py:standard,smoke")  # an untrained "warm-up" is enough here
    vocab = common.task_data(cfg.task).vocab_size
    _, params = llama.init(common.scratch_model_config(cfg.model, vocab), jax.random.key(0))
    common.save_params(tmp_path / "sft" / "seed0" / "warmup", params)
    exact = cat_rl.exact_match_scores

    def coin_flips(tokens, mask, batch):  # rewards with both outcomes in every group: a gradient exists
        scores = exact(tokens, mask, batch)
        flips = (jnp.arange(tokens.shape[1])[None, :] % 2 == 0) & jnp.ones(tokens.shape[:2], bool)
        return cat_rl.RolloutScores(flips.astype(scores.rewards.dtype), scores.answer_ids, scores.valid)

    monkeypatch.setattr(cat_rl, "exact_match_scores", coin_flips)
    got = rl_probe.probe(tmp_path / "sft" / "seed0" / "warmup", 0, rollouts=4, smoke=True)
    assert -1 <= got["cosine_rl_vs_exact"] <= 1 and len(got["steps"]["rl"]["train_pass@1"]) == 5
    assert got["adam_first_step_norm"]["0.0001"] > got["adam_first_step_norm"]["1e-05"] > 0
    # A seed whose batch had no informative group gives no direction: reported, not averaged.
    flat = {**got, "seed": 1, "cosine_rl_vs_exact": None, "steps": {**got["steps"], "rl": None}}
    rl_probe.report([got, flat], tmp_path / "r", "cmd")
    assert "seeds [1] had no gradient" in (tmp_path / "r" / "table.md").read_text()
    with pytest.raises(ValueError, match="no probed batch had a policy gradient"):
        rl_probe.report([flat], tmp_path / "r", "cmd")


def test_weight_balance_is_one_for_per_prompt_p_and_not_for_sequence_p():
    """Group advantages are zero-sum per prompt: a weight shared by a prompt's rollouts keeps up == down."""
    from cat_jax import advantages as adv
    from cat_jax import weights as wts
    from experiments import weight_balance

    rewards = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    a, _ = adv.compute_advantages(rewards, config=adv.AdvantageConfig())
    old_logp = jnp.log(jnp.array([[0.6, 0.01, 0.02, 0.01], [0.3, 0.3, 0.05, 0.1], [0.1, 0.1, 0.1, 0.1]]))
    ratios = {}
    for prob in ("sequence", "empirical", "exact"):
        config = wts.WeightConfig(strategy="passn", n=16, form="log", probability=prob, clip=50.0)
        w, _ = wts.cat_weights(rewards, old_logp, config=config, reference_logp=jnp.log(jnp.full(3, 0.4)))
        s = weight_balance.summarise(weight_balance._stats(np.asarray(a), np.asarray(w), np.asarray(rewards)))
        ratios[prob] = s
    assert ratios["empirical"]["up_over_down"] == pytest.approx(1.0, rel=1e-5)
    assert ratios["exact"]["up_over_down"] == pytest.approx(1.0, rel=1e-5)
    # The sequence p: the likely correct strings get small weights, the unlikely wrong ones large ones.
    assert ratios["sequence"]["up_over_down"] < 0.5
    assert ratios["sequence"]["w_right"] < ratios["sequence"]["w_wrong"]


@pytest.mark.slow  # an end-to-end experiment smoke run: make test-slow
def test_weight_balance_smoke(tmp_path):
    from experiments import weight_balance

    cfg = common.load_config("configs/rl/arith.py:standard,add,smoke")
    vocab = common.task_data(cfg.task).vocab_size
    _, params = llama.init(common.scratch_model_config(cfg.model, vocab), jax.random.key(0))
    common.save_params(tmp_path / "policy", params)
    run = weight_balance.measure(tmp_path / "policy", 0, batches=1, smoke=True)
    assert set(run["settings"]) == {f"passn{n}_{f}/{p}" for n, f, p in weight_balance.SETTINGS}
    weight_balance.report({"untrained": [run, {**run, "seed": 1}]}, tmp_path / "r", "cmd")
    assert "| untrained | Pass@16 log | exact |" in (tmp_path / "r" / "table.md").read_text()
