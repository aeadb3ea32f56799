"""docs/errors.md cannot drift: every row of the bad-input table is run and must give what the row says.

The rows live in tests/errors/, one file per module. They run in one fresh interpreter without this suite's
jaxtyping hook (conftest.py), so what is checked is what a user of a plain ``import cat_jax`` gets.
"""

from __future__ import annotations

import fcntl
import json
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import errors as table  # tests/errors/: the rows, their runner and the page writer
finally:
    sys.path.remove(str(HERE))


@pytest.fixture(scope="module")
def observed(tmp_path_factory, worker_id) -> dict[str, dict]:
    """Every case's outcome, observed once per session (the first xdist worker runs it, others read it)."""
    if worker_id == "master":
        rows = table.run_subprocess()
    else:
        shared = tmp_path_factory.getbasetemp().parent / "errors_table"
        shared.mkdir(exist_ok=True)
        with (shared / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = shared / "rows.json"
            if not done.exists():
                done.write_text(json.dumps(table.run_subprocess()))
            rows = json.loads(done.read_text())
    return {row["id"]: row for row in rows}


def _case_ids() -> list[str]:
    return [table.case_id(case) for case in table.cases()]


@pytest.mark.parametrize("case_id", _case_ids())
def test_bad_input_gives_what_the_table_says(observed, case_id):
    row = observed[case_id]
    assert row["ok"], f"{case_id}: got {row['raised'] or 'a return value'}: {row['message']}"


def test_docs_errors_md_is_current(observed):
    expected = table.render(list(observed.values()))  # dicts keep the table's order
    assert table.DOC.read_text() == expected, "docs/errors.md is stale: run `python tests/errors_table.py`"


def test_cases_are_unique_and_of_known_kinds():
    cases = table.cases()
    assert len({table.case_id(c) for c in cases}) == len(cases)
    assert {c.kind for c in cases} <= set(table.KINDS)
    assert all((c.exc is None) == (c.check is not None) for c in cases)
