"""Matplotlib helper for test-time scaling curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so the helper
works headless in CI and leaves a notebook's inline backend alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cat_jax.operators import Curve

__all__ = ["plot_scaling_curves"]


def plot_scaling_curves(
    curves: Mapping[str, Curve],
    *,
    ylabel: str = "score",
    title: str | None = None,
    path: str | None = None,
    scale: float | int = 1.0,
):
    """Plot several models' scaling curves (mean ± SE band) against ``k`` on a log2 axis.

    ``curves`` maps a label to a :class:`~cat_jax.operators.Curve` (e.g. from ``scaling_curve``); ``scale``
    multiplies values (100 for percent). Saves to ``path`` if given and returns the matplotlib ``Figure``.

    >>> import jax.numpy as jnp
    >>> from cat_jax.operators import pass_at_k, scaling_curve
    >>> c = scaling_curve(pass_at_k, jnp.array([[True, False, False, False], [True, True, False, False]]))
    >>> fig = plot_scaling_curves({"model": c}, ylabel="pass@k")
    >>> fig.axes[0].get_xscale()
    'log'
    """
    fig = Figure(figsize=(5.5, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, c in curves.items():
        ks = np.asarray(c.ks)
        mean = np.asarray(c.mean, dtype=np.float64) * scale
        se = np.nan_to_num(np.asarray(c.se, dtype=np.float64)) * scale
        (line,) = ax.plot(ks, mean, marker="o", markersize=3, label=label)
        ax.fill_between(ks, mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
