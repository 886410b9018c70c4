"""The command-line scripts under scripts/: their pure parts, on tiny data."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import config, data, reporting

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def screen_script():
    return load_script("screen_exercise1")


@pytest.fixture(scope="module")
def tune_script():
    return load_script("tune_exercise1")


@pytest.fixture(scope="module")
def ratings_df() -> pd.DataFrame:
    """30 users with 20 to 40 ratings of 25 movies."""
    rng = np.random.default_rng(1)
    counts = rng.integers(20, 41, size=30)
    return pd.DataFrame(
        {
            "UserID": np.repeat(np.arange(30), counts),
            "MovieID": rng.integers(0, 25, size=counts.sum()),
            "Rating": rng.integers(1, 6, size=counts.sum()),
        }
    )


def test_screen_grid_varies_only_what_it_says(screen_script):
    grid = screen_script.GRID
    assert len(grid) == len(set(grid)) == 24
    assert config.SPLIT_ALONE in grid
    for run in grid:
        assert (run.server_lr, run.client_lr, run.batch_size) == (1.0, 0.5, 5)
        assert (run.recon_steps_max, run.post_recon_epochs, run.post_recon_steps_max) == (50, 1, 50)


def test_screen_ranks_runs_and_counts_diverged_seeds(screen_script, ratings_df):
    small = dataclasses.replace(config.SPLIT_ALONE, clients_per_round=8, num_rounds=3)
    diverging = dataclasses.replace(small, client_lr=1e4)
    movies_df = pd.DataFrame({"MovieID": np.arange(25), "Title": "", "Genres": ""})
    source = data.MovieLensSource(Path("."), kind="synthetic", description="test data")
    table = screen_script.screen([diverging, small], [0, 1], source, ratings_df, movies_df)
    assert list(table["changed from the split alone"]) == [
        "clients/round 8, rounds 3",
        "client lr 10000.0, clients/round 8, rounds 3",
    ]
    assert list(table["diverged"]) == ["0 of 2", "2 of 2"]
    first = table.iloc[0]
    assert first["client-rounds"] == 24
    assert (
        0
        < first["test accuracy (min)"]
        <= first["test accuracy (mean)"]
        <= first["test accuracy (max)"]
        < 1
    )
    assert (
        table.iloc[1]
        .drop(["changed from the split alone", "client-rounds", "diverged"])
        .isna()
        .all()
    )
    markdown = reporting.markdown_table(table).splitlines()
    assert len(markdown) == 4 and markdown[1].startswith("|---|---:|")
    assert markdown[3].endswith("| - | - | - | - | 2 of 2 |")


def test_tune_table_marks_diverged_runs(tune_script):
    table = pd.DataFrame(
        {
            "val_loss": [0.91234, np.nan],
            "val_accuracy": [0.41111, 0.0],
            "test_loss": [0.95, np.nan],
            "test_accuracy": [0.40004, 0.0],
            "minutes": [14.26, 3.0],
        },
        index=pd.Index(["split_alone", "recon_lr_0.5_server_lr_2"], name="run"),
    )
    lines = tune_script.tuning_markdown(table).splitlines()
    assert lines[0] == (
        "| run | changed from the split alone | val accuracy | test accuracy | val loss "
        "| test loss | minutes |"
    )
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|"
    assert lines[2] == (
        "| split_alone | (exercise 1's split, walkthrough's rates, 100 rounds) "
        "| 0.4111 | 0.4000 | 0.9123 | 0.9500 | 14.3 |"
    )
    assert lines[3] == (
        "| recon_lr_0.5_server_lr_2 | server lr 2.0, recon lr 0.5 "
        "| diverged | diverged | NaN | NaN | 3.0 |"
    )


# The one Markdown formatter (tutorial_utils.reporting), which the scripts and benchmarks use.
