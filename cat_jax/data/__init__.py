"""The data path every run reads: TFDS builders (prepared once, read back with ``tfds.data_source``) and the
batcher, a pure function of the step.

``validation``: jsonl reading with file:line errors, SPEC §3.1 ids and selection, validation reports.
``builders``: ``CatArithmetic``, ``CatProtein``, ``Gsm8kJsonl``, ``MathJsonl`` (importing this package
registers them with TFDS). ``pipeline``: encoders, :func:`length_report` and :func:`batches`.
"""

from cat_jax.data.builders import (
    ArithmeticConfig,
    CatArithmetic,
    CatProtein,
    Gsm8kJsonl,
    MathConfig,
    MathJsonl,
    ProteinConfig,
    default_data_dir,
    prepared_records,
)
from cat_jax.data.pipeline import (
    Batches,
    PromptTargetEncoder,
    batches,
    encode_record,
    length_report,
    protein_encoder,
)
from cat_jax.data.validation import (
    JsonlReport,
    cross_split_duplicates,
    norm_hash,
    problem_id,
    read_jsonl,
    select_problems,
    validation_report,
)

__all__ = [
    "ArithmeticConfig",
    "Batches",
    "CatArithmetic",
    "CatProtein",
    "Gsm8kJsonl",
    "JsonlReport",
    "MathConfig",
    "MathJsonl",
    "PromptTargetEncoder",
    "ProteinConfig",
    "batches",
    "cross_split_duplicates",
    "default_data_dir",
    "encode_record",
    "length_report",
    "norm_hash",
    "prepared_records",
    "problem_id",
    "protein_encoder",
    "read_jsonl",
    "select_problems",
    "validation_report",
]
