"""notebooks/compose_losses.ipynb runs top to bottom (nbclient, CPU, this interpreter's kernel) in under a
minute of kernel CPU time, and is committed with its outputs."""

import json
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = pathlib.Path(__file__).parents[1] / "notebooks" / "compose_losses.ipynb"
CPU_BUDGET_S = 60.0

# Appended to the in-memory copy only: proves which interpreter and backend ran it, and its CPU time.
PROBE = """
import json, resource, sys, matplotlib
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"prefix": sys.prefix, "backend": matplotlib.get_backend(),
                  "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def test_committed_with_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "execute the notebook before committing it"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run it top to bottom once"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plots should be in the notebook"


def test_notebook_executes(tmp_path, monkeypatch):
    # A kernelspec for *this* interpreter (the .venv that `make test` built), found first on JUPYTER_PATH,
    # so a user-wide "python3" kernel elsewhere can never be picked up.
    spec = tmp_path / "jupyter" / "kernels" / "cat_jax_test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "cat_jax", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="cat_jax_test",
        timeout=300,
        startup_timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    wall = time.perf_counter() - start

    probe = json.loads(nb.cells[-1].outputs[-1]["text"])
    assert pathlib.Path(probe["prefix"]).resolve() == pathlib.Path(sys.prefix).resolve()
    assert probe["backend"].lower() == "agg"
    # CPU time, not wall time: the machine is shared, but the notebook's own work must stay under a minute.
    assert probe["cpu_s"] < CPU_BUDGET_S, f"kernel used {probe['cpu_s']:.0f} s of CPU (wall {wall:.0f} s)"
