"""Figures through matplotlib's object API: a `Figure` on its own Agg canvas, never pyplot, so
drawing a figure neither switches nor touches the user's plotting backend (a notebook keeps its
own). matplotlib is imported here, where figures are made, not when the package is imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(**kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure(**kwargs)`` attached to a ``FigureCanvasAgg`` (PNG output)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | Path, **savefig: Any) -> Path:
    """Write ``figure`` to ``path`` (parents created), ``savefig`` passed on; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, **savefig)
    return path
