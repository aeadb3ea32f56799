r"""CAT SFT on MATH with a pretrained checkpoint and LoRA: the paper's own Tables 2 (Pass@N) and 3 (Majority).

SPEC §3.2: Mistral-7B-Instruct-v0.2 + LoRA (r=16, alpha=16, q/k/v/o), AdamW 5e-6, weight decay 0.01, effective
batch 4, clip 0.3, linear decay to 0, a 2-epoch CE warm-up, then 3-epoch branches from the warm-up adapter
with a fresh optimizer; evaluation SPEC §3.5. Run (one GPU; ``--plan`` prints the memory plan and stops)::

    CKPT=/models/Mistral-7B-Instruct-v0.2  MATH=/data/math   # train.jsonl, test.jsonl
    python -m experiments.sft --config=configs/sft/math.py:passn_warmup --workdir=/runs/passn_warmup \
        --config.model.checkpoint=$CKPT --config.task.manual_dir=$MATH
    python -m experiments.sft --config=configs/sft/math.py:passn16 --workdir=/runs/passn16 \
        --config.model.checkpoint=$CKPT --config.task.manual_dir=$MATH --config.init_from=/runs/passn_warmup

Phases. Table 2 (Pass@N family; 5,000 train problems of every level, answer targets, sequence_mean,
evaluation 500 x 64 at T=0.8, top-p 0.95): ``passn_warmup``, ``passn_ce``, ``passn4``, ``passn16``,
``passn64``. Table 3 (Majority family; every level 1-3 train problem, full-solution targets, token_mean,
evaluation of the level 1-3 test problems x 128): ``maj_warmup``, ``maj_ce``, ``maj8_3``, ``maj16_4``,
``maj64_26``. RL warm-ups (SPEC §3.3, the start of configs/rl/math.py): ``rl_passn_warmup`` (the first
2,000 shuffled train problems, 1 epoch, lr 5e-6), ``rl_maj_warmup`` (the first 2,000 shuffled level 1-3
problems, 3 epochs, lr 2e-5). ``smoke`` shrinks any phase to seconds on CPU (a tiny checkpoint and MATH
files: see tests/experiments/test_pretrained.py).
"""

import ml_collections

from configs import common

LEVELS_1_3 = ("Level 1", "Level 2", "Level 3")
BRANCHES = {  # phase -> (family, objective.strategy, n, k)
    "passn_warmup": ("passn", "ce", 1, 1),
    "passn_ce": ("passn", "ce", 1, 1),
    "passn4": ("passn", "passn", 4, 1),
    "passn16": ("passn", "passn", 16, 1),
    "passn64": ("passn", "passn", 64, 1),
    "maj_warmup": ("majority", "ce", 1, 1),
    "maj_ce": ("majority", "ce", 1, 1),
    "maj8_3": ("majority", "majority", 8, 3),
    "maj16_4": ("majority", "majority", 16, 4),
    "maj64_26": ("majority", "majority", 64, 26),
    # The RL warm-ups of SPEC §3.3 (configs/rl/math.py starts from them): CE on full solutions, token_mean,
    # LoRA r=16, alpha=32 on q and v.
    "rl_passn_warmup": ("rl_passn", "ce", 1, 1),
    "rl_maj_warmup": ("rl_majority", "ce", 1, 1),
}
MODIFIERS = ("smoke",)


def get_config(arg: str = "passn_warmup") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    phase = next((p for p in parts if p not in MODIFIERS), "passn_warmup")
    if phase not in BRANCHES:
        raise ValueError(f"unknown phase {phase!r}; valid phases: {sorted(BRANCHES)} (optionally ',smoke')")
    family, strategy, n, k = BRANCHES[phase]
    passn = family == "passn"
    c = ml_collections.ConfigDict()
    c.seed = 42  # LoRA init, data order and evaluation sampling (SPEC: 42)
    c.init_from = ""  # workdir of the warm-up whose final adapter a branch continues

    if family == "passn":
        c.task = common.math_task(target="answer", train_count=5000)
    elif family == "majority":
        c.task = common.math_task(target="solution", train_count=None, levels=LEVELS_1_3)
    else:
        levels = () if family == "rl_passn" else LEVELS_1_3
        c.task = common.math_task(target="solution", train_count=2000, levels=levels)
    c.task.max_len = 1024
    c.task.max_prompt_tokens = 512
    c.task.max_new_tokens = 512

    c.model = common.model()
    c.model.remat = "block"  # 1024-token sequences of a 7B model: recompute each block in the backward pass
    c.model.lora = common.lora(rank=16, alpha=16.0, targets=("q", "k", "v", "o"))
    if family.startswith("rl_"):
        c.model.lora = common.lora(rank=16, alpha=32.0, targets=("q", "v"))

    c.objective = ml_collections.ConfigDict()  # cat_jax.losses.SFTObjective
    c.objective.strategy = strategy  # ce | passn | majority
    c.objective.n = n
    c.objective.k = k
    c.objective.reduction = "sequence_mean" if passn else "token_mean"

    # Effective batch 4 (SPEC: micro-batch 1 x accumulation 4). One batch of 4 gives the exact window
    # reduction of SPEC (token_mean divides by the window's target tokens); opt.accum_steps > 1 with a
    # smaller batch_size saves memory, and token_mean then averages per micro-batch instead.
    c.batch_size = 4
    c.epochs = 2.0 if phase.endswith("warmup") else 3.0
    c.opt = common.optimizer(lr=5e-6, schedule="linear", weight_decay=0.01, clip_norm=0.3)
    c.objective.reduction = "sequence_mean" if passn else "token_mean"
    if family == "rl_passn":
        c.epochs = 1.0
    elif family == "rl_majority":
        c.epochs, c.opt.lr = 3.0, 2e-5

    c.eval = common.evaluation()
    c.eval.num_samples = 64 if passn else 128  # Table 2 / Table 3 presets (SPEC §3.5)
    c.eval.temperature, c.eval.top_p = 0.8, 0.95
    c.eval.ks = [1, 4, 8, 16, 32, 64] + ([] if passn else [128])
    # Prompts per sampler call (x num_samples rows): a 7B model's KV cache is 128 KiB per row and slot, so
    # 2 x 64 (or 1 x 128) rows of 1,024 slots take 16 GiB (--plan); with a mesh, a multiple of its devices.
    c.eval.chunk = 2 if passn else 1
    c.eval.seed = 42
    c.mesh = common.mesh()
    c.mesh.devices = 0  # every visible device (data parallel)
    common.loop(c, checkpoint_every=250, log_every=10, curve_temperatures=[1.0])

    if "smoke" in parts:
        c.task.train_count, c.task.eval_count = 8, 4
        c.task.max_len, c.task.max_prompt_tokens, c.task.max_new_tokens = 160, 128, 8
        c.model.remat = "none"
        c.model.lora.rank = 4
        c.objective.n = min(n, 4)
        c.objective.k = min(k, 2)
        c.epochs = 1.0
        c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], 4
        c.mesh.devices = 1
        c.checkpoint_every, c.log_every, c.progress = 2, 1, False
    return c
