"""Glue shared by the experiment modules: config loading, ConfigDict -> typed dataclass conversion, flags."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from cat_jax import train_lib


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Load ``path/to/config.py[:arg]`` like ``--config`` does and apply dotted ``overrides``.

    The config is locked, so an override naming a field that does not exist raises ``KeyError`` listing the
    valid fields before anything runs.
    """
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist (expected e.g. configs/sft/passn.py)")
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    for key, value in (overrides or {}).items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"config has no field {key!r}; valid fields here: {sorted(node.keys())}")
        node[leaf] = value
    return config


def optimizer_config(opt: ml_collections.ConfigDict, *, total_steps: int) -> train_lib.OptimizerConfig:
    """``config.opt`` -> :class:`cat_jax.train_lib.OptimizerConfig` (the library never sees a ConfigDict)."""
    return train_lib.OptimizerConfig(
        lr=float(opt.lr),
        schedule=str(opt.schedule),
        total_steps=int(total_steps),
        warmup_steps=int(opt.get("warmup_steps", 0)),
        weight_decay=float(opt.get("weight_decay", 0.0)),
        clip_norm=None if opt.get("clip_norm") is None else float(opt.clip_norm),
        accum_steps=int(opt.get("accum_steps", 1)),
    )


def write_json(path: str | pathlib.Path, payload: Any) -> pathlib.Path:
    """Write ``payload`` as indented JSON, creating parent folders."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
