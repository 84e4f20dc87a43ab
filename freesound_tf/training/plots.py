"""PNG plots of a run: learning curves per stage and per-class lwlrap."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_learning_curves(histories: dict[str, Path], out: Path) -> None:
    """Training loss and validation lwlrap per epoch, one line per stage/fold."""
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.5))
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
    plt.close(fig)


def plot_per_class(names: list[str], scores: np.ndarray, out: Path, title: str) -> None:
    """Horizontal bars of per-class lwlrap, worst class at the top."""
    order = np.argsort(scores)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(names) + 1)))
    ax.barh(np.arange(len(names)), scores[order], color="tab:blue")
    ax.set_yticks(np.arange(len(names)), [names[i] for i in order], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="lwlrap", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
