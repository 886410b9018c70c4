import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tutorial_utils import plotting


@pytest.fixture(autouse=True)
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200


def test_every_figure_is_saved_as_png(output_dir):
    ratings = pd.Series([1, 3, 4, 4, 5, 5, 5])
    history = pd.DataFrame({"loss": [3.0, 2.0, 1.5], "rating_accuracy": [0.1, 0.2, 0.3]})
    plotting.rating_histogram(ratings, name="a")
    plotting.genre_pie(["Drama|Comedy", "Drama", "Action|Sci-Fi"], name="b")
    plotting.examples_per_user(np.arange(1, 50), name="c")
    plotting.training_curves(history, name="d")
    for name in "abcd":
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
    train_line, val_line = acc_ax.get_lines()
    assert train_line.get_xdata().tolist() == [1, 2, 3, 4]
    assert val_line.get_xdata().tolist() == [2, 4]
    assert val_line.get_ydata().tolist() == [0.2, 0.38]
    # Without validation columns: the training curves only.
    fig = plotting.learning_curves(history[["loss", "rating_accuracy"]], name="train_only")
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]
