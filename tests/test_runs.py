"""runs.train_and_score: validation measured during training (eval_every)."""

import types

import pandas as pd
import pytest

from tutorial_utils.simulation import runs

SOURCE = types.SimpleNamespace(kind="synthetic")


@pytest.mark.parametrize("engine", runs.ENGINES)
def test_eval_every_adds_validation_points_and_the_last_one_is_the_final_score(tiny, engine):
    ratings, movies, run, base = tiny
    result = runs.train_and_score(
        run,
        runs.MovieLensData(SOURCE, ratings, movies),
        engine=engine,
        base=base,
        eval_every=2,
        progress=False,
    )
    measured = result.history["val_rating_accuracy"].dropna()
    assert list(measured.index) == [2, 4, 5]  # every 2 rounds, and after the last one
    assert result.history["val_loss"].notna().sum() == 3
    assert measured.loc[5] == pytest.approx(result.validation["rating_accuracy"])
    assert result.history["val_loss"].loc[5] == pytest.approx(result.validation["loss"])


def test_simulator_evaluations_leave_its_training_unchanged(tiny):
    ratings, movies, run, base = tiny

    def train(eval_every):
        return runs.train_and_score(
            run,
            runs.MovieLensData(SOURCE, ratings, movies),
            engine="simulator",
            base=base,
            eval_every=eval_every,
            progress=False,
        )

    plain, evaluated = train(0), train(1)
    assert "val_loss" not in plain.history
    pd.testing.assert_series_equal(plain.history["loss"], evaluated.history["loss"])
    assert plain.test == evaluated.test
    assert evaluated.history["val_loss"].notna().all()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        *(
            ({"eval_every": value}, "eval_every must be a whole number of rounds")
            for value in (-1, 2.5, True, "10")
        ),
        (
            {"engine": "simulator", "split_fn": lambda dataset: (dataset, dataset)},
            "split_fn needs engine='TFF'",
        ),
    ],
)
def test_bad_arguments_are_named(tiny, bad, message):
    ratings, movies, run, base = tiny
    with pytest.raises(ValueError, match=message):
        runs.train_and_score(
            run, runs.MovieLensData(SOURCE, ratings, movies), base=base, progress=False, **bad
        )
