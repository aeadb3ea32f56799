"""Reports of experiments: mean ± SE across runs, markdown tables, scaling-curve plots, figures naming their
command. One place for every experiment's report, so every table and plot of results/ reads the same way.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so the helpers
work headless in CI and leave a notebook's inline backend alone.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cat_jax.operators import Curve
from cat_jax.sharding import is_writer

__all__ = [
    "cell",
    "curve_across_runs",
    "draw_curves",
    "is_writer",
    "markdown_table",
    "mean_se",
    "new_figure",
    "plot_scaling_curves",
    "save_figure",
    "write_json",
    "write_text",
]


def mean_se(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (``ddof=1``) along ``axis`` (e.g. seeds); the SE is NaN for a single value.

    >>> mean_se([[1.0, 2.0], [3.0, 6.0]])
    (array([2., 4.]), array([1., 2.]))
    """
    values = np.moveaxis(np.asarray(values, np.float64), axis, 0)
    if len(values) < 1:
        raise ValueError(f"mean_se needs at least one value along axis {axis}, got shape {values.shape}")
    if len(values) == 1:
        return values[0], np.full(values.shape[1:], np.nan)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))


def cell(mean: Any, se: Any, *, scale: float | int = 100.0, digits: int = 1) -> str:
    """``"mean ± se"`` scaled (percent by default); the mean alone when the SE is None or not finite.

    >>> cell(0.1234, 0.005), cell(2.5, None, scale=1, digits=2)
    ('12.3 ± 0.5', '2.50')
    """
    m = float(mean) * scale
    if se is None or not np.isfinite(se):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {float(se) * scale:.{digits}f}"


def markdown_table(
    rows: Mapping[str, Curve | tuple[Any, Any]],
    ks: Sequence[int | float],
    *,
    first: str = "model",
    prefix: str = "@",
    scale: float | int = 100.0,
    digits: int = 1,
) -> str:
    """One row per model, one column per budget ``k``, cells ``mean ± SE`` (in percent by default).

    A row is a :class:`~cat_jax.operators.Curve` (its values at ``ks`` are looked up; a budget it lacks is a
    ``ValueError``) or a ``(mean, se)`` pair of sequences aligned with ``ks``; with such pairs the columns may
    be any values (temperatures, steps), headed ``prefix + str(value)``.
    """
    lines = [f"| {first} | " + " | ".join(f"{prefix}{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for name, row in rows.items():
        if isinstance(row, Curve):
            index = {int(k): i for i, k in enumerate(row.ks)}
            if missing := [int(k) for k in ks if int(k) not in index]:
                raise ValueError(f"curve {name!r} has no budgets {missing}; it has ks={list(row.ks)}")
            mean = [float(row.mean[index[int(k)]]) for k in ks]
            se = [float(row.se[index[int(k)]]) for k in ks]
        else:
            mean, se = row
            if len(mean) != len(ks) or len(se) != len(ks):
                raise ValueError(
                    f"row {name!r} has {len(mean)} means and {len(se)} SEs for {len(ks)} budgets"
                )
        cells = (cell(m, s, scale=scale, digits=digits) for m, s in zip(mean, se, strict=True))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curve_across_runs(per_run: Any, ks: Sequence[int]) -> Curve:
    """A :class:`~cat_jax.operators.Curve` with mean and SE across runs (seeds) of per-run means ``[K]``."""
    values = np.asarray(per_run, np.float64)
    mean, se = mean_se(values)
    return Curve(tuple(int(k) for k in ks), values, mean, se)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` (a report: table.md, ...) from process 0 only, creating parent folders."""
    path = pathlib.Path(path)
    if is_writer():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def write_json(path: str | os.PathLike, payload: Any) -> pathlib.Path:
    """Write ``payload`` as indented JSON, keys sorted (stable diffs of results/), from process 0 only."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def new_figure(figsize: tuple[float, float] = (5.5, 3.8)) -> Figure:
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, command: str | None = None, *, dpi: int = 120) -> None:
    """Save ``fig`` as PNG naming the command that regenerates it in its metadata (process 0 only)."""
    if is_writer():
        metadata = {"Description": f"made by: {command}"} if command else None
        fig.savefig(path, dpi=dpi, metadata=metadata)


def draw_curves(
    ax, curves: Mapping[str, Curve], *, scale: float | int = 1.0, dashed: Sequence[str] = ()
) -> None:
    """Each curve's mean against ``k`` on a log2 axis with a ± SE band; labels in ``dashed`` drawn dashed."""
    for label, c in curves.items():
        ks = np.asarray(c.ks)
        mean = np.asarray(c.mean, dtype=np.float64) * scale
        se = np.nan_to_num(np.asarray(c.se, dtype=np.float64)) * scale
        (line,) = ax.plot(ks, mean, "--" if label in dashed else "-", marker="o", markersize=3, label=label)
        ax.fill_between(ks, mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.grid(True, alpha=0.3)


def plot_scaling_curves(
    curves: Mapping[str, Curve],
    *,
    ylabel: str = "score",
    title: str | None = None,
    path: str | os.PathLike | None = None,
    scale: float | int = 1.0,
    command: str | None = None,
) -> Figure:
    """Plot several models' scaling curves (mean ± SE band) against ``k`` on a log2 axis.

    ``curves`` maps a label to a :class:`~cat_jax.operators.Curve` (e.g. from ``scaling_curve``); ``scale``
    multiplies values (100 for percent). Saves to ``path`` if given (with ``command`` in the PNG metadata when
    given) and returns the matplotlib ``Figure``.

    >>> import jax.numpy as jnp
    >>> from cat_jax.operators import pass_at_k, scaling_curve
    >>> c = scaling_curve(pass_at_k, jnp.array([[True, False, False, False], [True, True, False, False]]))
    >>> fig = plot_scaling_curves({"model": c}, ylabel="pass@k")
    >>> fig.axes[0].get_xscale()
    'log'
    """
    fig = new_figure()
    ax = fig.add_subplot()
    draw_curves(ax, curves, scale=scale)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, command)
    return fig
