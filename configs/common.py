"""Sections shared by every config (SFT, RL, evaluation, protein), so runs and evaluations agree.

Each function returns one section (a ``ConfigDict`` mirroring one library dataclass or one experiment
concern); a config file composes them and overrides the fields it changes.
"""

import ml_collections


def task() -> ml_collections.ConfigDict:
    """A synthetic arithmetic task (``experiments.common.task_data`` -> ``cat_jax.tasks.task_data.load``)."""
    c = ml_collections.ConfigDict()
    # multiply: a x b -> the product as 2*digits zero-padded digits; add: a + b -> the sum as digits + 1
    # zero-padded digits; modular_chain: see steps / modulus / max_operand below.
    c.name = "multiply"
    c.digits = 2
    c.num_train = 4000  # problems the model trains on
    c.num_eval = 500  # disjoint held-out problems for the scaling curves
    c.seed = 0  # which problems land in train / eval (and, for modular_chain, which chains are drawn)
    # name = "modular_chain": `start op v ... m<modulus>=` -> the final value; unused by multiply.
    c.steps = 3  # operations per chain
    c.modulus = 97  # every step is reduced mod this; the answer has its width (2 digits for 97)
    c.max_operand = 99  # start value and operands are drawn from 0..max_operand
    # > 0: a third split of that many problems, disjoint from train and eval, that RL steps draw their
    # prompts from (steps x prompts_per_step of them: every step sees new problems); 0: RL reads train.
    c.num_rl = 0
    # Where CatArithmetic prepares the problems once (array_record, read back with tfds.data_source);
    # "" = $CAT_JAX_DATA_DIR if set, else ~/.cache/cat_jax/tfds.
    c.data_dir = ""
    return c


def model() -> ml_collections.ConfigDict:
    """The policy (``experiments.common.build_policy``): a pretrained checkpoint, or ``LlamaConfig.tiny``
    with these overrides (vocabulary from the task's tokenizer, 0.43M parameters) trained from scratch."""
    c = ml_collections.ConfigDict()
    # A local Hugging Face directory (Llama 2/3, Mistral, Qwen2, GPT-2; config.json, safetensors,
    # tokenizer.json, tokenizer_config.json); "" = the from-scratch model below.
    c.checkpoint = ""
    c.hidden_size = 128  # residual stream width
    c.intermediate_size = 384  # SwiGLU MLP width
    c.num_layers = 2  # decoder blocks
    c.num_heads = 4  # query heads (head dim = hidden_size / num_heads)
    c.num_kv_heads = 4  # key/value heads (< num_heads: grouped-query attention)
    # Storage dtype of the parameters and dtype of the matmul inputs (accumulation, softmax, log-softmax,
    # sampling and the CAT objectives stay float32): float32 | bfloat16 | auto (float32 on CPU, bfloat16 on
    # GPU/TPU; with auto, parameters that all train are stored float32, as LoRA adapters always are).
    c.param_dtype = "auto"
    c.compute_dtype = "auto"
    c.remat = "none"  # gradient checkpointing per decoder block: none | block | dots
    c.chat_template = ""  # "" = the checkpoint's own (tokenizer_config.json); or a plain template name
    c.lora = lora(rank=0)
    return c


def lora(*, rank: int, alpha: float = 16.0, targets: tuple[str, ...] = ("q", "k", "v", "o")):
    """LoRA adapters (``cat_jax.models.lora.LoRAConfig``); rank 0 = train every parameter."""
    c = ml_collections.ConfigDict()
    c.rank = rank  # adapter rank r (0: no adapters, full fine-tuning)
    c.alpha = alpha  # the update is scaled by alpha / r
    c.targets = targets  # projections: q k v o gate up down (Llama family); c_attn attn_proj c_fc mlp_proj
    c.dropout = 0.0  # SPEC: 0 (no other value is implemented)
    return c


def math_task(*, target: str, train_count: int | None, levels: tuple[str, ...] = ()):
    """MATH (or GSM8K) problems through the ``math_jsonl`` / ``gsm8k_jsonl`` builders, SPEC §3.1."""
    c = ml_collections.ConfigDict()
    # Level-filtered selections take every eligible test problem (SPEC: "500 requested" of levels 1-3 is the
    # 238 of MATH-500); unfiltered ones the 500 of the test split.
    c.name = "math"  # math | gsm8k
    c.manual_dir = ""  # the directory holding train.jsonl and test.jsonl (required)
    c.target = target  # answer (the final answer) | solution (the full worked solution)
    c.levels = levels  # () = every level; e.g. ("Level 1", "Level 2", "Level 3")
    c.train_count = train_count  # problems of the shuffled eligible train split (None = all)
    c.train_offset = 0  # skip this many first (RL prompts: 2000 after the 2,000-problem warm-up)
    c.eval_count = None if levels else 500  # held-out problems of the test split (None = all eligible)
    c.seed = 42  # random.Random(seed).shuffle of the eligible problems
    c.max_len = 1024  # SFT window; targets are cut at the end (truncate_target), a prompt never is
    c.max_prompt_tokens = 512  # a longer rendered test prompt is an error naming the problem
    c.limit_train_prompts = False  # True (RL: train prompts are sampled from): the limit holds for them too
    c.max_new_tokens = 512  # generation budget of evaluation and RL rollouts
    c.data_dir = ""  # where the builder prepares the records ("" = $CAT_JAX_DATA_DIR or ~/.cache)
    return c


def evaluation() -> ml_collections.ConfigDict:
    """The sampled held-out evaluation at the end of every run (``experiments.common.evaluate``)."""
    c = ml_collections.ConfigDict()
    c.num_samples = 64  # samples per held-out problem (N of the exact pass@k / maj@k estimators)
    c.temperature = 1.0  # sampling temperature
    c.top_p = 1.0  # nucleus truncation (1 = off)
    c.ks = [1, 2, 4, 8, 16, 32, 64]  # budgets of the scaling curves (those <= num_samples are reported)
    c.chunk = 100  # prompts per sampler call
    c.samples_per_call = 0  # samples of each prompt per call (0 = all num_samples; must divide it)
    c.seed = 1  # sampling key: the same samples for every run evaluated with this config
    return c


def optimizer(
    *,
    lr: float,
    schedule: str,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
) -> ml_collections.ConfigDict:
    """``cat_jax.train_lib.OptimizerConfig`` fields (AdamW); ``total_steps`` comes from the run's length."""
    c = ml_collections.ConfigDict()
    c.lr = lr  # peak learning rate
    c.schedule = schedule  # constant | linear (decay to 0 over the phase) | cosine
    c.warmup_steps = warmup_steps  # linear warm-up from 0 to lr
    c.weight_decay = weight_decay  # decoupled (AdamW)
    c.clip_norm = clip_norm  # global-norm clip (None = off)
    c.accum_steps = 1  # gradient accumulation: micro-batches per update
    return c


def mesh() -> ml_collections.ConfigDict:
    """Devices of a run (``experiments.common.make_mesh``): a ``(data, fsdp)`` mesh, or one device."""
    c = ml_collections.ConfigDict()
    c.devices = 1  # 1: single device; 0: every visible device; the batch is split over them
    c.fsdp = 1  # > 1: shard large parameters over this many devices (FSDP); must divide devices
    return c


def loop(
    c: ml_collections.ConfigDict, *, checkpoint_every: int, log_every: int, curve_temperatures: list[float]
) -> None:
    """The training loop's fields of a training config (``experiments.common.run_phase``), set on ``c``."""
    # Exact held-out pass@k (teacher-forced, cat_jax.evaluation.exact_pass_at_k) every this many steps at
    # these temperatures: the learning curve behind the early-stopping and temperature controls (0 = off).
    c.curve_every = 0
    c.curve_temperatures = curve_temperatures
    # > 0: end the phase at the first curve point whose exact held-out pass@1 (T = 1) reaches this value
    # (a warm-up calibrated by measurement instead of by a fixed length; needs curve_every > 0).
    c.stop_at_pass1 = 0.0
    c.checkpoint_every = checkpoint_every  # steps between Orbax checkpoints (a run resumes from the last)
    c.log_every = log_every  # steps between metrics.jsonl records
    c.progress = True  # progress bar on the host loop


def shrink(c: ml_collections.ConfigDict, *, num_train: int, num_eval: int) -> None:
    """The shared part of every ``smoke`` variant: tiny data, model and evaluation."""
    c.task.num_train, c.task.num_eval = num_train, num_eval
    c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 32, 64, 1
    c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], num_eval
