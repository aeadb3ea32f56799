"""Bad inputs of the protein experiment on a checkpoint (decoded-text rewards, the paper variant): rows of
docs/errors.md."""

import numpy as np

from cat_jax.tasks import protein
from experiments import common

from . import SHAPE, UNKNOWN, raises

# fmt: off
CASES = [
    raises("tasks.protein.text_rewards", SHAPE, "inputs for 1 prompt, texts of 2",
           lambda: protein.text_rewards([["ACDEFGHIKL"], ["ACDEFGHIKL"]], ["ACD"]),
           r"inputs has 1 sequences but texts has 2 prompts"),
    raises("tasks.protein.host_score_fn", SHAPE, "a conditional batch without input_index",
           lambda: protein.host_score_fn(str, (0,), inputs=["ACD"])(
               np.zeros((1, 2, 3), np.int32), np.ones((1, 2, 3), bool), {"lengths": np.ones(1, np.int32)}),
           r"the conditional scorer reads batch\['input_index'\]"),
    raises("experiments.common.load_config", UNKNOWN, '"configs/protein/protein.py:protgpt"',
           lambda: common.load_config("configs/protein/protein.py:protgpt"),
           r"unknown variant 'protgpt'; valid: '' \(full run\), 'smoke', 'paper'"),
]
# fmt: on
