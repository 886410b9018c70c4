"""The tutorial's figures: each is drawn, saved as PNG, and returned for display.

Figures are written to ``settings.output_dir()`` (``output/figures`` in a checkout, or
``FEDRECON_OUTPUT_DIR``), so a run of the notebooks leaves every plot on disk as well.
Each figure is closed in ``pyplot`` once saved, so Jupyter does not draw it by itself: a
notebook shows it by ending a cell with it, exactly once, and nothing stays open in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tutorial_utils import settings
from tutorial_utils.exploration import genre_counts


def save(fig: Figure, name: str) -> Path:
    """Saves ``fig`` as ``<output dir>/<name>.png`` and returns the path."""
    directory = settings.output_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def rating_histogram(ratings: pd.Series, name: str = "01_rating_histogram") -> Figure:
    """How often each rating from 1 to 5 was given."""
    fig = plt.figure(figsize=(6, 4))
    ax = fig.subplots()
    counts = ratings.value_counts().reindex(range(1, 6), fill_value=0)
    ax.bar(counts.index, counts.to_numpy(), width=0.8)
    ax.set(xticks=range(1, 6), xlabel="Rating", ylabel="Count", title="Ratings")
    save(fig, name)
    return fig


def genre_pie(movie_genres: Iterable[str], name: str = "01_genre_pie") -> Figure:
    """The share of each genre among the movies' genre labels."""
    counts = genre_counts(movie_genres).most_common()
    labels, values = zip(*counts)
    fig = plt.figure(figsize=(10, 7))
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab20"].colors
    wedges, _ = ax.pie(values, startangle=90, counterclock=False, colors=colors)
    total = sum(values)
    ax.legend(
        wedges,
        [f"{label} ({value}, {value / total:.0%})" for label, value in counts],
        title="Genre (labels, share)",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
    ax.set_title("MovieLens movie genres")
    save(fig, name)
    return fig


def examples_per_user(counts: Iterable[int], name: str = "01_examples_per_user") -> Figure:
    """Histogram of how many ratings each client holds."""
    fig = plt.figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist(np.asarray(list(counts)), bins=10)
    ax.set(xlabel="Number of examples", ylabel="Count", title="Examples per client")
    save(fig, name)
    return fig


def training_curves(history: pd.DataFrame, name: str = "03_training_curves") -> Figure:
    """Training loss and rating accuracy against the round number."""
    fig = plt.figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(history.index, history["loss"], marker="o")
    loss_ax.set(xlabel="Round", ylabel="Train loss (MSE)", title="Train loss")
    acc_ax.plot(history.index, history["rating_accuracy"], marker="o", color="tab:green")
    acc_ax.set(xlabel="Round", ylabel="Train rating accuracy", title="Train accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


def learning_curves(history: pd.DataFrame, name: str = "05_learning_curves") -> Figure:
    """Loss and rating accuracy per round, for training and (where measured) validation.

    ``history`` is indexed by round, with ``loss`` and ``rating_accuracy`` for every round
    and, optionally, ``val_loss`` and ``val_rating_accuracy`` for the rounds after which
    validation users were evaluated (NaN elsewhere). The loss axis is logarithmic, since
    the loss falls by an order of magnitude early on.
    """
    fig = plt.figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    panels = ((loss_ax, "loss", "Loss (MSE)"), (acc_ax, "rating_accuracy", "Rating accuracy"))
    for ax, column, label in panels:
        ax.plot(
            history.index,
            history[column],
            linewidth=1,
            alpha=0.8,
            label="training (sampled clients)",
        )
        val_column = f"val_{column}"
        if val_column in history:
            measured = history[val_column].dropna()
            ax.plot(
                measured.index,
                measured.to_numpy(),
                marker="o",
                markersize=4,
                color="tab:orange",
                label="validation users",
            )
        ax.set(xlabel="Round", ylabel=label, title=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_yscale("log")
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig
