"""The bad-input table of docs/errors.md, as data: one module of rows per library module or CLI.

A row names an API as users write it, the kind of bad input (one of :data:`KINDS`), the input itself, how it
is called and what the user gets, in one of two shapes:

- ``raises(api, kind, given, call, match, exc=ValueError)``: ``call()`` raises ``exc`` and ``match`` (a
  regex) is found in its message;
- ``returns(api, kind, given, call, documented, check)``: ``call()`` returns a documented result (NaN, a
  dtype, an empty array), ``check(result)`` proves it and ``documented`` is what docs/errors.md shows.

The rows of ``cat_jax/<module>`` live in ``tests/errors/<module>.py`` as a module-level ``CASES`` list, beside
the few fixtures they share; :data:`MODULES` orders those files in docs/errors.md. To add a row, append it to
the ``CASES`` of its module (a new file: add its name to ``MODULES``), run ``python tests/errors_table.py``
and commit the regenerated docs/errors.md. For example::

    raises("objectives.passn_sft_loss", STATIC, "n=0", lambda: obj.passn_sft_loss(lp, n=0),
           r"n must be an integer in >= 1, got 0"),

The lists sit between ``# fmt: off`` and ``# fmt: on`` so that a row stays one call wrapped by hand over one
to three lines (``ruff check`` still holds them to 110 columns); ``STATIC``, ``DOMAIN``, ... name the KINDS.

``python tests/errors_table.py`` runs every case in a plain interpreter (no jaxtyping import hook: what a user
sees) and rewrites docs/errors.md with the messages it observed; ``--json`` prints the observations instead.
tests/test_errors.py runs that script once, checks every case against its row and that docs/errors.md is
current. This package imports no JAX itself: the row modules do, so :func:`main` sets the platform first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errors.md"
SCRIPT = ROOT / "tests" / "errors_table.py"
# The same platform as the test suite (8 fake CPU devices), so device counts in messages are fixed.
ENV = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}

# The files of rows, in the order of docs/errors.md (the library's dependency order, then the experiments).
MODULES = (
    "numerics",
    "objectives",
    "operators",
    "plurality",
    "diagnostics",
    "weights",
    "advantages",
    "losses",
    "rl_update",
    "sampling",
    "models",
    "gpt2",
    "plan",
    "train_lib",
    "sharding",
    "multihost",
    "rl",
    "evaluation",
    "tasks",
    "chat",
    "math_data",
    "protein",
    "protein_rare",
    "data",
    "experiments",
)

KINDS = (
    "shape",
    "dtype",
    "empty",
    "NaN/inf",
    "domain",
    "static argument",
    "missing file",
    "unknown name",
    "config typo",
)
SHAPE, DTYPE, EMPTY, NONFINITE, DOMAIN, STATIC, MISSING, UNKNOWN, TYPO = KINDS


@dataclasses.dataclass(frozen=True)
class Case:
    api: str  # module.function as users write it
    kind: str  # one of KINDS
    given: str  # the bad input, as a user would write it
    call: Callable[[], Any]  # a ``start()`` method, if it has one, is called before any case runs
    exc: type[BaseException] | None  # None: the call returns, and `check(result)` must hold
    match: str  # regex on str(exception), or the documented result when exc is None
    check: Callable[[Any], bool] | None = None


def raises(
    api: str,
    kind: str,
    given: str,
    call: Callable[[], Any],
    match: str,
    exc: type[BaseException] = ValueError,
) -> Case:
    """A row whose call raises ``exc`` with ``match`` (a regex) in its message."""
    return Case(api, kind, given, call, exc, match)


def returns(
    api: str, kind: str, given: str, call: Callable[[], Any], documented: str, check: Callable[[Any], bool]
) -> Case:
    """A row whose call returns: ``check(result)`` must hold, and the table shows ``documented``."""
    return Case(api, kind, given, call, None, documented, check)


def all_nan(x) -> bool:
    import numpy as np

    return bool(np.isnan(np.asarray(x)).all())


class CliError(Exception):
    """A CLI run that exited non-zero: its exit status and the last line of its stderr."""

    def __init__(self, code: int, last_line: str):
        super().__init__(last_line)
        self.code = code


def cases() -> list[Case]:
    """Every row, in the order of docs/errors.md (imports the library: set the platform first)."""
    return [case for name in MODULES for case in importlib.import_module(f"{__name__}.{name}").CASES]


# ----------------------------------------------------------------------------- running and rendering


def case_id(case: Case) -> str:
    return f"{case.api}: {case.given}"


def observe(case: Case) -> dict:
    """Run one case; report what it raised (or returned) and whether that is what the table says."""
    row = {"id": case_id(case), "api": case.api, "given": case.given, "kind": case.kind}
    try:
        with _quiet():
            result = case.call()
    except Exception as e:  # the whole point: record any exception, expected or not
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raised = f"exit status {e.code}" if isinstance(e, CliError) else f"`{type(e).__name__}`"
        row |= {"raised": raised, "message": message}
        row["ok"] = (
            case.exc is not None
            and isinstance(e, case.exc)
            and re.search(case.match, message, flags=re.DOTALL) is not None
        )
        return row
    # A documented result (NaN, a dtype): the table shows the documented text, the check proves it.
    row |= {"raised": None, "message": case.match, "result": repr(result)[:200]}
    row["ok"] = case.exc is None and bool(case.check(result))
    return row


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def observe_all() -> list[dict]:
    todo = cases()
    for case in todo:  # CLI runs start now, so their interpreters start up while the in-process cases run
        if hasattr(case.call, "start"):
            case.call.start()
    return [observe(case) for case in todo]


def _cell(text: str, limit: int = 170) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def render(rows: list[dict]) -> str:
    """docs/errors.md from what running the cases produced (:func:`observe` rows, in table order)."""
    lines = [
        "# Bad input: what you get",
        "",
        "Generated by `python tests/errors_table.py` from the rows in `tests/errors/` (one file per module);",
        "`tests/test_errors.py` runs every case and fails if a row here differs from what the code does.",
        "Messages are the observed ones (first 170 characters), from a plain `import cat_jax` on CPU.",
        "",
        "Conventions: a bad static argument (budget, option name, config field) raises `ValueError` naming",
        "the argument and the allowed values, before anything is compiled. Array *values* are checked",
        "eagerly where the API says so (`validate=True` on the objectives; by default on concrete inputs",
        "of the operators, weights and advantages); under `jit` out-of-domain values give NaN, which the",
        "non-finite guard of `train_lib` turns into a `FloatingPointError` naming the step. Rows that say",
        "*returns* are documented results, not errors. With a jaxtyping import hook active (as in this",
        "repository's tests) a wrong rank or dtype may be reported first as `jaxtyping.TypeCheckError`.",
        "",
        "| API | bad input | kind | you get | message |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        got = row["raised"] or "returns"
        api, given, kind, message = row["api"], _cell(row["given"], 80), row["kind"], _cell(row["message"])
        lines.append(f"| `{api}` | {given} | {kind} | {got} | {message} |")
    return "\n".join(lines) + "\n"


def run_subprocess() -> list[dict]:
    """Observe every case in a fresh interpreter without the tests' jaxtyping hook."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} --json failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str]) -> int:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    rows = observe_all()
    if "--json" in argv:
        print(json.dumps(rows))
        return 0
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"MISMATCH {r['id']}: {r['raised']}: {r['message']}", file=sys.stderr)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(rows))
    print(f"wrote {DOC.relative_to(ROOT)} ({len(rows)} cases, {len(bad)} mismatches)")
    return 1 if bad else 0
