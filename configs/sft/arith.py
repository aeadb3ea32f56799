r"""CAT SFT on 2-digit x 2-digit multiplication: a CPU-scale analogue of the paper's Table 2 (and Table 3).

Usage (the argument after ':' picks the phase; ``smoke`` shrinks any of them to seconds)::

    python -m experiments.sft --config=configs/sft/arith.py:warmup --workdir=/tmp/cat/warmup
    python -m experiments.sft --config=configs/sft/arith.py:passn16 --workdir=/tmp/cat/passn16 \
        --config.init_from=/tmp/cat/warmup
    python -m experiments.sft --config=configs/sft/arith.py:passn16,smoke --workdir=/tmp/cat/smoke

Phases: ``warmup`` (CE from scratch), then from the warm-up weights ``ce`` / ``passn4`` / ``passn16`` /
``passn64`` (Table 2 rows) and ``maj8_3`` / ``maj16_4`` / ``maj64_26`` (Table 3 rows, (N, k) as in the paper).
Design notes for CPU scale: ../shared/EXPERIMENTS.md.
"""

import ml_collections

BRANCHES = {
    "warmup": ("ce", 1, 1),
    "ce": ("ce", 1, 1),
    "passn4": ("passn", 4, 1),
    "passn16": ("passn", 16, 1),
    "passn64": ("passn", 64, 1),
    "maj8_3": ("majority", 8, 3),
    "maj16_4": ("majority", 16, 4),
    "maj64_26": ("majority", 64, 26),
}


def get_config(arg: str = "warmup") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    phase = next((p for p in parts if p != "smoke"), "warmup")
    if phase not in BRANCHES:
        raise ValueError(f"unknown phase {phase!r}; valid phases: {sorted(BRANCHES)} (optionally ',smoke')")
    strategy, n, k = BRANCHES[phase]
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init, data order and evaluation sampling
    c.init_from = ""  # workdir of the warm-up whose final params a branch starts from ("" = from scratch)

    c.task = ml_collections.ConfigDict()
    c.task.name = "multiply"  # 2-digit x 2-digit, answer = the product as 4 zero-padded digits, then EOS
    c.task.digits = 2
    c.task.num_train = 4000  # problems the model trains on
    c.task.num_eval = 500  # disjoint held-out problems for the scaling curves
    c.task.seed = 0  # which problems land in train / eval

    c.model = ml_collections.ConfigDict()  # overrides of LlamaConfig.tiny (vocab comes from the tokenizer)
    c.model.hidden_size = 128
    c.model.intermediate_size = 384
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 4

    c.objective = ml_collections.ConfigDict()
    c.objective.strategy = strategy  # ce | passn | majority
    c.objective.n = n  # aligned test-time budget N
    c.objective.k = k  # majority threshold (1 unless majority)
    c.objective.reduction = "sequence_mean"  # sequence_mean | token_mean (SPEC §3.2)

    c.batch_size = 128
    c.epochs = 20.0 if phase == "warmup" else 50.0
    c.opt = ml_collections.ConfigDict()
    c.opt.lr = 1e-3
    c.opt.schedule = "linear"  # linear decay to 0 over the phase, fresh for every branch
    c.opt.warmup_steps = 0
    c.opt.weight_decay = 0.0
    c.opt.clip_norm = 1.0
    c.opt.accum_steps = 1

    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = 64  # samples per held-out problem
    c.eval.temperature = 1.0
    c.eval.ks = [1, 2, 4, 8, 16, 32, 64]
    c.eval.chunk = 100  # prompts per sampler call
    c.eval.seed = 1

    c.mesh = ml_collections.ConfigDict()
    c.mesh.devices = 1  # 1: single device; 0: every visible device; the batch is split over them
    c.mesh.fsdp = 1  # > 1: shard large parameters over this many devices (FSDP); must divide devices

    c.checkpoint_every = 200
    c.log_every = 10
    c.progress = True

    if "smoke" in parts:
        c.task.num_train, c.task.num_eval = 64, 8
        c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 32, 64, 1
        c.batch_size, c.epochs = 16, 2.0
        c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], 8
        c.checkpoint_every, c.log_every, c.progress = 4, 1, False
    return c
