r"""Protein Best-of-N at CPU scale: the paper's Table 6 analogue (SPEC §3.4), every phase in one run.

Usage (the committed results/protein/ were made by the first line; the second runs in seconds)::

    python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein
    python -m experiments.protein --config=configs/protein/protein.py:smoke --workdir=/tmp/cat/protein_smoke

Phases: pre-train a tiny protein LM on ``cat_jax.tasks.protein.pretraining_corpus``; unconditional RL from it
(standard vs BoN-2/4/8, reward-history quantiles); a conditional warm-up on the synthetic input->target pairs,
then conditional RL (standard vs BoN-2/4/8, within-prompt quantiles); evaluation of every model (expected
best-of-k, with and without replacement; hydrophobicity histograms). Kept from SPEC §3.4: B = 4 groups, the
sampling temperatures, beta, advantage clip, AdamW wd 0.01 / clip 1, the quantile estimators, BoN
normalisation, the evaluation pools (512 unconditional samples, 150 prompts x 32) and budgets. CPU-sized:
the model (0.11M parameters), M = 16 rollouts (SPEC 32 / 25), max new tokens 40 / 24 (SPEC 64 / 32; our
corpus is at most 32 residues and conditional targets at most 19), 50 RL steps (SPEC 300) at learning rates
5e-4 / 3e-4 (SPEC 1e-5 / 2e-6 for the 738M ProtGPT2).
"""

import ml_collections


def _rl(*, num_samples, max_new_tokens, temperature, top_k, lr, kl_beta, steps) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.prompts_per_step = 4  # B (SPEC: 4 groups per step)
    c.num_samples = num_samples  # M rollouts per prompt
    c.max_new_tokens = max_new_tokens
    c.temperature = temperature
    c.top_k = top_k  # 0 = off (SPEC's top-k 50 exceeds our 24-token vocabulary, so it is off either way)
    c.top_p = 1.0
    c.steps = steps
    c.lr = lr  # AdamW, constant, weight decay 0.01, clip 1.0 (SPEC §3.4)
    c.kl_beta = kl_beta  # k3 KL to the frozen initial model
    c.advantage_clip = 5.0
    c.branches = ("standard", "bon2", "bon4", "bon8")  # tuples: overridable as --config.x="(a, b)"
    c.seeds = (0, 1, 2)
    return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    unknown = [p for p in parts if p != "smoke"]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; valid: '' (full run) or 'smoke'")
    c = ml_collections.ConfigDict()
    # The command that regenerates this run's outputs (written into every results file).
    c.command = "python -m experiments.protein --config=configs/protein/protein.py --workdir=workdirs/protein"
    c.results_dir = "results/protein"  # where results.json, table.md and the plots go ("" = workdir/report)
    c.progress = True

    c.model = ml_collections.ConfigDict()  # overrides of LlamaConfig.tiny (vocabulary: 24 characters)
    c.model.hidden_size = 64
    c.model.intermediate_size = 192
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 4

    c.pretrain = ml_collections.ConfigDict()  # next-token CE on BOS + sequence + EOS
    c.pretrain.num_sequences = 16000  # pretraining_corpus(n, seed); lengths 10..40
    c.pretrain.corpus_seed = 0
    c.pretrain.max_len = 32  # longest corpus sequence (min 10); the library default 40 costs more per RL step
    c.pretrain.batch_size = 64
    c.pretrain.steps = 300
    c.pretrain.lr = 2e-3  # cosine to 0 after 50 warm-up steps
    c.pretrain.seed = 0

    c.uncond = _rl(
        num_samples=16, max_new_tokens=40, temperature=1.2, top_k=0, lr=5e-4, kl_beta=0.3, steps=50
    )

    c.cond_warmup = ml_collections.ConfigDict()  # CE on BOS + input + '>' + target + EOS, target supervised
    c.cond_warmup.num_pairs = 2000  # conditional_pairs(n, "warmup") as in SPEC
    c.cond_warmup.batch_size = 64
    c.cond_warmup.steps = 200
    c.cond_warmup.lr = 2e-3
    c.cond_warmup.seed = 0

    c.cond = _rl(num_samples=16, max_new_tokens=24, temperature=1.3, top_k=0, lr=3e-4, kl_beta=0.05, steps=50)
    c.cond.num_train_prompts = 3000  # conditional_pairs(n, "train"); B per step drawn in a seeded order

    c.eval = ml_collections.ConfigDict()
    c.eval.uncond_samples = 512  # one pool per model (SPEC §3.4)
    c.eval.uncond_ks = [1, 2, 4, 8, 16, 32, 64]
    c.eval.cond_prompts = 150  # conditional_pairs(n, "test")
    c.eval.cond_samples = 32
    c.eval.cond_ks = [1, 2, 4, 8, 16, 32]
    c.eval.chunk = 50  # conditional prompts per sampler call
    c.eval.seed = 1234

    if "smoke" in parts:
        c.command = (
            "python -m experiments.protein --config=configs/protein/protein.py:smoke "
            "--workdir=/tmp/cat/protein_smoke"
        )
        c.results_dir = ""
        c.progress = False
        c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 32, 64, 1
        c.pretrain.num_sequences, c.pretrain.batch_size, c.pretrain.steps = 64, 16, 2
        c.cond_warmup.num_pairs, c.cond_warmup.batch_size, c.cond_warmup.steps = 32, 16, 2
        for rl in (c.uncond, c.cond):
            rl.num_samples, rl.steps, rl.seeds, rl.branches = 4, 2, (0, 1), ("bon2",)
        c.cond.seeds = (0,)  # two seeds in one setting are enough to exercise the across-seed statistics
        c.uncond.max_new_tokens, c.cond.max_new_tokens = 16, 12
        c.cond.num_train_prompts = 16
        c.eval.uncond_samples, c.eval.uncond_ks = 8, [1, 2, 4, 8]
        c.eval.cond_prompts, c.eval.cond_samples, c.eval.cond_ks, c.eval.chunk = 3, 4, [1, 2, 4], 3
    return c
