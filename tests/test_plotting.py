import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tutorial_utils import plotting
from tutorial_utils.plumbing import walkthrough


@pytest.fixture(autouse=True)
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200


def comparison_table(budgets: tuple[int, int]) -> pd.DataFrame:
    """A small table of ``experiments.compare_methods``' shape: two budgets, three methods,
    two solvers."""
    first, second = budgets
    one_solver = pd.DataFrame(
        {
            "method": ["FedRecon (stateless)"] * 2 + ["Stateful"] * 2 + ["Centralized (ALS)"],
            "rounds": pd.array([first, second, first, second, pd.NA], dtype="Int64"),
            "seen rmse": [2.0, 1.0, 3.0, 1.5, 0.9],
            "seen accuracy": [0.2, 0.4, 0.1, 0.3, 0.45],
            "unseen rmse": [2.1, 1.1, 3.8, 3.8, 0.95],
            "unseen accuracy": [0.2, 0.4, 0.0, 0.0, 0.44],
            "seen with stored embedding": [0.0, 0.0, 0.2, 0.5, 1.0],
            "unseen with stored embedding": [0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    ridge = one_solver.assign(solver="ridge", **{"unseen rmse": [2.0, 1.0, 1.2, 1.0, 0.9]})
    return pd.concat([one_solver.assign(solver="SGD"), ridge], ignore_index=True)


def test_every_figure_is_saved_as_png(output_dir):
    ratings = pd.Series([1, 3, 4, 4, 5, 5, 5])
    history = pd.DataFrame({"loss": [3.0, 2.0, 1.5], "rating_accuracy": [0.1, 0.2, 0.3]})
    plotting.rating_histogram(ratings, name="a")
    plotting.genre_counts_chart(["Drama|Comedy", "Drama", "Action|Sci-Fi"], name="b")
    plotting.examples_per_user(np.arange(1, 50), name="c")
    plotting.learning_curves(history, name="d")
    plotting.reconstruction_steps(
        pd.DataFrame(
            {
                "rounds": [1, 1, 3, 3],
                "steps": [0, 2, 0, 2],
                "rmse": [3.0, 2.0, 2.5, 1.0],
                "rating_accuracy": [0.0, 0.2, 0.1, 0.4],
            }
        ),
        name="e",
    )
    plotting.method_comparison(comparison_table(budgets=(1, 3)), name="f")
    for name in "abcdef":
        assert_png(output_dir / f"{name}.png")


def test_rating_histogram_counts_each_star(output_dir):
    fig = plotting.rating_histogram(pd.Series([1, 3, 4, 4, 5, 5, 5]), name="h")
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == [1, 0, 1, 2, 3]


def test_learning_curves_plot_training_and_validation(output_dir):
    history = pd.DataFrame(
        {
            "loss": [14.0, 6.0, 2.0, 1.0],
            "rating_accuracy": [0.0, 0.1, 0.3, 0.4],
            "val_loss": [np.nan, 5.0, np.nan, 1.1],
            "val_rating_accuracy": [np.nan, 0.2, np.nan, 0.38],
        },
        index=pd.RangeIndex(1, 5, name="round"),
    )
    fig = plotting.learning_curves(history, name="curves")
    assert_png(output_dir / "curves.png")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    assert loss_ax.get_ylabel() == "Loss (MSE, log scale)"  # the axis says it is logarithmic
    # Its ticks read as plain numbers (1, 10), not as 10^0 and 10^1.
    ticks = [
        t.get_text()
        for t in loss_ax.get_yticklabels() + loss_ax.get_yticklabels(minor=True)
        if t.get_text()
    ]
    assert "10" in ticks and "1" in ticks
    assert not any("times" in t or "^" in t for t in ticks), ticks
    assert acc_ax.get_ylabel() == "Rating accuracy"
    train_line, val_line = acc_ax.get_lines()
    assert train_line.get_xdata().tolist() == [1, 2, 3, 4]
    assert val_line.get_xdata().tolist() == [2, 4]
    assert val_line.get_ydata().tolist() == [0.2, 0.38]
    # Without validation columns: the training curves only.
    fig = plotting.learning_curves(history[["loss", "rating_accuracy"]], name="train_only")
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]


def test_learning_curves_overlay_a_reference_run(output_dir):
    history = pd.DataFrame(
        {"loss": [3.0, 2.0, 1.5], "rating_accuracy": [0.1, 0.2, 0.25]},
        index=pd.RangeIndex(1, 4, name="round"),
    )
    reference = walkthrough.training_history()
    fig = plotting.learning_curves(history, name="overlay", reference=reference)
    for ax, column in zip(fig.axes, ("loss", "rating_accuracy")):
        _, dashed = ax.get_lines()
        assert dashed.get_linestyle() == "--"
        assert dashed.get_label() == "walkthrough (printed)"
        assert dashed.get_xdata().tolist() == list(range(1, 21))
        assert dashed.get_ydata().tolist() == reference[column].tolist()


def test_learning_curves_default_name_size_and_callers_names(output_dir):
    history = pd.DataFrame(
        {"loss": [3.0, 2.0], "rating_accuracy": [0.1, 0.2]}, index=pd.RangeIndex(1, 3)
    )
    fig = plotting.learning_curves(history)
    assert_png(output_dir / "05_learning_curves.png")
    assert tuple(fig.get_size_inches()) == (11, 4) and len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "Rating accuracy"
    plotting.learning_curves(history, name="03_training_curves")
    assert_png(output_dir / "03_training_curves.png")


def test_learning_curves_plot_accuracy_of_other_models(output_dir):
    """A model that is not matrix factorization (EMNIST) reports ``accuracy``."""
    history = pd.DataFrame(
        {
            "loss": [2.3, 1.9, 1.2],
            "accuracy": [0.1, 0.3, 0.5],
            "val_loss": [np.nan, np.nan, 1.3],
            "val_accuracy": [np.nan, np.nan, 0.45],
        },
        index=pd.RangeIndex(1, 4, name="round"),
    )
    fig = plotting.learning_curves(history, name="emnist")
    assert_png(output_dir / "emnist.png")
    acc_ax = fig.axes[1]
    assert acc_ax.get_ylabel() == "Accuracy"
    train_line, val_line = acc_ax.get_lines()
    assert train_line.get_ydata().tolist() == [0.1, 0.3, 0.5]
    assert val_line.get_xdata().tolist() == [3] and val_line.get_ydata().tolist() == [0.45]


def test_genre_chart_lists_genres_most_common_first(output_dir):
    fig = plotting.genre_counts_chart(["Drama|Comedy", "Drama", "Action|Drama"], name="g")
    ax = fig.axes[0]
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    widths = [bar.get_width() for bar in ax.patches]
    assert labels[0] == "Drama" and widths[0] == 3 and sorted(widths, reverse=True) == widths
    assert {label: width for label, width in zip(labels, widths)} == {
        "Drama": 3,
        "Comedy": 1,
        "Action": 1,
    }
    assert_png(output_dir / "g.png")


def test_method_comparison_ticks_the_budgets(output_dir):
    fig = plotting.method_comparison(comparison_table(budgets=(5, 25)), name="m")
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [5, 25]
        labels = [tick.get_text() for tick in ax.get_xticklabels()]
        if ax.get_title().startswith("Seen"):  # the stateful model's stored share, as ticks
            assert labels == ["5\n(20% stored)", "25\n(50% stored)"]
        else:
            assert labels == ["5", "25"]
        assert ax.get_legend() is None and not ax.texts  # no labels over the markers
    # One legend for the four panels, below them: one line per method and solver.
    [legend] = fig.legends
    assert len(legend.get_texts()) == 6 and legend.get_texts()[0].get_fontsize() >= 10
    assert_png(output_dir / "m.png")


def test_reconstruction_steps_keep_their_real_spacing(output_dir):
    steps = [0, 1, 2, 5, 10, 20, 50]
    table = pd.DataFrame(
        {"rounds": 5, "steps": steps, "rmse": np.linspace(3, 1, 7), "rating_accuracy": 0.1}
    )
    fig = plotting.reconstruction_steps(table, name="s")
    for ax in fig.axes:
        assert ax.get_xscale() == "symlog" and list(ax.get_xticks()) == steps
        x = ax.lines[0].get_xdata()
        assert list(x) == steps  # plotted at the steps themselves, not at their ranks
        # On the log part, equal ratios take equal room: 5 to 50 as 2 to 20.
        position = ax.transData.transform([(s, 0) for s in (2, 5, 20, 50)])[:, 0]
        assert position[3] - position[1] == pytest.approx(position[2] - position[0], rel=1e-6)
        assert "log" in ax.get_xlabel()
    assert_png(output_dir / "s.png")


def test_a_log_axis_prints_no_warning_under_the_figure(tmp_path):
    """Colab's Matplotlib and pyparsing warn about deprecated pyparsing names when a log
    axis draws its tick labels; a learner must not see that under a figure."""
    code = (
        "import pandas as pd\n"
        "from tutorial_utils import plotting\n"
        "history = pd.DataFrame({'loss': [14.0, 6.0, 2.0], 'rating_accuracy': [0.0, 0.2, 0.3]},"
        " index=pd.RangeIndex(1, 4, name='round'))\n"
        "plotting.learning_curves(history, name='log_axis')\n"
    )
    result = subprocess.run(
        # Every warning shown once, as a notebook kernel shows pyparsing's.
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg", "FEDRECON_OUTPUT_DIR": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecated" not in result.stderr, result.stderr[-2000:]


def test_save_table_writes_csv_in_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path / "out"))
    table = pd.DataFrame({"a": [1, 2]})
    path = plotting.save_table(table, "t")
    assert path == tmp_path / "out" / "t.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path, index_col=0), table)
