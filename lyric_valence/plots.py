"""Figures written next to a trained model: predicted-vs-true scatter and loss curves (PNG)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_predictions(predicted, true, path: Path, title: str) -> None:
    """Scatter of predicted against true song valence, with the identity line."""
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(true, predicted, s=6, alpha=0.4)
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="true valence", ylabel="predicted valence", title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_losses(log_history: list[dict], path: Path) -> None:
    """Training loss per logging step and validation loss per evaluation, against the epoch."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train loss"), ("eval_loss", "validation loss (chunk MSE)")):
        points = [(entry["epoch"], entry[key]) for entry in log_history if key in entry]
        if points:
            axes.plot(*zip(*points, strict=True), marker="." if key == "eval_loss" else None, label=label)
    axes.set(xlabel="epoch", ylabel="MSE", yscale="log", title="Loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
