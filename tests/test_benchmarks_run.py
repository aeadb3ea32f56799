"""benchmarks.run: one failing benchmark is reported and fails the run, the others still run; readers agree
with the committed per-benchmark reports."""

import pathlib

import pytest

from benchmarks import run

REPORTS = pathlib.Path(__file__).parents[1] / "results" / "benchmarks"

FAKES = {
    "__init__": "",
    # Writes its report like the real benchmarks do: relative to the working directory.
    "fine": (
        "import pathlib\n"
        "p = pathlib.Path('results/benchmarks/fine.md')\n"
        "p.write_text('# Fine\\n\\n| what | speed-up |\\n|---|---|\\n| x | 3.0x |\\n')\n"
    ),
    "boom": "raise RuntimeError('simulated crash in a benchmark')  # results/benchmarks/boom.md\n",
    "absent": "print('google-tunix is not importable; skipping')  # results/benchmarks/absent.md\n",
    "silent": "print('done')  # claims results/benchmarks/silent.md but exits 0 without writing it\n",
    "profiler": "raise SystemExit('a tool that writes no report must not be run')\n",
}


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    pkg = tmp_path / "repo" / "benchmarks"
    pkg.mkdir(parents=True)
    for name, body in FAKES.items():
        (pkg / f"{name}.py").write_text(body)
    (pkg / "run.py").write_text("raise SystemExit('run must not run itself')\n")
    monkeypatch.setattr(run, "ROOT", tmp_path / "repo")
    return tmp_path


def test_failures_are_reported_and_the_rest_still_runs(fake_root):
    out = fake_root / "out"
    code = run.main(["--out-dir", str(out), "--timeout", "60"])
    assert code == 1
    report = (out / "results" / "benchmarks" / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "[fine](fine.md)" in rows and "see the file" in rows["[fine](fine.md)"]
    assert "**FAILED**" in rows["boom"] and "exit status 1" in rows["boom"]
    assert "**skipped**" in rows["absent"] and "not importable" in rows["absent"]
    assert "**FAILED**" in rows["silent"] and "was not written" in rows["silent"]
    assert "simulated crash in a benchmark" in report  # the log tail of the failure
    assert "Not run" in report and "`profiler`" in report
    assert "shared and noisy" in report and "CPU:" in report and "jax" in report


def test_only_selects_and_rejects_unknown_names(fake_root):
    out = fake_root / "out"
    assert run.main(["--out-dir", str(out), "--only", "fine"]) == 0
    assert "boom" not in (out / "results" / "benchmarks" / "README.md").read_text()
    with pytest.raises(SystemExit):
        run.main(["--out-dir", str(out), "--only", "nosuch"])


def test_collect_reads_the_reports_and_runs_nothing(fake_root):
    out = fake_root / "out"
    (out / "results" / "benchmarks").mkdir(parents=True)
    (out / "results" / "benchmarks" / "fine.md").write_text("old report")
    # "profiler" and "boom" would raise if run; --collect only reads what is on disk.
    assert run.main(["--out-dir", str(out), "--collect", "--only", "fine"]) == 0
    report = (out / "results" / "benchmarks" / "README.md").read_text()
    assert "It ran nothing" in report and "[fine](fine.md)" in report and "no wall times" in report
    assert run.main(["--out-dir", str(out), "--collect", "--only", "boom"]) == 1  # no report on disk


def test_md_tables():
    text = "# A\n\n| x | y |\n|---|---:|\n| 1 | 2.5x |\n\n## B: b\n| p |\n|---|\n| q |\n"
    assert run.md_tables(text) == [("A", ["x", "y"], [["1", "2.5x"]]), ("B: b", ["p"], [["q"]])]


@pytest.mark.parametrize("name", sorted(run.READERS))
def test_readers_agree_with_the_committed_reports(name):
    path = REPORTS / f"{name}.md"
    if not path.exists():
        pytest.skip(f"{path.name} not committed")
    rows = run.READERS[name](path.read_text())
    assert rows and all(row.ratio and row.ratio != "-" for row in rows)
