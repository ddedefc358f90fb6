"""Matplotlib helpers for the result plots in assets/results: a headless figure, and a size-capped PNG."""
from __future__ import annotations

import io
from pathlib import Path

PLOT_MAX_BYTES = 60_000


def figure(title: str, xlabel: str, ylabel: str = "FID"):
    """A (fig, ax) pair on the Agg backend, titled, labelled and lightly gridded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def save_plot(fig, path: Path, max_bytes: int = PLOT_MAX_BYTES) -> Path:
    """Save a matplotlib figure as PNG within `max_bytes`, lowering the resolution as needed."""
    import matplotlib.pyplot as plt

    for dpi in (100, 80, 60, 45):
        data = io.BytesIO()
        fig.savefig(data, format="png", dpi=dpi, bbox_inches="tight")
        if data.tell() <= max_bytes:
            break
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.getvalue())
    return path
