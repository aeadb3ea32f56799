r"""Export a trained run as a Hugging Face checkpoint directory: LoRA adapters merged into the base.

The run's config names the base (``model.checkpoint``) and its adapters (``model.lora``); ``--workdir`` is
the finished run (its ``params/``). The output directory holds ``config.json``, safetensors and the base's
tokenizer files, so ``transformers`` (or any server that reads the format) loads the trained policy::

    python -m experiments.export --config=configs/sft/math.py:passn16 --workdir=/runs/passn16 \
        --config.model.checkpoint=$CKPT --out=/exports/passn16

Merged weights are ``W + alpha/r A B`` summed in float32 and stored in ``model.param_dtype``.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from absl import flags

from cat_jax.models import convert, lora
from experiments import cli, common

_OUT = flags.DEFINE_string("out", None, "The Hugging Face directory to write (must not exist yet).")


def export(config: ml_collections.ConfigDict, workdir: str, out: str) -> str:
    """Merge ``workdir``'s trained parameters into ``config.model.checkpoint`` and write ``out``."""
    if not config.model.get("checkpoint"):
        raise ValueError("export needs model.checkpoint: the base the run was trained from")
    target = pathlib.Path(out)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"--out={out!r} exists and is not empty; name a new directory")
    checkpoint, _ = common.load_checkpoint(config.model)
    lora_cfg = common.lora_config(config.model)
    if lora_cfg is None:  # full fine-tuning: the run's parameters are the model
        params = common.load_params(workdir, checkpoint.params)
    else:
        # The adapters' shapes from a fresh init; their values from the run's params/.
        graphdef, adapters = lora.init(checkpoint.graphdef, checkpoint.params, lora_cfg, jax.random.key(0))
        adapters = common.load_params(workdir, adapters)
        _, params = lora.merge(graphdef, adapters, checkpoint.params)
    convert.export(str(target), checkpoint.config, params, tokenizer_from=str(config.model.checkpoint))
    return str(target)


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
    if not _OUT.value:
        raise ValueError("--out is required: the Hugging Face directory to write")
    return export(config, workdir, _OUT.value)


if __name__ == "__main__":
    cli.program(
        run, lambda config, workdir, out: f"exported {workdir} -> {out}", workdir_help="The run to export."
    )
