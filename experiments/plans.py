r"""The ``--plan`` tables of the paper's runs at their real sizes, without downloading anything.

Writes ``config.json`` files of the paper's models (Mistral-7B-Instruct-v0.2, ProtGPT2) from the presets in
``cat_jax.models`` into a temporary directory (``--plan`` reads nothing else of a checkpoint) and prints the
memory plan (:func:`experiments.common.plan_for`) of each table's config on one 80 GiB GPU and on a TPU v5e
slice (16 GiB per chip), into ``results/plans/README.md``::

    python -m experiments.plans

Each row is what ``python -m experiments.sft --config=... --config.model.checkpoint=$CKPT --plan
--plan_devices=N --plan_memory_gib=G`` prints for the same config on a real checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tempfile

from absl import app

from cat_jax import plan, reporting
from cat_jax.models import convert, gpt2, llama
from experiments import cli, common

COMMAND = "python -m experiments.plans"
# (table, config, overrides, hardware label, devices, GiB per device)
H100 = ("one 80 GiB GPU", 1, 80.0, {})
# SPEC's batch of 4 prompts / sequences splits over 4 chips; FSDP shards the base over them.
# Evaluation sampling splits each call's prompts over the chips (eval.chunk: a multiple of 4), 32 samples
# of each prompt per call (a 16 GiB chip holds 4 x 32 rows of a 7B model's 1,024-slot cache).
V5E = (
    "TPU v5e (4 chips of a v5e-8, FSDP 4)",
    4,
    16.0,
    {"mesh.devices": 4, "mesh.fsdp": 4, "eval.chunk": 4, "eval.samples_per_call": 32},
)
RUNS = [
    ("Table 2 (Pass@16 SFT)", "configs/sft/math.py:passn16"),
    ("Table 3 (Maj (64,26) SFT)", "configs/sft/math.py:maj64_26"),
    ("Table 4 (Pass@4-log RL)", "configs/rl/math.py:passn4_log"),
    ("Table 5 (Maj@8-raw RL)", "configs/rl/math.py:maj8_raw"),
]


def mistral_dir(root: pathlib.Path) -> pathlib.Path:
    """A directory with Mistral-7B-Instruct-v0.2's config.json (the preset's values)."""
    path = root / "mistral-7b-instruct-v0.2"
    path.mkdir(parents=True, exist_ok=True)
    hf = convert.config_to_hf(llama.PRESETS["mistral-7b"])
    hf.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=None)
    (path / "config.json").write_text(json.dumps(hf))
    return path


def protgpt2_plans() -> list[tuple[str, plan.Plan]]:
    """ProtGPT2 (Table 6), full fine-tuning, SPEC §3.4: unconditional RL (4 x 32 rollouts of <= 64 new
    tokens after one BOS) and conditional RL (4 x 25 of <= 32 after a prompt of <= 40 tokens)."""
    cfg = gpt2.PRESETS["protgpt2"]
    out = []
    for name, rows, length in (("unconditional", 4 * 32, 1 + 64), ("conditional", 4 * 25, 40 + 32)):
        label, devices, gib, _ = H100
        p = plan.plan(
            dataclasses.replace(cfg, compute_dtype="bfloat16"), trainable="full", batch=rows, seq_len=length,
            kv_batch=rows, kv_len=length, devices=devices, remat="block", capacity_bytes=int(gib * 2**30),
        )  # fmt: skip
        out.append((f"Table 6 ProtGPT2 {name} RL, {label}", p))
    return out


def main(argv):
    del argv
    sections = [
        "# Memory plans of the paper's runs (`--plan`)\n\n",
        f"Command: `{COMMAND}`. Estimates per device from `cat_jax.plan` (formulas in its docstring; on CPU "
        "a small training step's compiled memory is within a factor 2 of it, tests/test_plan.py); bfloat16 "
        "storage and compute for the frozen base (the accelerator default), float32 LoRA adapters, AdamW "
        "moments and gradients. Nothing here ran on an accelerator.\n\n",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = mistral_dir(pathlib.Path(tmp))
        for table, spec in RUNS:
            for label, devices, gib, extra in (H100, V5E):
                overrides = {
                    "model.checkpoint": str(ckpt),
                    "model.param_dtype": "bfloat16",
                    "model.compute_dtype": "bfloat16",
                    "task.manual_dir": "/unused",
                    **extra,
                }
                config = common.load_config(spec, overrides)
                sections.append(f"## {table}, Mistral-7B-Instruct-v0.2 + LoRA, {label}\n\n`{spec}`\n\n")
                sections.append("```\n" + cli.plan_report(config, devices, gib) + "\n```\n\n")
    for title, p in protgpt2_plans():
        sections.append(
            f"## {title}\n\nbfloat16 compute over float32 weights (SPEC: fp32 masters), remat=block\n\n"
        )
        sections.append("```\n" + p.format() + "\n```\n\n")
    text = "".join(sections)
    reporting.write_text(pathlib.Path("results/plans/README.md"), text)
    cli.say(text)


if __name__ == "__main__":
    app.run(main)
