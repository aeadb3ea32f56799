"""Bad inputs of the protein corpus' family knobs and the ``:rare`` config variant: rows of docs/errors.md."""

from cat_jax.tasks import protein
from experiments import common

from . import DOMAIN, raises

# fmt: off
CASES = [
    raises("tasks.protein.pretraining_corpus", DOMAIN, "rare_fraction=1.5",
           lambda: protein.pretraining_corpus(4, rare_fraction=1.5),
           r"rare_fraction must be a number in \[0, 1\], got 1.5"),
    raises("tasks.protein.pretraining_corpus", DOMAIN, "rare_beta=(0.0, 1.0)",
           lambda: protein.pretraining_corpus(4, rare_beta=(0.0, 1.0)),
           r"rare_beta must be two Beta parameters \(a, b\), both > 0, got \(0.0, 1.0\)"),
    raises("experiments.common.load_config", DOMAIN, '"configs/protein/protein.py:paper,rare"',
           lambda: common.load_config("configs/protein/protein.py:paper,rare"),
           r"variants 'paper' and 'rare' exclude each other"),
]
# fmt: on
