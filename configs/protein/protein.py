r"""Protein Best-of-N at CPU scale: the paper's Table 6 analogue (SPEC §3.4, SPEC §5 Table 6), every phase in
one run.

Usage (the committed results/protein/ were made by the first line; the second runs in seconds)::

    python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein
    python -m experiments.protein --config=configs/protein/protein.py:smoke --workdir=/tmp/cat/protein_smoke

The paper's own setting (SPEC §3.4 with ProtGPT2, a local ``GPT2LMHeadModel`` directory; ``:paper,smoke``
shrinks it to seconds on any checkpoint)::

    python -m experiments.protein --config=configs/protein/protein.py:paper \
        --config.model.checkpoint=/path/to/ProtGPT2 --workdir=workdirs/protein_paper

Phases: pre-train a tiny protein LM on ``cat_jax.tasks.protein.pretraining_corpus`` (``pretrain``);
unconditional RL from it (``uncond``: standard vs BoN-2/4/8, reward-history quantiles); a conditional warm-up
on the synthetic input->target pairs (``cond_warmup``), then conditional RL (``cond``: standard vs BoN-2/4/8,
within-prompt quantiles); evaluation of every model (``eval``: expected best-of-k, with and without
replacement; hydrophobicity histograms). Each RL setting has one section per library dataclass, as
configs/rl/arith.py: ``rollout`` (``cat_jax.sampling.SampleConfig``), ``weights`` (the fields of
``cat_jax.weights.WeightConfig`` that a ``bon<N>`` branch shares), ``advantages``
(``cat_jax.advantages.AdvantageConfig``), ``loss`` (``cat_jax.losses.PolicyLossConfig``), ``opt``
(``cat_jax.train_lib.OptimizerConfig``, from ``configs.common.optimizer``).

Kept from SPEC §3.4: B = 4 groups, the sampling temperatures, beta, advantage clip, AdamW wd 0.01 / clip 1,
the quantile estimators, BoN normalisation, the evaluation pools (512 unconditional samples, 150 prompts x
32) and budgets. CPU-sized: the model (0.11M parameters), M = 16 rollouts (SPEC 32 / 25), max new tokens
40 / 24 (SPEC 64 / 32; our corpus is at most 32 residues and conditional targets at most 19), 50 RL steps
(SPEC 300) at learning rates 5e-4 / 3e-4 (SPEC 1e-5 / 2e-6 for the 738M ProtGPT2).

``:rare`` is Table 6 in a regime like ProtGPT2's (issue 15 item 4; results/protein_rare)::

    python -m experiments.protein --config=configs/protein/protein.py:rare --workdir=workdirs/protein_rare

The pre-trained LM's high-hydrophobicity mode is rare: the corpus' common family is Beta(30, 60) (mean h
1/3, at the 4-height reward mode; default Beta(16, 22)) and 2% of sequences come from the Beta(60, 20) high
family (``pretrain.common_beta``, ``pretrain.rare_fraction``). Measured (pool of 512 samples at T = 1.2,
best-of-64 with replacement): rare_fraction 0.005 / 0.002 / 0.01 -> 5.21 (the LM puts 0.2% of its samples
in h in [0.65, 0.85]), 0.02 -> 5.68 (0.4%; 5.92 on a 4,096-sample pool), 0.03 -> 5.15 (6.88 on 4,096),
0.04 -> 9.44 on 4,096, 0.05 -> 9.15; the default corpus (3% rare of Beta(16, 22)) 10.75. RL at SPEC §3.4's
per-step scale: learning rates 1e-5 / 2e-6 (SPEC's own; on this model 1e-5 already moves standard RL, mean
rollout reward 2.90 -> 3.02 +- 0.05 over 300 steps, KL 0.016; 2e-6 moves the conditional one 8.58 -> 8.74
+- 0.06, KL 0.007), beta 0.3 / 0.05, 300 steps; M, temperatures, B and the evaluation as the default.
Verdict and the lr 1e-4 control: results/protein_rare/README.md.

``:paper`` is SPEC §3.4 itself on ``model.checkpoint`` (no pre-training; full fine-tuning, float32 masters,
compute dtype ``auto`` = bfloat16 on an accelerator, gradient checkpointing per block): unconditional M = 32,
T = 1.2, top-k 50, <= 64 new tokens, lr 1e-5, beta 0.3, reward-history quantiles (FIFO 4,000); conditional
warm-up 60 optimizer steps of 4 micro-batches x 25 on 2,000 pairs, lr 5e-6 constant; conditional RL M = 25, T
= 1.3, <= 32 new tokens, lr 2e-6, beta 0.05, within-prompt quantiles; B = 4, 300 steps, AdamW wd 0.01, clip 1,
advantage clip 5; evaluation 150 test prompts x 32 and one 512-sample pool. One seed per branch (Table 6
reports one run; the ``seeds`` fields add more). Not reproduced: fp16 autocast + GradScaler (bfloat16 compute
instead).
"""

import ml_collections

from configs import common

# ``:rare`` (measured choices; module docstring): the corpus knobs of pretraining_corpus, the RL learning
# rates and the RL steps of both settings.
COMMON_BETA = (30.0, 60.0)
RARE_FRACTION = 0.02
UNCOND_LR, COND_LR = 1e-5, 2e-6
RARE_STEPS = 300


def _sft(*, batch_size: int, steps: int, lr: float, warmup_steps: int) -> ml_collections.ConfigDict:
    """A next-token CE phase (token mean) from the previous phase's parameters."""
    c = ml_collections.ConfigDict()
    c.batch_size = batch_size  # sequences per step, drawn in a seeded order reshuffled each epoch
    c.steps = steps  # optimizer steps of the phase
    c.seed = 0  # the batch order and the step's RNG (pretrain: also the model's initialisation)
    # AdamW, cosine to 0 after a warm-up of 10% of the steps, weight decay 0.01, clip 1.0 (SPEC §3.4).
    c.opt = common.optimizer(
        lr=lr, schedule="cosine", warmup_steps=warmup_steps, weight_decay=0.01, clip_norm=1.0
    )
    return c


def _rl(
    *, max_new_tokens: int, temperature: float, quantile: str, kl_beta: float, lr: float
) -> ml_collections.ConfigDict:
    """One RL setting: every branch x seed starts from the previous phase, its KL reference."""
    c = ml_collections.ConfigDict()
    c.branches = ("standard", "bon2", "bon4", "bon8")  # standard | bon<N>; tuples: --config.x="(a, b)"
    c.seeds = (0, 1, 2)  # one run per branch and seed (the step's RNG; cond: also the prompt order)
    c.prompts_per_step = 4  # B (SPEC: 4 groups per step)
    c.steps = 50  # RL steps per run (SPEC 300)

    c.rollout = ml_collections.ConfigDict()  # cat_jax.sampling.SampleConfig; also the evaluation's sampler
    c.rollout.num_samples = 16  # M rollouts per prompt
    c.rollout.max_new_tokens = max_new_tokens  # longest completion (a sample without EOS is cut here)
    c.rollout.temperature = temperature  # SPEC §3.4's sampling temperature of the setting
    c.rollout.top_k = 0  # 0 = off (SPEC's top-k 50 exceeds our 24-token vocabulary, so it is off either way)
    c.rollout.top_p = 1.0  # 1 = off

    # cat_jax.weights.WeightConfig of the bon<N> branches (w = N q^{N-1}, strategy "bon", n = N, no clip);
    # the standard branch uses WeightConfig() (weights 1).
    c.weights = ml_collections.ConfigDict()
    c.weights.quantile = quantile  # history (reward-history pytree) | within_prompt
    c.weights.normalize = True  # sample-level mean normalisation (SPEC §3.4)

    c.advantages = ml_collections.ConfigDict()  # cat_jax.advantages.AdvantageConfig
    c.advantages.estimator = "group"  # (r - mean) / (std + eps) within each prompt's M rollouts
    c.advantages.eps = 1e-4  # SPEC §2.6
    c.advantages.all_wrong_penalty = 0.0  # binary rewards only
    c.advantages.clip = 5.0  # |advantage| cap (SPEC §3.4)
    c.advantages.k = 1  # passk estimator only
    c.advantages.filter_zero_variance = False  # keep groups whose rewards are all equal (advantage 0)

    c.loss = ml_collections.ConfigDict()  # cat_jax.losses.PolicyLossConfig
    c.loss.surrogate = "reinforce"  # weight x advantage x log-prob (no ratio clip)
    c.loss.clip_ratio = 0.2  # clipped surrogate only
    c.loss.kl_beta = kl_beta  # k3 KL to the frozen initial model

    # AdamW, constant, weight decay 0.01, clip 1.0 (SPEC §3.4).
    c.opt = common.optimizer(lr=lr, schedule="constant", weight_decay=0.01, clip_norm=1.0)
    return c


def _paper(c: ml_collections.ConfigDict) -> None:
    """SPEC §3.4's settings on ``model.checkpoint`` (ProtGPT2), in place (module docstring)."""
    c.command = (
        "python -m experiments.protein --config=configs/protein/protein.py:paper "
        "--config.model.checkpoint=/path/to/ProtGPT2 --workdir=workdirs/protein_paper"
    )
    c.results_dir = "results/protein_paper"
    # A local GPT2LMHeadModel directory (config.json, model.safetensors, tokenizer.json): its tokenizer lays
    # out the text, its EOS ends sampling. The pretrain section and the from-scratch model fields are unused.
    c.model.checkpoint = "checkpoints/ProtGPT2"
    c.model.remat = "block"  # SPEC: gradient checkpointing

    c.uncond = _rl(max_new_tokens=64, temperature=1.2, quantile="history", kl_beta=0.3, lr=1e-5)
    c.uncond.rollout.top_k = 50
    c.uncond.rollout.num_samples = 32

    # 60 optimizer steps x 4 micro-batches of 25 (240 micro-batches), token-mean CE, no scheduler.
    c.cond_warmup = _sft(batch_size=25, steps=240, lr=5e-6, warmup_steps=0)
    c.cond_warmup.opt.schedule = "constant"
    c.cond_warmup.opt.accum_steps = 4
    c.cond_warmup.num_pairs = 2000

    c.cond = _rl(max_new_tokens=32, temperature=1.3, quantile="within_prompt", kl_beta=0.05, lr=2e-6)
    c.cond.rollout.num_samples = 25
    c.cond.num_train_prompts = 3000  # 300 steps x 4 use the first 1,200 of a seeded order
    for rl in (c.uncond, c.cond):
        rl.steps = 300
        rl.seeds = (0,)
    c.eval.chunk = 25  # 25 prompts x 32 samples per sampler call (the KV cache of a 36-layer model)


def _rare(c: ml_collections.ConfigDict) -> None:
    """A ProtGPT2-like regime on the from-scratch model, in place (module docstring)."""
    c.command = (
        "python -m experiments.protein --config=configs/protein/protein.py:rare "
        "--workdir=workdirs/protein_rare"
    )
    c.results_dir = "results/protein_rare"
    # A narrower common family at the low reward mode (mean 1/3) and a rare high family (RARE_FRACTION).
    c.pretrain.common_beta = COMMON_BETA
    c.pretrain.rare_fraction = RARE_FRACTION
    for rl, lr in ((c.uncond, UNCOND_LR), (c.cond, COND_LR)):
        rl.steps = RARE_STEPS
        rl.opt.lr = lr


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    unknown = [p for p in parts if p not in ("smoke", "paper", "rare")]
    if unknown:
        raise ValueError(
            f"unknown variant {unknown[0]!r}; valid: '' (full run), 'smoke', 'paper' (SPEC §3.4 on a "
            "checkpoint), 'paper,smoke', 'rare' (a rare high mode, SPEC's per-step scale), 'rare,smoke'"
        )
    if "paper" in parts and "rare" in parts:
        raise ValueError("variants 'paper' and 'rare' exclude each other: 'paper' pre-trains nothing")
    c = ml_collections.ConfigDict()
    # The command that regenerates this run's outputs (written into every results file).
    c.command = "python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein"
    c.results_dir = "results/protein"  # where results.json, table.md and the plots go ("" = workdir/report)
    c.progress = True  # a progress bar per phase
    # Where CatProtein prepares the corpus and the pairs once (array_record, read back with tfds.data_source);
    # "" = $CAT_JAX_DATA_DIR if set, else ~/.cache/cat_jax/tfds.
    c.data_dir = ""

    c.model = common.model()  # overrides of LlamaConfig.tiny (vocabulary: protein.tokenizer(), 24 ids)
    c.model.hidden_size = 64  # 0.11M parameters with the 24-id vocabulary (common.model: 128)
    c.model.intermediate_size = 192  # MLP width, 3 x hidden

    c.pretrain = _sft(batch_size=64, steps=300, lr=2e-3, warmup_steps=30)  # CE on BOS + sequence + EOS
    c.pretrain.num_sequences = 16000  # CatProtein pretrain records: pretraining_corpus(n, seed, max_len)
    c.pretrain.corpus_seed = 0  # which corpus is drawn
    c.pretrain.max_len = 32  # longest corpus sequence; the library default 40 costs more per RL step
    c.pretrain.min_len = 10  # shortest corpus sequence (the unconditional reward's minimum length)
    # The corpus' two hydrophobicity families (pretraining_corpus): a sequence's hydrophobic probability is
    # drawn from Beta(*rare_beta) with probability rare_fraction, else from Beta(*common_beta). These values
    # are the library's defaults (the CatProtein records); any other value draws the corpus in memory.
    c.pretrain.rare_fraction = 0.03
    c.pretrain.rare_beta = (60.0, 20.0)
    c.pretrain.common_beta = (16.0, 22.0)

    c.uncond = _rl(max_new_tokens=40, temperature=1.2, quantile="history", kl_beta=0.3, lr=5e-4)

    # CE on BOS + input + '>' + target + EOS, the target (and EOS) supervised.
    c.cond_warmup = _sft(batch_size=64, steps=200, lr=2e-3, warmup_steps=20)
    c.cond_warmup.num_pairs = 2000  # the first n CatProtein "warmup" pairs (conditional_pairs, seed 42)

    c.cond = _rl(max_new_tokens=24, temperature=1.3, quantile="within_prompt", kl_beta=0.05, lr=3e-4)
    c.cond.num_train_prompts = 3000  # the first n "train" pairs' prompts; B per step in a seeded order

    c.eval = ml_collections.ConfigDict()  # sampled with each setting's rollout section
    c.eval.uncond_samples = 512  # one pool per model (SPEC §3.4)
    c.eval.uncond_ks = [1, 2, 4, 8, 16, 32, 64]  # best-of-k budgets of the unconditional table
    c.eval.cond_prompts = 150  # held-out prompts: the first n "test" pairs
    c.eval.cond_samples = 32  # samples per held-out prompt
    c.eval.cond_ks = [1, 2, 4, 8, 16, 32]  # best-of-k budgets of the conditional table
    c.eval.chunk = 50  # conditional prompts per sampler call
    c.eval.seed = 1234  # the sampler's key (the same pools for every model)

    if "paper" in parts:
        _paper(c)
    if "rare" in parts:
        _rare(c)
    if "smoke" in parts:
        c.command = (
            "python -m experiments.protein --config=configs/protein/protein.py:smoke "
            "--workdir=/tmp/cat/protein_smoke"
        )
        if "paper" in parts:
            c.command = (
                "python -m experiments.protein --config=configs/protein/protein.py:paper,smoke "
                "--config.model.checkpoint=/path/to/checkpoint --workdir=/tmp/cat/protein_paper_smoke"
            )
        if "rare" in parts:
            c.command = (
                "python -m experiments.protein --config=configs/protein/protein.py:rare,smoke "
                "--workdir=/tmp/cat/protein_rare_smoke"
            )
        c.results_dir = ""
        c.progress = False
        c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 32, 64, 1
        c.pretrain.num_sequences, c.pretrain.batch_size, c.pretrain.steps = 64, 16, 2
        c.cond_warmup.num_pairs, c.cond_warmup.batch_size = 32, 16
        c.cond_warmup.steps = 2 * c.cond_warmup.opt.accum_steps  # two optimizer steps
        c.pretrain.opt.warmup_steps = c.cond_warmup.opt.warmup_steps = 1
        for rl in (c.uncond, c.cond):
            rl.rollout.num_samples, rl.steps, rl.seeds, rl.branches = 4, 2, (0, 1), ("bon2",)
        c.cond.seeds = (0,)  # two seeds in one setting are enough to exercise the across-seed statistics
        c.uncond.rollout.max_new_tokens, c.cond.rollout.max_new_tokens = 16, 12
        c.cond.num_train_prompts = 16
        c.eval.uncond_samples, c.eval.uncond_ks = 8, [1, 2, 4, 8]
        c.eval.cond_prompts, c.eval.cond_samples, c.eval.cond_ks, c.eval.chunk = 3, 4, [1, 2, 4], 3
    return c
