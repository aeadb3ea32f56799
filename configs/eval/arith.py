r"""Side-by-side evaluation of multiplication runs (SFT or RL) with exact scaling curves.

Usage::

    python -m experiments.evaluate --config=configs/eval/arith.py --workdir=/tmp/cat/eval \
        --config.runs="ce=/tmp/cat/ce,passn16=/tmp/cat/passn16"
    python -m experiments.evaluate --config=configs/eval/arith.py:sweep --workdir=/tmp/cat/eval_T \
        --config.runs="ce=/tmp/cat/ce"   # temperature sweep of one model (EXPERIMENTS.md control 1)

The task and model sections must match the runs' training configs.
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    c = ml_collections.ConfigDict()
    c.runs = ""  # "name=workdir,name=workdir": finished runs with params/
    c.temperatures = [0.8, 1.0, 1.25, 1.5, 2.0] if "sweep" in parts else [1.0]

    c.task = ml_collections.ConfigDict()
    c.task.name = "multiply"
    c.task.digits = 2
    c.task.num_train = 4000
    c.task.num_eval = 500
    c.task.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.hidden_size = 128
    c.model.intermediate_size = 384
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 4

    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = 64
    c.eval.temperature = 1.0  # overridden by each entry of temperatures
    c.eval.ks = [1, 2, 4, 8, 16, 32, 64]
    c.eval.chunk = 100
    c.eval.seed = 1

    if "smoke" in parts:
        c.task.num_train, c.task.num_eval = 64, 8
        c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 32, 64, 1
        c.eval.num_samples, c.eval.ks, c.eval.chunk = 4, [1, 2, 4], 8
    return c
