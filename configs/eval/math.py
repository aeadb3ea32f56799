r"""Evaluate pretrained-policy runs on MATH side by side (SPEC §3.5 presets), the untrained checkpoint as the
baseline row::

    python -m experiments.evaluate --config=configs/eval/math.py:table2 --workdir=/runs/eval_table2 \
        --config.model.checkpoint=$CKPT --config.task.manual_dir=$MATH \
        --config.runs="base=untrained,ce=/runs/passn_ce,passn16=/runs/passn16"

Presets (the argument): ``table2`` (500 test problems x 64 at T = 0.8, top-p 0.95, 512 new tokens),
``table3`` (level 1-3 test problems x 128), ``table4`` (500 x 32 at T = 0.7, top-p 0.9, 300 new tokens, 256
prompt tokens), ``table5`` (level 1-3 x 16 at T = 0.8, top-p 0.95, 512 new tokens). ``model.lora`` must match
the runs' adapters (SFT: r=16, alpha=16 on q/k/v/o for tables 2-3; RL: r=16, alpha=32 on q/v for 4-5).
``smoke``: seconds on CPU.
"""

import ml_collections

from configs import common

LEVELS_1_3 = ("Level 1", "Level 2", "Level 3")
PRESETS = {  # preset -> (levels, samples, temperature, top_p, max new tokens, max prompt tokens, ks)
    "table2": ((), 64, 0.8, 0.95, 512, 512, [1, 4, 8, 16, 32, 64]),
    "table3": (LEVELS_1_3, 128, 0.8, 0.95, 512, 512, [1, 4, 8, 16, 32, 64, 128]),
    "table4": ((), 32, 0.7, 0.9, 300, 256, [1, 4, 8, 16, 32]),
    "table5": (LEVELS_1_3, 16, 0.8, 0.95, 512, 256, [1, 4, 8, 16]),
}


def get_config(arg: str = "table2") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    preset = next((p for p in parts if p != "smoke"), "table2")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {sorted(PRESETS)} (optionally ',smoke')")
    levels, samples, temperature, top_p, new_tokens, prompt_tokens, ks = PRESETS[preset]
    c = ml_collections.ConfigDict()
    c.runs = ""  # "name=workdir,...", or name=untrained for the checkpoint itself
    c.temperatures = [temperature]

    # Held-out problems only: the run reads the test split (one train problem keeps the task whole).
    c.task = common.math_task(target="answer", train_count=1, levels=levels)
    c.task.max_prompt_tokens, c.task.max_new_tokens = prompt_tokens, new_tokens
    c.model = common.model()
    sft = preset in ("table2", "table3")
    c.model.lora = common.lora(
        rank=16, alpha=16.0 if sft else 32.0, targets=("q", "k", "v", "o") if sft else ("q", "v")
    )
    c.eval = common.evaluation()
    c.eval.num_samples, c.eval.temperature, c.eval.top_p, c.eval.ks = samples, temperature, top_p, ks
    c.eval.chunk, c.eval.seed = 8, 42

    if "smoke" in parts:
        c.task.eval_count, c.task.max_prompt_tokens, c.task.max_new_tokens = 4, 128, 8
        c.model.lora.rank = 4
        c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], 4
    return c
