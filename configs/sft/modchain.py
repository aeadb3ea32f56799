r"""CAT SFT on modular chains, the second task family: ``a op b op c m10=`` -> the last digit of the result.

Usage (same phases and ``paper`` / ``smoke`` modifiers as configs/sft/arith.py, plus the exact plurality
branches ``plur8`` / ``plur16``)::

    python -m experiments.sft --config=configs/sft/modchain.py:warmup --workdir=/tmp/mc/warmup
    python -m experiments.sft --config=configs/sft/modchain.py:plur8 --workdir=/tmp/mc/plur8 \
        --config.init_from=/tmp/mc/warmup
    python -m experiments.paper --study=modchain --seeds=0,1,2   # -> results/sft_modchain

Mirrors Tables 2-3 on a second family (results/sft_modchain). Two random operations (+, -, *) on operands
0..99, reduced mod 10: the answer is one digit, so the whole answer set (10 residues) is small enough for the
exact plurality objective, and wrong answers cluster (maj@k differs from pass@k). Calibration (README,
"Second task family"): a 30-epoch warm-up reaches held-out pass@1 in the 10-50% band, well above chance
(10%), without saturating.
"""

import ml_collections

from configs.sft import arith


def get_config(arg: str = "warmup") -> ml_collections.ConfigDict:
    c = arith.get_config(arg)
    c.task.name = "modular_chain"
    c.task.steps = 2  # two operations per chain
    c.task.modulus = 10  # one-digit answers: 10 residues
    c.task.max_operand = 99  # operands 0..99
    return c
