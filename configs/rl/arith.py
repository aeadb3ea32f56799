r"""CAT RL on 2-digit x 2-digit multiplication: CPU-scale analogues of the paper's Tables 4 and 5.

Usage (start from an SFT warm-up, see configs/sft/arith.py)::

    python -m experiments.rl --config=configs/rl/arith.py:passn4_log --workdir=/tmp/cat/rl_passn4_log \
        --config.init_from=/tmp/cat/warmup
    python -m experiments.rl --config=configs/rl/arith.py:maj4_raw,smoke --workdir=/tmp/cat/rl_smoke

Variants (SPEC §3.3 presets): ``standard`` (group advantages only), ``passn{4,16}_{log,raw}`` (sequence
probability p, clip 50, no normalisation), ``maj{4,8}_{raw,log}`` (Laplace p, dynamic threshold, normalised,
clip 10, all-wrong penalty 0.5), ``pkpo{2,4,8}`` (PKPO pass@k reward transform, standard weights).
"""

import ml_collections

from configs import common


def _variant(name: str):
    if name == "standard" or name.startswith("pkpo"):
        return {"strategy": "standard", "n": 1}, 0.0
    kind, _, form = name.partition("_")
    if form not in ("log", "raw") or not kind[-1:].isdigit():
        kind = ""  # falls through to the error below
    if kind.startswith("passn"):
        return {
            "strategy": "passn",
            "n": int(kind[5:]),
            "form": form,
            "probability": "sequence",
            "clip": 50.0,
        }, 0.0
    if kind.startswith("maj"):
        w = {"strategy": "majority", "n": int(kind[3:]), "form": form, "probability": "empirical"}
        return {**w, "normalize": True, "clip": 10.0}, 0.5
    raise ValueError(f"unknown variant {name!r}; e.g. standard, passn4_log, passn16_raw, maj4_raw, maj8_log")


def get_config(arg: str = "standard") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    variant = next((p for p in parts if p != "smoke"), "standard")
    weights, penalty = _variant(variant)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""  # workdir of the SFT warm-up to start from ("" = random init, only for smoke runs)

    c.task = common.task()
    c.model = common.model()  # must match the warm-up's model

    c.rollout = ml_collections.ConfigDict()
    c.rollout.num_samples = 8  # M rollouts per prompt (independent of the aligned budget N)
    c.rollout.temperature = 1.0
    c.rollout.top_k = 0
    c.rollout.top_p = 1.0

    c.weights = ml_collections.ConfigDict()  # cat_jax.weights.WeightConfig
    c.weights.strategy = weights["strategy"]
    c.weights.n = weights["n"]
    c.weights.form = weights.get("form", "raw")
    c.weights.probability = weights.get("probability", "sequence")
    c.weights.normalize = weights.get("normalize", False)
    c.weights.clip = weights.get("clip")
    c.weights.quantile = "within_prompt"

    c.reward = (
        ml_collections.ConfigDict()
    )  # reward transform before the advantages (cat_jax.weights.TRANSFORMS)
    c.reward.transform = "pkpo_pass" if variant.startswith("pkpo") else "identity"
    c.reward.k = int(variant[4:]) if variant.startswith("pkpo") else 1  # PKPO's pass@k budget (k <= M)
    # Piecewise-constant schedule of the aligned budget ("0:4,100:16": N of the weights, or PKPO's k);
    # "" keeps weights.n / reward.k fixed.
    c.n_schedule = ""

    c.advantages = ml_collections.ConfigDict()  # cat_jax.advantages.AdvantageConfig
    c.advantages.estimator = "group"
    c.advantages.eps = 1e-4
    c.advantages.all_wrong_penalty = penalty
    c.advantages.clip = None
    c.advantages.k = 1
    c.advantages.filter_zero_variance = False

    c.loss = ml_collections.ConfigDict()  # cat_jax.losses.PolicyLossConfig
    c.loss.surrogate = "reinforce"
    c.loss.clip_ratio = 0.2
    c.loss.kl_beta = 0.0

    c.prompts_per_step = 32  # B
    c.steps = 200
    c.opt = common.optimizer(lr=1e-4, schedule="constant")  # the paper's RL trainer uses no schedule

    c.eval = common.evaluation()
    c.mesh = common.mesh()

    # Exact held-out pass@k (teacher-forced, as in configs/sft/arith.py) every this many steps (0 = off).
    c.curve_every = 0
    c.curve_temperatures = [1.0]

    c.checkpoint_every = 50
    c.log_every = 5
    c.progress = True

    if "smoke" in parts:
        common.shrink(c, num_train=32, num_eval=4)
        c.rollout.num_samples, c.prompts_per_step, c.steps = 4, 4, 2
        c.checkpoint_every, c.log_every, c.progress = 1, 1, False
    return c
