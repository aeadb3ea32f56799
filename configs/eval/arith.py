r"""Side-by-side evaluation of multiplication runs (SFT or RL) with exact scaling curves.

Usage::

    python -m experiments.evaluate --config=configs/eval/arith.py --workdir=/tmp/cat/eval \
        --config.runs="ce=/tmp/cat/ce,passn16=/tmp/cat/passn16"
    python -m experiments.evaluate --config=configs/eval/arith.py:sweep --workdir=/tmp/cat/eval_T \
        --config.runs="ce=/tmp/cat/ce"   # temperature sweep of one model (EXPERIMENTS.md control 1)

The task and model sections must match the runs' training configs. ``experiments.quickstart`` (``make run``)
evaluates its CE and Pass@16 branches with this config: the README's quickstart table.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = [a for a in arg.split(",") if a]
    c = ml_collections.ConfigDict()
    c.runs = ""  # "name=workdir,name=workdir": finished runs with params/
    # Every run is sampled at each of these temperatures (sweep: the temperature control of EXPERIMENTS.md).
    c.temperatures = [0.8, 1.0, 1.25, 1.5, 2.0] if "sweep" in parts else [1.0]

    c.task = common.task()  # the held-out problems (as the runs were trained with)
    c.model = common.model()  # the runs' architecture, to load their params/
    c.eval = common.evaluation()  # eval.temperature is overridden by each entry of temperatures

    if "smoke" in parts:
        common.shrink(c, num_train=64, num_eval=8)
    return c
