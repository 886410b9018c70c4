"""Every figure of the tutorial (drawn, saved as PNG, returned for display), and its tables.

Figures are written to ``settings.output_dir()`` (``output/figures`` in a checkout, or
``FEDRECON_OUTPUT_DIR``), so a run of the notebooks leaves every plot on disk as well.
Each figure is closed in ``pyplot`` once saved, so Jupyter does not draw it by itself: a
notebook shows it by ending a cell with it, exactly once, and nothing stays open in memory.

Tables go beside them: :func:`save_table` writes a notebook's table as CSV in
``settings.output_dir()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from tutorial_utils.data import genre_counts
from tutorial_utils.plumbing import settings


def save(fig: Figure, name: str) -> Path:
    """Saves ``fig`` as ``<output dir>/<name>.png`` and returns the path."""
    directory = settings.output_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _ticks_at(ax, values, labels: list[str]) -> None:
    """Puts the x axis' ticks at ``values`` only, labelled ``labels``, and turns off the
    minor ticks of both axes (a log axis would add unlabelled ones between them)."""
    ax.set_xticks(values, labels)
    ax.minorticks_off()


def rating_histogram(ratings: pd.Series, name: str = "01_rating_histogram") -> Figure:
    """How often each rating from 1 to 5 was given."""
    fig = plt.figure(figsize=(6, 4))
    ax = fig.subplots()
    counts = ratings.value_counts().reindex(range(1, 6), fill_value=0)
    ax.bar(counts.index, counts.to_numpy(), width=0.8)
    ax.set(xticks=range(1, 6), xlabel="Rating", ylabel="Number of ratings", title="Ratings")
    save(fig, name)
    return fig


def genre_counts_chart(movie_genres: Iterable[str], name: str = "01_genre_counts") -> Figure:
    """How many movies carry each genre label, as horizontal bars, most common on top."""
    counts = genre_counts(movie_genres).most_common()
    labels, values = zip(*counts)
    total = sum(values)
    fig = plt.figure(figsize=(8, 6))
    ax = fig.subplots()
    bars = ax.barh(range(len(counts)), values, color="tab:blue")
    ax.bar_label(bars, [f"{value} ({value / total:.0%})" for value in values], padding=3)
    ax.set_yticks(range(len(counts)), labels)
    ax.invert_yaxis()  # the most common genre first
    ax.margins(x=0.15)
    ax.set(xlabel="Movies with the label (share of all labels)", title="MovieLens movie genres")
    ax.grid(axis="x", alpha=0.3)
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


def examples_per_user(counts: Iterable[int], name: str = "01_examples_per_user") -> Figure:
    """Histogram of how many ratings each client holds."""
    fig = plt.figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist(np.asarray(list(counts)), bins=10)
    ax.set(
        xlabel="Ratings held by the client",
        ylabel="Number of clients",
        title="Examples per client",
    )
    save(fig, name)
    return fig


def learning_curves(
    history: pd.DataFrame,
    name: str = "05_learning_curves",
    reference: pd.DataFrame | None = None,
    reference_label: str = "walkthrough (printed)",
) -> Figure:
    """Loss and accuracy per round, for training and (where measured) validation.

    ``history`` is indexed by round (as ``rounds.run_rounds`` returns it), with ``loss``
    and an accuracy for every round: ``rating_accuracy`` for matrix factorization, or
    ``accuracy`` for other models (EMNIST). Where ``val_loss`` and ``val_<accuracy>``
    columns exist, the rounds after which validation users were evaluated (not NaN) are
    drawn as points. The loss axis is logarithmic, since the loss falls by an order of
    magnitude early on. Notebooks pass their own ``name``, e.g. ``"03_training_curves"``.
    ``reference``, a history of the same shape (``walkthrough.training_history()``), is
    drawn as a dashed line beside the training curve.
    """
    accuracy = "rating_accuracy" if "rating_accuracy" in history else "accuracy"
    accuracy_label = "Rating accuracy" if accuracy == "rating_accuracy" else "Accuracy"
    # A point per round when there are few rounds; a plain line for hundreds of them.
    marker = {"marker": "o", "markersize": 4} if len(history) <= 50 else {}
    fig = plt.figure(figsize=(11, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    panels = (
        (loss_ax, "loss", "Loss (MSE)", "Loss (MSE, log scale)"),
        (acc_ax, accuracy, accuracy_label, accuracy_label),
    )
    for ax, column, label, axis_label in panels:
        ax.plot(
            history.index,
            history[column],
            linewidth=1,
            alpha=0.8,
            label="training (sampled clients)",
            **marker,
        )
        if reference is not None:
            ax.plot(
                reference.index,
                reference[column],
                linestyle="--",
                linewidth=1,
                color="tab:gray",
                label=reference_label,
                **marker,
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
        ax.set(xlabel="Round", ylabel=axis_label, title=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_yscale("log")  # the y label says so
    # Plain tick labels (2, 5, 10) instead of 2x10^0.
    loss_ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    loss_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


# ---------------------------------------------------------------------------------------
# Notebook 06: beyond the tutorial
# ---------------------------------------------------------------------------------------


def reconstruction_steps(table: pd.DataFrame, name: str = "06_reconstruction_steps") -> Figure:
    """RMSE and rating accuracy of unseen users against reconstruction steps, one line per
    training budget (``experiments.by_reconstruction_steps``' table).

    The steps axis is symmetric-logarithmic (linear from 0 to 1, logarithmic above), so
    that 0 steps has a place and 1, 2, 5, ... 50 keep their real spacing.
    """
    fig = plt.figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    steps = sorted(table["steps"].unique())
    for budget, group in table.groupby("rounds"):
        for ax, column in zip(axes, ("rmse", "rating_accuracy")):
            ax.plot(group["steps"], group[column], marker="o", label=f"{budget} rounds")
    for ax, label in zip(axes, ("RMSE", "Rating accuracy")):
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        _ticks_at(ax, steps, [str(s) for s in steps])
        ax.set(
            xlabel="Reconstruction steps (symmetric log scale)",
            ylabel=label,
            title=f"Unseen users: {label if label == 'RMSE' else label.lower()}",
        )
        ax.grid(alpha=0.3)
        ax.legend(title="Trained for")
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


def method_comparison(table: pd.DataFrame, name: str = "06_stateless_vs_stateful") -> Figure:
    """RMSE and accuracy against training rounds, seen and unseen users in separate panels
    (``experiments.compare_methods``' table).

    One colour per method and one line style per solver (solid: SGD, dotted: ridge); the
    centralized reference (no rounds) is a horizontal line. One legend below the panels
    serves all four (they draw the same lines). On the seen users' panels, each budget's
    tick also gives the share of seen users with a stored stateful embedding.
    """
    fig = plt.figure(figsize=(12, 8.5))
    axes = fig.subplots(2, 2)
    federated = table[table["rounds"].notna()]
    reference = table[table["rounds"].isna()]
    methods = list(dict.fromkeys(table["method"]))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    solvers = list(dict.fromkeys(table["solver"]))
    styles = {s: style for s, style in zip(solvers, ("-", ":", "--", "-."))}
    markers = {s: marker for s, marker in zip(solvers, ("o", "s", "^", "D"))}
    budgets = sorted(federated["rounds"].astype(int).unique())
    stored = (
        federated[federated["method"].str.startswith("Stateful")]
        .groupby("rounds")["seen with stored embedding"]
        .first()
    )
    for col, group in enumerate(("seen", "unseen")):
        for row, (metric, label) in enumerate((("rmse", "RMSE"), ("accuracy", "rating accuracy"))):
            ax = axes[row, col]
            column = f"{group} {metric}"
            for (method, solver), runs in federated.groupby(["method", "solver"], sort=False):
                ax.plot(
                    runs["rounds"].astype(int),
                    runs[column],
                    color=colours[method],
                    linestyle=styles[solver],
                    marker=markers[solver],
                    label=f"{method}, {solver}",
                )
            for _, ref in reference.iterrows():
                ax.axhline(
                    ref[column],
                    color=colours[ref["method"]],
                    linestyle=styles[ref["solver"]],
                    label=f"{ref['method']}, {ref['solver']}",
                )
            ax.set(
                xscale="log",
                xlabel="Training rounds (log scale)",
                ylabel=label[0].upper() + label[1:],
                title=f"{group.capitalize()} users: {label}",
            )
            if group == "seen" and len(stored):
                ticks = [f"{b}\n({stored.get(b, 0):.0%} stored)" for b in budgets]
            else:
                ticks = [str(b) for b in budgets]
            _ticks_at(ax, budgets, ticks)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=10, frameon=False)
    fig.suptitle(
        "Solid lines: embeddings fitted by SGD at evaluation; dotted: by ridge (fold-in).\n"
        "Under the seen users' ticks: the share of them whose embedding the stateful model stored.",
        fontsize=10,
    )
    fig.set_layout_engine("tight", rect=(0, 0.07, 1, 1))
    save(fig, name)
    return fig


# ---------------------------------------------------------------------------------------
# Notebook 07: privacy
# ---------------------------------------------------------------------------------------


def attack_recovery(
    by_round_size: pd.DataFrame,
    by_noise: pd.DataFrame,
    noise_marks: dict[str, float] | None = None,
    name: str = "07_attack_recovery",
) -> Figure:
    """The share of post-reconstruction ratings the one-update attack recovers exactly
    (``exact``, against ``guess_4``: guessing 4 stars), left against the number of
    clients summed by secure aggregation, right against the DP noise multiplier on one
    clipped update (both on log axes); ``noise_marks`` labels noise multipliers."""
    fig = plt.figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        (by_round_size, "Clients summed in the round (log scale)", "Secure aggregation"),
        (by_noise, "Noise multiplier: noise std / clip (log scale)", "DP noise on one update"),
    )
    for ax, (table, xlabel, title) in zip(axes, panels):
        ax.plot(table.index, table["exact"], marker="o", label="the attack")
        ax.plot(table.index, table["guess_4"], "--", color="gray", label="guessing 4 stars")
        ax.set(xscale="log", xlabel=xlabel, title=title, ylim=(0, 1.05))
        ax.grid(alpha=0.3)
    for label, value in (noise_marks or {}).items():
        axes[1].axvline(value, color="black", linestyle=":", linewidth=1)
        axes[1].annotate(
            label, (value, 0.6), xytext=(-3, 0), textcoords="offset points", rotation=90,
            ha="right", va="center", fontsize=9,
        )  # fmt: skip
    _ticks_at(axes[0], by_round_size.index, [str(n) for n in by_round_size.index])
    axes[0].set_ylabel("Ratings recovered exactly (share)")
    axes[0].legend(fontsize=9)
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


def privacy_tradeoff(
    table: pd.DataFrame,
    delta: float,
    baseline_rmse: float | None = None,
    name: str = "07_privacy_tradeoff",
) -> Figure:
    """Test RMSE and rating accuracy against the epsilon reached at ``delta``, the RDP
    accountant's upper bound (``dp_training.privacy_tradeoff``' table, column ``epsilon``,
    log x axis); runs without noise are horizontal lines, and so is ``baseline_rmse`` (the
    RMSE of predicting the mean rating for everyone), on the RMSE panel."""
    fig = plt.figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    noisy = table[np.isfinite(table["epsilon"])]
    styles = (("--", "black"), (":", "tab:purple"), ("-.", "tab:green"), ((0, (5, 2)), "tab:red"))
    for ax, (column, label) in zip(
        axes, (("test_rmse", "RMSE"), ("test_accuracy", "Rating accuracy"))
    ):
        ax.plot(noisy["epsilon"], noisy[column], marker="o", label="clipping and noise")
        for (setting, row), (style, color) in zip(
            table[~np.isfinite(table["epsilon"])].iterrows(), styles
        ):
            ax.axhline(row[column], color=color, linestyle=style, linewidth=1.2, label=setting)
        if column == "test_rmse" and baseline_rmse is not None:
            ax.axhline(
                baseline_rmse,
                color="gray",
                linewidth=2.5,
                alpha=0.5,
                label="mean rating for everyone",
            )
        ax.set(
            xscale="log",
            xlabel=(
                f"Epsilon at delta = {delta:g}, RDP upper bound\n"
                "(log scale; more private to the left)"
            ),
            ylabel=label,
            title=f"Test users: {label if label == 'RMSE' else label.lower()}",
        )
        _ticks_at(ax, noisy["epsilon"], [f"{e:.2g}" for e in noisy["epsilon"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


def speed_scaling(scaling: dict, name: str = "05_speed_scaling") -> Figure:
    """Rounds per second against clients a round and against latent factors (the
    ``scaling`` section of the simulation benchmark's results), on log-log axes, with the
    line that linear growth from the smallest size would follow."""
    fig = plt.figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    panels = (
        ("clients", "clients_rounds_per_second", "Clients a round", "clients_factors", "factors"),
        ("factors", "factors_rounds_per_second", "Latent factors", "factors_clients", "clients"),
    )
    for ax, (size, speed, label, other, other_name) in zip(axes, panels):
        sizes, speeds = np.asarray(scaling[size], float), np.asarray(scaling[speed], float)
        ax.plot(sizes, speeds, marker="o", label="measured")
        ax.plot(sizes, speeds[0] * sizes[0] / sizes, "--", color="gray", label="linear growth")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=label,
            ylabel="Rounds per second",
            title=f"{label} ({scaling[other]} {other_name})",
        )
        _ticks_at(ax, sizes, [f"{s:.0f}" for s in sizes])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.set_layout_engine("tight")
    save(fig, name)
    return fig


# Tables


def save_table(table: pd.DataFrame, name: str) -> Path:
    """Saves ``table`` as ``<output dir>/<name>.csv`` and returns the path."""
    directory = settings.output_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.csv"
    table.to_csv(path)
    return path
