"""The command-line scripts under scripts/: their pure parts, on tiny data."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import config, data
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import markdown
from tutorial_utils.simulation import runs

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


@pytest.fixture(scope="module")
def seeds_script():
    return load_script("seeds_exercise1")


def test_the_seeds_script_measures_the_split_alone_and_the_tuned_run(seeds_script, ratings_df):
    assert seeds_script.runs_to_measure() == {
        recorded.SPLIT_ALONE_NAME: config.SPLIT_ALONE,
        recorded.TUNED_NAME: config.EXERCISES_FULL.tuned,
    }
    small = dataclasses.replace(config.SPLIT_ALONE, clients_per_round=8, num_rounds=3)
    movies_df = pd.DataFrame({"MovieID": np.arange(25), "Title": "", "Genres": ""})
    source = data.MovieLensSource(Path("."), kind="synthetic", description="test data")
    movielens = runs.MovieLensData(source, ratings_df, movies_df)
    table = seeds_script.measure({"split alone": small}, [0, 1], movielens)
    assert list(table.columns) == list(recorded.SEEDS_COLUMNS)
    assert list(table["seed"]) == [0, 1]
    assert table["val_accuracy"].between(0, 1).all()
    assert table.loc[0, "val_loss"] != table.loc[1, "val_loss"]  # the seed matters


def test_the_recorded_seeds_are_the_scripts_runs(seeds_script):
    table = recorded.load_seeds()
    for name, run in seeds_script.runs_to_measure().items():
        rows = table[table["run"] == name]
        assert list(rows["seed"]) == list(range(len(rows))), name
        assert set(rows[recorded.CHANGED]) == {recorded.changed_from_split_alone(run)}


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
    movielens = runs.MovieLensData(source, ratings_df, movies_df)
    table = screen_script.screen([diverging, small], [0, 1], movielens)
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
    lines = markdown.markdown_table(table).splitlines()
    assert len(lines) == 4 and lines[1].startswith("|---|---:|")
    assert lines[3].endswith("| - | - | - | - | 2 of 2 |")


def test_the_scripts_runs_are_the_recorded_ones(screen_script, tune_script):
    """The record in results/ holds every TFF run of the tuning script, by name and with the
    same parameters, and the screen's rows are candidates of its grid with their budget."""
    tuning = recorded.load_tuning()
    assert list(tuning.index) == list(tune_script.RUNS)
    for name, run in tune_script.RUNS.items():
        assert recorded.run_of(tuning.loc[name]) == run, name
    grid = {recorded.changed_from_split_alone(run): run for run in screen_script.GRID}
    for _, row in recorded.load_screen().iterrows():
        run = grid[row[recorded.CHANGED]]
        assert row["client-rounds"] == run.clients_per_round * run.num_rounds


def test_the_tuning_script_resumes_from_its_record(tune_script, tmp_path, monkeypatch, capsys):
    """Runs already in the script's CSV are skipped, so a rerun over a complete record
    trains nothing and leaves it as it was (the CSV is results/ unless --output says)."""
    record = tmp_path / "exercise1_tuning.csv"
    shutil.copy(recorded.TUNING_FILE, record)
    source = data.MovieLensSource(Path("."), kind="synthetic", description="test data")
    monkeypatch.setattr(data, "find_movielens", lambda: source)
    monkeypatch.setattr(data, "load_movielens", lambda _: (None, None))
    monkeypatch.setattr(runs, "train_and_score", lambda *a, **k: pytest.fail("trained a run"))
    assert tune_script.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in tune_script.RUNS:
        assert f"{name}: already in {record}, skipped" in out
    assert recorded.tuning_markdown(recorded.load_tuning()) in out
    assert record.read_bytes() == recorded.TUNING_FILE.read_bytes()


# The one Markdown formatter (tutorial_utils.plotting), which the scripts and benchmarks use.
