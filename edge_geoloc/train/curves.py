"""Training curves: loss and recall per epoch, validation towns beside the monitored unseen towns.

A model that memorizes shows here first: its validation recall (towns held out of training)
stalls or falls while the loss keeps dropping. Written beside ``metrics.csv`` after every epoch.
"""

from __future__ import annotations

from pathlib import Path

CURVES = (
    ("R@1", "val R@1"),
    ("R@1%", "val R@1%"),
    ("monitor_R@1", "unseen towns R@1"),
    ("monitor_R@1%", "unseen towns R@1%"),
)


def plot_curves(metrics: list[dict], path: str | Path) -> None:
    """Loss (left) and recall (right) against the epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [m["loss"] for m in metrics], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in CURVES:
        if any(key in m for m in metrics):
            ax_rec.plot(
                [m["epoch"] for m in metrics if key in m],
                [m[key] for m in metrics if key in m],
                marker=".",
                label=label,
            )
    ax_rec.set(xlabel="epoch", ylabel="%", title="recall")
    ax_rec.legend(fontsize=8)
    ax_rec.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
