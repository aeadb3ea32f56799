r"""CAT RL on MATH with a pretrained checkpoint and LoRA: the paper's own Tables 4 (Pass@N) and 5 (Majority).

SPEC §3.3: start from an RL warm-up (configs/sft/math.py:rl_passn_warmup / rl_maj_warmup, LoRA r=16,
alpha=32 on q and v), B = 4 prompts per step, M rollouts at T = 0.8, top-p 0.95, reward 1 iff the extracted
answer verifies (SPEC §3.5), REINFORCE, AdamW 1e-6 constant, weight decay 0.01, clip 1, one epoch over the RL
prompts; the KL reference is the frozen warm-up adapter. Run (one GPU)::

    python -m experiments.rl --config=configs/rl/math.py:passn4_log --workdir=/runs/rl_passn4_log \
        --config.model.checkpoint=$CKPT --config.task.manual_dir=$MATH \
        --config.init_from=/runs/rl_passn_warmup

Variants (SPEC §3.3's table; Table 4 = the ``passn`` family, Table 5 = the ``maj`` family):
``passn_standard``, ``passn4_log``, ``passn16_log``, ``passn4_raw``, ``passn16_raw`` (M = 4, 300 new tokens,
sequence p, clip 50, beta 0.05; prompts = shuffled train problems #2000-#2499; evaluation 500 x 32 at T = 0.7,
top-p 0.9) and ``maj_standard``, ``maj4_raw``, ``maj8_raw``, ``maj4_log``, ``maj8_log`` (M = 8, 512 new
tokens, empirical p, normalised, clip 10, all-wrong penalty 0.5, no KL; prompts = the first 300 shuffled
level 1-3 problems; evaluation of the level 1-3 test problems x 16 at T = 0.8). Modifiers: ``per_prompt``
(Pass@N variants: one p per prompt, ``probability="empirical"``, beside SPEC's sequence p — see issue 15's
measured non-zero-sum effect of the sequence p), ``smoke`` (seconds on CPU).
"""

import ml_collections

from configs import common

LEVELS_1_3 = ("Level 1", "Level 2", "Level 3")
VARIANTS = {  # variant -> (family, strategy, n, form)
    "passn_standard": ("passn", "standard", 1, "raw"),
    "passn4_log": ("passn", "passn", 4, "log"),
    "passn16_log": ("passn", "passn", 16, "log"),
    "passn4_raw": ("passn", "passn", 4, "raw"),
    "passn16_raw": ("passn", "passn", 16, "raw"),
    "maj_standard": ("majority", "standard", 1, "raw"),
    "maj4_raw": ("majority", "majority", 4, "raw"),
    "maj8_raw": ("majority", "majority", 8, "raw"),
    "maj4_log": ("majority", "majority", 4, "log"),
    "maj8_log": ("majority", "majority", 8, "log"),
}
MODIFIERS = ("per_prompt", "smoke")


def get_config(arg: str = "passn_standard") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    variant = next((p for p in parts if p not in MODIFIERS), "passn_standard")
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}; valid: {sorted(VARIANTS)} (optionally ',per_prompt', ',smoke')"
        )
    family, strategy, n, form = VARIANTS[variant]
    passn = family == "passn"
    c = ml_collections.ConfigDict()
    c.seed = 42
    c.init_from = ""  # the RL warm-up's workdir (its adapter is the start and the KL reference)

    if passn:
        c.task = common.math_task(target="solution", train_count=500)
        c.task.train_offset = 2000  # disjoint from the 2,000-problem warm-up
    else:
        c.task = common.math_task(target="solution", train_count=300, levels=LEVELS_1_3)
    c.task.max_prompt_tokens = 256  # SPEC: a longer prompt aborts the run
    c.task.limit_train_prompts = True
    c.task.max_new_tokens = 300 if passn else 512

    c.model = common.model()
    c.model.remat = "block"  # SPEC: gradient checkpointing (without it Maj@8's update needs ~100 GiB: --plan)
    c.model.lora = common.lora(rank=16, alpha=32.0, targets=("q", "v"))

    c.rollout = ml_collections.ConfigDict()
    c.rollout.num_samples = 4 if passn else 8  # M
    c.rollout.temperature = 0.8
    c.rollout.top_k = 0
    c.rollout.top_p = 0.95

    c.weights = ml_collections.ConfigDict()  # cat_jax.weights.WeightConfig
    c.weights.strategy = strategy
    c.weights.n = n
    c.weights.form = form
    c.weights.probability = "sequence" if passn else "empirical"
    if passn and "per_prompt" in parts:
        c.weights.probability = "empirical"
    c.weights.normalize = not passn and strategy != "standard"
    c.weights.clip = 50.0 if passn else 10.0
    c.weights.quantile = "within_prompt"

    c.reward = ml_collections.ConfigDict()
    c.reward.transform = "identity"
    c.reward.k = 1
    c.n_schedule = ""

    c.advantages = ml_collections.ConfigDict()
    c.advantages.estimator = "group"
    c.advantages.eps = 1e-4
    c.advantages.all_wrong_penalty = 0.0 if passn else 0.5
    c.advantages.clip = None
    c.advantages.k = 1
    c.advantages.filter_zero_variance = False

    c.loss = ml_collections.ConfigDict()
    c.loss.surrogate = "reinforce"
    c.loss.clip_ratio = 0.2
    c.loss.kl_beta = 0.05 if passn else 0.0

    c.prompts_per_step = 4  # B
    # The update differentiates the B x M completions in this many chunks (SPEC: chunks of 1 completion; the
    # summed gradient is the same, only the activation memory changes).
    c.micro_batches = 4
    c.steps = 125 if passn else 75  # one epoch over the RL prompts
    c.opt = common.optimizer(lr=1e-6, schedule="constant", weight_decay=0.01, clip_norm=1.0)

    c.eval = common.evaluation()
    c.eval.num_samples = 32 if passn else 16
    c.eval.temperature, c.eval.top_p = (0.7, 0.9) if passn else (0.8, 0.95)
    c.eval.ks = [1, 4, 8, 16, 32] if passn else [1, 4, 8, 16]
    c.eval.chunk = 8
    c.eval.seed = 42
    c.mesh = common.mesh()
    c.mesh.devices = 0
    common.loop(c, checkpoint_every=25, log_every=1, curve_temperatures=[1.0])

    if "smoke" in parts:
        c.task.train_count, c.task.train_offset, c.task.eval_count = 8, 4, 4
        c.task.max_prompt_tokens, c.task.max_new_tokens = 128, 8
        c.model.lora.rank = 4
        c.model.remat = "none"
        c.rollout.num_samples = 4
        c.weights.n = min(n, 4)
        c.prompts_per_step, c.steps = 2, 2
        c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], 4
        c.mesh.devices = 1
        c.checkpoint_every, c.log_every, c.progress = 1, 1, False
    return c
