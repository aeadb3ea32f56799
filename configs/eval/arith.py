r"""Side-by-side evaluation of multiplication runs (SFT or RL) with exact scaling curves.

Usage::

    python -m experiments.evaluate --config=configs/eval/arith.py --workdir=/tmp/cat/eval \
        --config.runs="ce=/tmp/cat/ce,passn16=/tmp/cat/passn16"
    python -m experiments.evaluate --config=configs/eval/arith.py:sweep --workdir=/tmp/cat/eval_T \
        --config.runs="ce=/tmp/cat/ce"   # temperature sweep of one model (EXPERIMENTS.md control 1)

The task and model sections must match the runs' training configs.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    c = ml_collections.ConfigDict()
    c.runs = ""  # "name=workdir,name=workdir": finished runs with params/
    c.temperatures = [0.8, 1.0, 1.25, 1.5, 2.0] if "sweep" in parts else [1.0]

    c.task = common.task()
    c.model = common.model()
    c.eval = common.evaluation()  # eval.temperature is overridden by each entry of temperatures

    if "smoke" in parts:
        common.shrink(c, num_train=64, num_eval=8)
    return c
