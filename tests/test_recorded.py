"""Exercise 1's recorded results (results/): read, checked, found by run, shown as tables."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import config
from tutorial_utils.exercises import recorded

TUNED = config.EXERCISES_FULL.tuned


def written(tmp_path, table: pd.DataFrame, index: bool = True, name: str = "table.csv"):
    """``table`` saved as CSV in ``tmp_path``; returns the path."""
    path = tmp_path / name
    table.to_csv(path, index=index)
    return path


@pytest.fixture(scope="module")
def tuning() -> pd.DataFrame:
    return recorded.load_tuning()


@pytest.fixture(scope="module")
def screen() -> pd.DataFrame:
    return recorded.load_screen()


def test_the_record_is_read_with_every_column_and_found_by_run(tuning, screen):
    assert recorded.available()
    assert tuning.index.name == "run" and list(tuning.columns) == list(recorded.TUNING_COLUMNS)
    assert list(screen.columns) == list(recorded.SCREEN_COLUMNS)
    split_alone = recorded.tuning_row(tuning, config.SPLIT_ALONE)
    assert split_alone.name == "split_alone"
    assert recorded.run_of(split_alone) == config.SPLIT_ALONE
    assert recorded.tuning_row(tuning, TUNED)["val_accuracy"] > split_alone["val_accuracy"]
    row = recorded.screen_row(screen, TUNED)
    assert row["client-rounds"] == TUNED.clients_per_round * TUNED.num_rounds
    assert recorded.screen_seeds(row) == (0, 5)
    assert recorded.screen_row(screen, config.SPLIT_ALONE)[recorded.CHANGED] == (
        recorded.SPLIT_ALONE_LABEL
    )


def test_the_checks_baseline_is_the_recorded_split_alone(tuning):
    split_alone = recorded.tuning_row(tuning, config.SPLIT_ALONE)
    assert recorded.SPLIT_ALONE_VALIDATION_ACCURACY == split_alone["val_accuracy"]


def test_the_checks_spread_is_the_recorded_split_alone_over_seeds():
    """The pass mark's constants are what scripts/seeds_exercise1.py recorded, and the mark
    lies above every seed of the split alone and below every seed of the tuned run that did
    not diverge."""
    exercises = pytest.importorskip("tutorial_utils.exercises.checks")
    summary = recorded.seeds_summary(recorded.load_seeds())
    split_alone = summary.loc[recorded.SPLIT_ALONE_NAME]
    assert recorded.SPLIT_ALONE_SIMULATED == {
        "seeds": split_alone["seeds"],
        "mean": round(split_alone["val accuracy (mean)"], 4),
        "min": split_alone["val accuracy (min)"],
        "max": split_alone["val accuracy (max)"],
    }
    assert split_alone["diverged"] == 0
    tuned = summary.loc[recorded.TUNED_NAME]
    assert tuned[recorded.CHANGED] == recorded.changed_from_split_alone(TUNED)
    assert split_alone["val accuracy (max)"] < exercises.TARGET_VALIDATION_ACCURACY
    assert exercises.TARGET_VALIDATION_ACCURACY < tuned["val accuracy (min)"]


def test_the_seeds_record_is_checked_and_summarized(tmp_path):
    seeds = recorded.load_seeds()
    assert list(seeds.columns) == list(recorded.SEEDS_COLUMNS)
    summary = recorded.seeds_summary(seeds)
    assert list(summary.index) == [recorded.SPLIT_ALONE_NAME, recorded.TUNED_NAME]
    tuned = seeds[seeds["run"] == recorded.TUNED_NAME]
    assert summary.loc[recorded.TUNED_NAME, "diverged"] == tuned["val_loss"].isna().sum()
    kept = tuned[tuned["val_loss"].notna()]
    assert summary.loc[recorded.TUNED_NAME, "val accuracy (min)"] == kept["val_accuracy"].min()
    assert "| split alone | 10 | 0 |" in recorded.seeds_markdown(seeds)
    twice = written(tmp_path, pd.concat([seeds, seeds.head(1)]), index=False)
    with pytest.raises(ValueError, match="same seed twice"):
        recorded.load_seeds(twice)
    other = written(tmp_path, seeds.assign(run="other"), index=False, name="other.csv")
    with pytest.raises(ValueError, match="unknown runs"):
        recorded.load_seeds(other)
    with pytest.raises(FileNotFoundError, match="seeds_exercise1.py"):
        recorded.load_seeds(tmp_path / "none.csv")


def test_a_run_not_in_the_record_is_named_in_the_error(tuning, screen):
    other = dataclasses.replace(config.SPLIT_ALONE, num_rounds=7)
    with pytest.raises(ValueError, match=r"exercise1_tuning\.csv has no run .*rounds 7"):
        recorded.tuning_row(tuning, other)
    with pytest.raises(ValueError, match=r"exercise1_screen\.csv has no candidate 'rounds 7'"):
        recorded.screen_row(screen, other)


def test_the_tuning_table_marks_diverged_runs():
    runs = {
        "split_alone": config.SPLIT_ALONE,
        "server_lr_2": dataclasses.replace(config.SPLIT_ALONE, server_lr=2.0),
    }
    table = pd.DataFrame([dataclasses.asdict(run) for run in runs.values()], index=list(runs))
    table = table.assign(
        val_loss=[0.91234, np.nan],
        val_accuracy=[0.41111, 0.0],
        test_loss=[0.95, np.nan],
        test_accuracy=[0.40004, 0.0],
        minutes=[14.26, 3.0],
    )
    table.index.name = "run"
    assert list(recorded.diverged(table)) == [False, True]
    assert recorded.tuning_markdown(table).splitlines() == [
        "| run | changed from the split alone | val accuracy | test accuracy | val loss "
        "| test loss | minutes |",
        "|---|---|---:|---:|---:|---:|---:|",
        "| split_alone | (nothing: the split alone) | 0.4111 | 0.4000 | 0.9123 | 0.9500 | 14.3 |",
        "| server_lr_2 | server lr 2.0 | diverged | diverged | NaN | NaN | 3.0 |",
    ]


def test_the_screen_shows_the_best_candidates_then_the_split_alone(screen):
    shown = recorded.screen_shown(screen, top=2)
    assert list(shown[recorded.CHANGED]) == [
        *screen.sort_values("val accuracy (mean)", ascending=False)[recorded.CHANGED][:2],
        recorded.SPLIT_ALONE_LABEL,
    ]
    everything = recorded.screen_shown(screen, top=len(screen))
    assert len(everything) == len(screen)  # the split alone is not shown twice
    lines = recorded.screen_markdown(screen, top=1).splitlines()
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---|"
    assert len(lines) == 4 and lines[3].startswith(f"| {recorded.SPLIT_ALONE_LABEL} | 5000 |")


def test_a_missing_file_is_named_with_the_script_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.csv does not exist: scripts/tune"):
        recorded.load_tuning(tmp_path / "nothing.csv")
    with pytest.raises(FileNotFoundError, match=r"nothing\.csv does not exist: scripts/screen"):
        recorded.load_screen(tmp_path / "nothing.csv")
    assert "results/" in recorded.missing_message()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.drop(columns="minutes"), r"has no column 'minutes'"),
        (lambda t: t.iloc[:0], r"has no rows"),
        (lambda t: t.assign(val_loss="low"), r"'val_loss' of run 'split_alone' is 'low'"),
        (lambda t: t.assign(batch_size=0), r"run 'split_alone' has impossible parameters"),
        (lambda t: t.assign(val_accuracy=1.5), r"val_accuracy of run 'split_alone' is not"),
        (lambda t: t.assign(test_accuracy=np.nan), r"has a test_loss but no test_accuracy"),
        (lambda t: t.assign(minutes=np.nan), r"run 'split_alone' has no time"),
        (lambda t: pd.concat([t, t.iloc[:1]]), r"the run 'split_alone' repeats"),
    ],
)
def test_a_malformed_tuning_file_is_named_with_its_problem(tuning, tmp_path, change, problem):
    path = written(tmp_path, change(tuning))
    with pytest.raises(ValueError, match=rf"table\.csv.*{problem}"):
        recorded.load_tuning(path)


def test_a_file_that_is_no_table_is_refused(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ValueError, match=r"table\.csv is not a table written by scripts/tune"):
        recorded.load_tuning(path)
    path.write_text("")
    with pytest.raises(ValueError, match=r"table\.csv is not a table written by scripts/screen"):
        recorded.load_screen(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.assign(diverged="two of five"), r"'diverged' of .* is 'two of five'"),
        (lambda t: t.assign(diverged="6 of 5"), r"not 'k of n'"),
        (lambda t: t.assign(**{"client-rounds": 0.5}), r"whole number of client updates"),
        (lambda t: t.assign(**{"test accuracy (min)": np.nan}), r"did not diverge, no accuracy"),
        (lambda t: t.assign(**{"test accuracy (max)": 2.0}), r"is not between 0 and 1"),
        (lambda t: t.assign(**{recorded.CHANGED: "same"}), r"needs its own"),
    ],
)
def test_a_malformed_screen_file_is_named_with_its_problem(screen, tmp_path, change, problem):
    path = written(tmp_path, change(screen), index=False)
    with pytest.raises(ValueError, match=rf"table\.csv.*{problem}"):
        recorded.load_screen(path)


def test_a_candidate_whose_every_seed_diverged_has_no_accuracies(screen, tmp_path):
    table = screen.copy()
    table.loc[0, list(recorded.SCREEN_ACCURACIES)] = np.nan
    table.loc[0, "diverged"] = "5 of 5"
    loaded = recorded.load_screen(written(tmp_path, table, index=False))
    assert (
        recorded.screen_markdown(loaded, top=len(loaded))
        .splitlines()[-1]
        .endswith("| - | - | - | - | 5 of 5 |")
    )


def test_the_scripts_write_into_the_record_by_default():
    parser = argparse.ArgumentParser()
    recorded.add_output_option(parser, "exercise1_screen")
    assert parser.parse_args([]).output == recorded.RESULTS_DIR
    assert parser.parse_args(["--output", "x"]).output.name == "x"
    assert "exercise1_screen.csv" in parser.format_help()
