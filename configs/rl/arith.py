r"""CAT RL on 2-digit x 2-digit multiplication: CPU-scale analogues of the paper's Tables 4 and 5.

Usage (start from an SFT warm-up, see configs/sft/arith.py; ``paper`` sets the study's length, ``smoke``
shrinks any variant to seconds)::

    python -m experiments.rl --config=configs/rl/arith.py:passn4_log --workdir=/tmp/cat/rl_passn4_log \
        --config.init_from=/tmp/cat/warmup
    python -m experiments.rl --config=configs/rl/arith.py:maj4_raw,smoke --workdir=/tmp/cat/rl_smoke
    python -m experiments.paper --study=rl --seeds=0,1,2   # every variant with ',paper' -> results/rl

Variants (SPEC §3.3 presets): ``standard`` (group advantages only), ``passn{4,16}_{log,raw}`` (one success
probability p per prompt, the group's Laplace estimate; ``,seqp``: SPEC's sequence p, App. J; ``,exactp``:
the policy's teacher-forced p of the reference answer, one extra forward per step; clip 50, no
normalisation), ``maj{4,8}_{raw,log}`` (Laplace p, dynamic threshold, normalised,
clip 10, all-wrong penalty 0.5), ``pkpo{2,4,8}`` (PKPO pass@k reward transform, standard weights).
``paper``: 100 steps per branch with the sequence p (results/rl; ``experiments.paper --rl_steps / --rl_lr``
vary it). ``add``: the regime where standard RL learns (issue 15): 3-digit + 3-digit addition from the
``configs/sft/arith.py:warmup,add`` warm-up, 600 steps, each step's 32 prompts new problems from the task's
``rl`` split (disjoint from the warm-up's and the held-out ones), the exact held-out pass@k at T = 0.5-1.0
every 50 steps (results/rl_add, ``experiments.paper --study=rl_add``).
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
            "probability": "empirical",  # one p per prompt; ",seqp": SPEC's sequence p (App. J)
            "clip": 50.0,
        }, 0.0
    if kind.startswith("maj"):
        w = {"strategy": "majority", "n": int(kind[3:]), "form": form, "probability": "empirical"}
        return {**w, "normalize": True, "clip": 10.0}, 0.5
    raise ValueError(f"unknown variant {name!r}; e.g. standard, passn4_log, passn16_raw, maj4_raw, maj8_log")


MODIFIERS = ("paper", "smoke", "add", "seqp", "exactp")


def get_config(arg: str = "standard") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    variant = next((p for p in parts if p not in MODIFIERS), "standard")
    weights, penalty = _variant(variant)
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init (unused after init_from), prompt order, rollout sampling, evaluation
    c.init_from = ""  # workdir of the SFT warm-up to start from ("" = random init, only for smoke runs)

    c.task = common.task()
    c.model = common.model()  # must match the warm-up's model

    c.rollout = ml_collections.ConfigDict()
    c.rollout.num_samples = 8  # M rollouts per prompt (independent of the aligned budget N)
    c.rollout.temperature = 1.0  # sampling temperature of the rollouts
    c.rollout.top_k = 0  # 0 = off
    c.rollout.top_p = 1.0  # 1 = off

    c.weights = ml_collections.ConfigDict()  # cat_jax.weights.WeightConfig
    c.weights.strategy = weights["strategy"]  # standard | passn | majority | bon
    c.weights.n = weights["n"]  # aligned test-time budget N
    c.weights.form = weights.get("form", "raw")  # raw (F'(p)) | log (p F'(p) / F(p)), SPEC §1.3
    c.weights.probability = weights.get("probability", "sequence")  # p: sequence | empirical | exact
    c.weights.normalize = weights.get("normalize", False)  # sample-level mean normalisation
    c.weights.clip = weights.get("clip")  # cap before normalising (None = off)
    c.weights.quantile = "within_prompt"  # Best-of-N rank (bon only): within_prompt | history

    c.reward = ml_collections.ConfigDict()  # reward transform before the advantages (weights.TRANSFORMS)
    c.reward.transform = "pkpo_pass" if variant.startswith("pkpo") else "identity"  # or pkpo_pass
    c.reward.k = int(variant[4:]) if variant.startswith("pkpo") else 1  # PKPO's pass@k budget (k <= M)
    # Piecewise-constant schedule of the aligned budget ("0:4,100:16": N of the weights, or PKPO's k);
    # "" keeps weights.n / reward.k fixed.
    c.n_schedule = ""

    c.advantages = ml_collections.ConfigDict()  # cat_jax.advantages.AdvantageConfig
    c.advantages.estimator = "group"  # group (SPEC §2.6) | passk (Chen et al. 2025, uses k) | identity
    c.advantages.eps = 1e-4  # added to the group std before dividing
    c.advantages.all_wrong_penalty = penalty  # advantage of every rollout of an all-wrong group
    c.advantages.clip = None  # |advantage| clip (None = off)
    c.advantages.k = 1  # the passk estimator's budget
    c.advantages.filter_zero_variance = False  # drop groups whose rewards are all equal

    c.loss = ml_collections.ConfigDict()  # cat_jax.losses.PolicyLossConfig
    c.loss.surrogate = "reinforce"  # reinforce | clipped (sequence ratio)
    c.loss.clip_ratio = 0.2  # ratio clip epsilon (clipped only)
    c.loss.kl_beta = 0.0  # k3 KL penalty to the frozen start policy (0 = off)

    c.prompts_per_step = 32  # B
    c.micro_batches = 1  # the update differentiates the B x M completions in this many chunks (memory)
    c.steps = 200  # RL updates (one per batch of prompts)
    c.opt = common.optimizer(lr=1e-4, schedule="constant")  # the paper's RL trainer uses no schedule

    c.eval = common.evaluation()
    c.mesh = common.mesh()
    common.loop(c, checkpoint_every=50, log_every=5, curve_temperatures=[1.0])

    if "seqp" in parts or ("paper" in parts and "add" not in parts):
        # SPEC's sequence p (one p per completion, App. J): not zero-sum within a group (a wrong completion
        # gets w(p of that wrong string), near 1; a correct one w(p of the correct string), small), so the
        # update mostly pushes sampled wrong answers down. The multiplication study (results/rl) used it.
        if c.weights.strategy == "passn":
            c.weights.probability = "sequence"
    if "exactp" in parts:
        if "seqp" in parts:
            raise ValueError("choose one of the modifiers 'seqp' and 'exactp' (both set weights.probability)")
        # The true per-prompt p of SPEC's objective on an exact-match task (cat_jax.weights, "exact").
        if c.weights.strategy in ("passn", "majority"):
            c.weights.probability = "exact"
    if "paper" in parts and "add" not in parts:  # experiments.paper's RL study (Tables 4-5)
        c.steps = 100
    if "add" in parts:  # the regime where standard RL learns (issue 15; results/rl_add)
        c.task.name, c.task.digits = "add", 3
        c.steps = 600
        c.task.num_rl = c.steps * c.prompts_per_step  # a fresh batch of unseen problems every step
        c.curve_every = 50  # exact held-out pass@k across the temperature frontier (control 1)
        c.curve_temperatures = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    if "smoke" in parts:
        common.shrink(c, num_train=32, num_eval=4)
        c.rollout.num_samples, c.prompts_per_step, c.steps = 4, 4, 2
        if "add" in parts:
            c.task.num_rl, c.curve_every = c.steps * c.prompts_per_step, 1
        c.checkpoint_every, c.log_every, c.progress = 1, 1, False
    return c
