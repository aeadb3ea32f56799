"""Checks the experiment programs run on their command line before absl parses the flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import ml_collections

from experiments import common


def check_config_overrides(argv: Sequence[str] | None = None) -> None:
    """Exit naming the valid fields when a ``--config.a.b=value`` flag names a field the config lacks.

    ml_collections would otherwise stop flag parsing with a bare ``AttributeError: "'b'"`` and a traceback.
    A config file that cannot be loaded is left to absl, which reports it itself.
    """
    argv = list(sys.argv if argv is None else argv)
    spec = next((a.partition("=")[2] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    keys = [a[len("--config.") :].partition("=")[0] for a in argv if a.startswith("--config.")]
    if not spec or not keys:
        return
    try:
        config = common.load_config(spec)
    except Exception:
        return
    for key in keys:
        node, path = config, []
        for part in key.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = f" of {'.'.join(path)!r}" if path else ""
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise SystemExit(f"--config.{key}: config has no field {key!r}; valid fields{where}: {valid}")
            node, path = node[part], [*path, part]
