"""PNG plots of a run: learning curves per stage and per-class lwlrap.

Figures are drawn on matplotlib's Agg canvas directly (object-oriented API, no pyplot), so
plotting needs no display and never changes the backend of the process that imports it (a
notebook keeps its inline backend).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from freesound_tf.extras import require


def _figure(figsize: tuple[float, float], ncols: int = 1):
    require("matplotlib", "run plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def plot_learning_curves(histories: dict[str, Path], out: Path) -> None:
    """Training loss and validation lwlrap per epoch, one line per stage/fold."""
    fig, (ax_loss, ax_score) = _figure((12, 4.5), ncols=2)
    for name, path in histories.items():
        if not path.exists():
            continue
        history = pd.read_csv(path)
        ax_loss.plot(history["epoch"], history["loss"], label=name)
        ax_score.plot(history["epoch"], history["val_lwlrap"], label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ax_score.set(xlabel="epoch", ylabel="lwlrap", title="Validation lwlrap (clip level)")
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_per_class(names: list[str], scores: np.ndarray, out: Path, title: str) -> None:
    """Horizontal bars of per-class lwlrap, worst class at the top."""
    order = np.argsort(scores)
    fig, ax = _figure((8, max(3.0, 0.22 * len(names) + 1)))
    ax.barh(np.arange(len(names)), scores[order], color="tab:blue")
    ax.set_yticks(np.arange(len(names)), [names[i] for i in order], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="lwlrap", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
