"""One simulated run from a few settings, and the widget panel that retrains on each change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients, config
from tutorial_utils.simulation import simulator as sim
from tutorial_utils.studies import live

NUM_USERS, NUM_ITEMS = 80, 30
RUN = config.FedReconRun(
    recon_epochs=2,
    recon_steps_max=5,
    post_recon_steps_max=5,
    clients_per_round=10,
    num_rounds=12,
    num_latent_factors=3,
)
SETTINGS = config.LiveConfig(name="test", run=RUN, eval_every=4)


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    """80 users rating 15 to 30 of 30 items, ratings from a rank-2 model rounded to 1-5."""
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(NUM_USERS, 2)), rng.normal(size=(NUM_ITEMS, 2))
    rows = []
    for user in range(NUM_USERS):
        rated = rng.choice(NUM_ITEMS, size=rng.integers(15, NUM_ITEMS + 1), replace=False)
        scores = np.clip(np.rint(3 + users[user] @ items[rated].T), 1, 5)
        rows += [(user, item, score, 0) for item, score in zip(rated, scores)]
    return pd.DataFrame(rows, columns=["UserID", "MovieID", "Rating", "Timestamp"])


@pytest.fixture(scope="module")
def live_data(ratings) -> live.LiveData:
    return live.prepare(ratings, NUM_ITEMS, SETTINGS)


def test_prepare_packs_every_user_and_splits_them_as_user_split_does(ratings, live_data):
    users = clients.user_split(ratings, batch_size=RUN.batch_size, seed=SETTINGS.seed)
    split = (users.train_ids, users.val_ids, users.test_ids)
    assert (live_data.train_ids, live_data.val_ids, live_data.test_ids) == split
    assert sorted(live_data.packed.counts) == sorted(ratings.groupby("UserID").size())
    assert live_data.num_items == NUM_ITEMS


@pytest.mark.parametrize(("halves", "reshuffle_each_pass"), [("disjoint", False), ("shared", True)])
def test_train_once_is_the_simulator_with_the_chosen_halves(live_data, halves, reshuffle_each_pass):
    result = live.train_once(live_data, RUN, halves=halves, eval_every=4, seed=3)
    simulator = sim.FedReconSimulator(
        RUN, NUM_ITEMS, seed=3, reshuffle_each_pass=reshuffle_each_pass
    )
    sampler = clients.ClientSampler(live_data.train_ids, RUN.clients_per_round, seed=3)
    history = sim.train(
        simulator,
        live_data.packed,
        sampler,
        RUN.num_rounds,
        eval_client_ids=live_data.val_ids,
        eval_every=4,
        progress=False,
        seed=3,
    )
    pd.testing.assert_frame_equal(result.history, history)
    assert result.test == simulator.evaluate(live_data.packed, live_data.test_ids, seed=3)
    assert (result.run, result.halves) == (RUN, halves)
    assert result.seconds > 0


def test_the_halves_change_the_run(live_data):
    disjoint = live.train_once(live_data, RUN, halves="disjoint")
    shared = live.train_once(live_data, RUN, halves="shared")
    assert disjoint.test["rmse"] != shared.test["rmse"]


def test_train_once_repeats_and_learns(live_data):
    result = live.train_once(live_data, RUN, eval_every=4)
    again = live.train_once(live_data, RUN, eval_every=4)
    pd.testing.assert_frame_equal(result.history, again.history)
    assert result.test == again.test
    measured = result.history["val_loss"].dropna()
    assert list(measured.index) == [4, 8, 12]
    assert measured.iloc[-1] < measured.iloc[0]
    assert 0 < result.test["rmse"] and 0 <= result.test["rating_accuracy"] <= 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"halves": "both"}, "halves must be one of disjoint, shared, got 'both'"),
        ({"eval_every": 0}, "eval_every must be at least 1, got 0"),
    ],
)
def test_train_once_names_a_bad_setting(live_data, options, message):
    with pytest.raises(ValueError, match=message):
        live.train_once(live_data, RUN, **options)


def test_train_once_refuses_more_clients_than_training_users(live_data):
    run = dataclasses.replace(RUN, clients_per_round=len(live_data.train_ids) + 1)
    with pytest.raises(ValueError, match=f"only {len(live_data.train_ids)} training users"):
        live.train_once(live_data, run)


def test_describe_prints_the_test_scores(live_data):
    result = live.train_once(live_data, RUN)
    sentence = live.describe(result)
    assert f"test RMSE {result.test['rmse']:.3f}" in sentence
    assert f"rating accuracy {result.test['rating_accuracy']:.3f}" in sentence
    assert sentence.startswith("12 rounds of 10 clients, disjoint halves")


def test_learning_curves_are_saved(live_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    live.learning_curves(live.train_once(live_data, RUN))
    assert (tmp_path / f"{live.FIGURE_NAME}.png").stat().st_size > 0


def test_the_panel_retrains_on_every_change(live_data):
    pytest.importorskip("ipywidgets")
    box = live.panel(live_data, RUN, eval_every=4)
    assert [run["run"] for run in box.runs] == [1]
    assert box.runs[0]["changes"] == "(nothing)"
    assert box.controls["num_rounds"].value == RUN.num_rounds
    first_figure = bytes(box.children[2].value)
    box.controls["num_rounds"].value = 20
    box.controls["halves"].value = "shared"
    assert [run["changes"] for run in box.runs] == ["(nothing)", "rounds 20", "rounds 20"]
    assert [run["halves"] for run in box.runs] == ["disjoint", "disjoint", "shared"]
    expected = live.train_once(live_data, dataclasses.replace(RUN, num_rounds=20), eval_every=4)
    assert box.runs[1]["test RMSE"] == expected.test["rmse"]
    status, figure, table = box.children[1:]
    assert status.value.startswith("<b>Run 3</b>: 20 rounds of 10 clients, shared halves")
    assert table.value.split("<tbody>")[1].count("<tr>") == 3
    assert bytes(figure.value).startswith(b"\x89PNG") and bytes(figure.value) != first_figure
    box.controls["recon_steps_max"].value = None  # the dropdown's "no cap"
    assert box.runs[-1]["changes"] == "recon steps max None, rounds 20"


def test_the_panel_says_why_a_setting_cannot_train(live_data):
    pytest.importorskip("ipywidgets")
    box = live.panel(live_data, RUN, eval_every=4)
    box.controls["clients_per_round"].value = 100
    assert len(box.runs) == 1
    assert "Not trained" in box.children[1].value and "training users" in box.children[1].value


def test_the_panel_shows_a_first_result_without_training_it_again(live_data, monkeypatch):
    pytest.importorskip("ipywidgets")
    first = live.train_once(live_data, RUN, eval_every=4)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(live, "train_once", no_training)
    box = live.panel(live_data, RUN, eval_every=4, first=first)
    assert box.runs[0]["test RMSE"] == first.test["rmse"]
