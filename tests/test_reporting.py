import numpy as np
import pytest

from cat_jax import reporting
from cat_jax.operators import Curve


def test_mean_se_over_seeds_and_single_seed_has_nan_se():
    mean, se = reporting.mean_se([[0.1, 0.2], [0.3, 0.6]])
    np.testing.assert_allclose(mean, [0.2, 0.4])
    np.testing.assert_allclose(se, [0.1, 0.2])
    mean, se = reporting.mean_se([[0.1, 0.2]])
    np.testing.assert_allclose(mean, [0.1, 0.2])
    assert np.isnan(se).all()
    with pytest.raises(ValueError, match="at least one value"):
        reporting.mean_se(np.zeros((0, 3)))


def test_markdown_table_rows_from_curves_and_pairs():
    curve = Curve((1, 4, 16), None, np.array([0.1, 0.3, 0.5]), np.array([0.01, np.nan, 0.02]))
    table = reporting.markdown_table({"ce": curve}, [1, 16])
    assert table.splitlines() == ["| model | @1 | @16 |", "|---|---|---|", "| ce | 10.0 ± 1.0 | 50.0 ± 2.0 |"]
    pairs = reporting.markdown_table(
        {"cat": ([0.2, 0.4], [np.nan, 0.05])}, [1, 4], first="T", scale=1, digits=2
    )
    assert pairs.splitlines()[2] == "| cat | 0.20 | 0.40 ± 0.05 |"
    with pytest.raises(ValueError, match="has no budgets"):
        reporting.markdown_table({"ce": curve}, [2])


def test_curve_across_runs_and_saved_figure_names_its_command(tmp_path):
    curve = reporting.curve_across_runs([[0.1, 0.2], [0.3, 0.4]], [1, 2])
    np.testing.assert_allclose(curve.mean, [0.2, 0.3])
    fig = reporting.plot_scaling_curves(
        {"m": curve}, path=tmp_path / "a.png", command="python -m experiments.x"
    )
    assert fig.axes[0].get_xscale() == "log"
    assert b"made by: python -m experiments.x" in (tmp_path / "a.png").read_bytes()


def test_reports_are_written_by_process_zero_only(tmp_path, monkeypatch):
    import jax

    reporting.write_json(tmp_path / "a" / "r.json", {"b": 1, "a": 2})
    assert (tmp_path / "a" / "r.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    reporting.write_text(tmp_path / "t.md", "x")
    reporting.plot_scaling_curves(
        {"m": reporting.curve_across_runs([[0.1]], [1])}, path=tmp_path / "f.png", command="python -m x"
    )
    assert not (tmp_path / "t.md").exists() and not (tmp_path / "f.png").exists()
