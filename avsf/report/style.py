"""One look for every avsf figure (study and search reports, bench), and the one figure saver.

Figures are `matplotlib.figure.Figure` objects made without pyplot, so nothing here (or in
the report modules) chooses a matplotlib backend or leaves figures open in a global registry;
the style is applied with `styled()` (an rc context: seaborn's whitegrid "paper" look, the
colour-blind palette, mathtext for "$P_d$"-style labels, embeddable PDF fonts) around making and
saving a figure. Accuracies are plotted in percent; axes that count things get integer ticks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
from matplotlib.figure import Figure

from avsf.io import atomic_savefig

FORMATS = ("png", "pdf")
DPI = 150


def palette(n: int) -> list[tuple[float, float, float]]:
    import seaborn as sns

    return list(sns.color_palette("colorblind", max(n, 3)))[: max(n, 1)]


def _rc() -> dict[str, Any]:
    import seaborn as sns
    from cycler import cycler

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    rc.update({
        "axes.prop_cycle": cycler(color=palette(10)),
        "mathtext.fontset": "dejavusans",
        "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by publishers
        "svg.fonttype": "none",
        "axes.titlesize": 10,
        "axes.titlelocation": "left",
        "figure.titlesize": 11,
        "legend.frameon": False,
    })
    return rc


@contextmanager
def styled() -> Iterator[None]:
    """Apply the avsf figure style while figures are made and saved (restored afterwards)."""
    with matplotlib.rc_context(_rc()):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (5.0, 3.4), **kw: Any):
    """(figure, axes array) without pyplot; call inside `styled()`."""
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_figure(fig: Figure, out_dir: str | Path, stem: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write `stem.png` and `stem.pdf` atomically (deterministic metadata); returns the paths."""
    paths = []
    with styled():  # drawing happens here: the style must hold while it does
        for ext in formats:
            path = Path(out_dir) / f"{stem}.{ext}"
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None} if ext == "png" else None
            atomic_savefig(fig, path, dpi=DPI, metadata=meta, bbox_inches="tight")  # long titles are never cut
            paths.append(path)
    return paths


def integer_ticks(axis: Any) -> None:
    """Whole numbers only (epochs, trial numbers)."""
    axis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def percent_label(name: str) -> str:
    return f"{name} (%)"
