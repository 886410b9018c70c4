"""Notebook 06's data splits, runs, tables and figures, on a tiny data set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients, config, plotting
from tutorial_utils.clients import DatasetSplit
from tutorial_utils.simulation import simulator
from tutorial_utils.simulation.batches import PackedClients, PhaseBatches
from tutorial_utils.studies import baselines, experiments, recommend

NUM_USERS, NUM_ITEMS = 40, 50


@pytest.fixture
def packed() -> PackedClients:
    """40 users, each rating 12-40 distinct movies."""
    rng = np.random.default_rng(0)
    rated = [rng.choice(NUM_ITEMS, rng.integers(12, 41), replace=False) for _ in range(NUM_USERS)]
    return PackedClients(
        range(NUM_USERS), rated, [rng.integers(1, 6, len(r)).astype(np.float32) for r in rated]
    )


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def user_ratings(users: PackedClients, client_id: int) -> set:
    row = users.rows([client_id])[0]
    count = users.counts[row]
    return set(zip(users.items[row, :count].tolist(), users.ratings[row, :count].tolist()))


def phase_pairs(phase: PhaseBatches, c: int) -> list:
    return list(
        zip(phase.items[c][phase.mask[c]].tolist(), phase.ratings[c][phase.mask[c]].tolist())
    )


def test_configuration_follows_the_setting(monkeypatch):
    """Notebook 06's settings (now ``config.beyond()``): the paper's splits, the steps swept."""
    monkeypatch.setenv("FEDRECON_CONFIG", "smoke")
    assert config.beyond() is config.BEYOND_SMOKE
    monkeypatch.setenv("FEDRECON_CONFIG", "full")
    assert config.beyond() is config.BEYOND_FULL
    assert config.BEYOND_FULL.reconstruction_steps == (0, 1, 2, 5, 10, 20, 50)
    for cfg in (config.BEYOND_FULL, config.BEYOND_SMOKE):
        assert cfg.run.train_split == DatasetSplit(
            recon_epochs=5, recon_steps_max=50, post_recon_steps_max=50
        )
        assert cfg.run.eval_split == DatasetSplit(recon_epochs=5, recon_steps_max=50)


def test_hold_out_ratings_splits_each_user(packed):
    seen = experiments.hold_out_ratings(packed, [3, 5, 8], fraction=0.25, seed=0)
    for user in (3, 5, 8):
        fit, held = user_ratings(seen.fit, user), user_ratings(seen.held_out, user)
        assert not fit & held and fit | held == user_ratings(packed, user)
        assert len(held) == round(0.25 * len(user_ratings(packed, user)))
    one = PackedClients([0], [np.array([1])], [np.array([5.0], np.float32)])
    with pytest.raises(ValueError, match="fewer than 2"):
        experiments.hold_out_ratings(one, [0], 0.2, 0)


def test_seen_batches_reconstruct_on_training_ratings_and_measure_held_out_ones(packed):
    seen = experiments.hold_out_ratings(packed, range(10), 0.2, seed=0)
    split = config.BEYOND_FULL.run.eval_split
    batches = experiments.seen_batches(seen, [2, 4], split, 5, seed=1)
    for c, user in enumerate((2, 4)):
        assert set(phase_pairs(batches.recon, c)) == user_ratings(seen.fit, user)
        held = phase_pairs(batches.post_recon, c)
        assert sorted(held) == sorted(user_ratings(seen.held_out, user))  # each exactly once


def test_reconstruction_steps_change_only_the_reconstruction(packed):
    def batches_of(split):
        return experiments.unseen_batches(packed, [0, 1, 2], split, 5, seed=4)

    evaluated = None
    for steps in (0, 1, 3, 12):
        batches = experiments.with_reconstruction_steps(batches_of, steps, 5, seed=4)
        steps_taken = batches.recon.mask.any(axis=2).sum(axis=1)
        assert steps_taken.tolist() == [steps] * 3
        post = [phase_pairs(batches.post_recon, c) for c in range(3)]
        assert evaluated is None or post == evaluated
        evaluated = post
        for c in range(3):  # the halves stay disjoint
            assert not set(phase_pairs(batches.recon, c)) & set(post[c])


def small_config() -> config.BeyondConfig:
    return config.BeyondConfig(
        name="test",
        max_clients=None,
        run=dataclasses.replace(
            config.BEYOND_FULL.run, num_latent_factors=4, clients_per_round=5, num_rounds=3
        ),
        budgets=(1, 3),
        reconstruction_steps=(0, 2),
        als_iterations=2,
    )


def test_runs_tables_and_figures(packed, output_dir, capsys):
    cfg = small_config()
    train_ids, test_ids = list(range(30)), list(range(30, 40))
    seen = experiments.hold_out_ratings(packed, train_ids, cfg.held_out_fraction, 0)
    fedrecon = experiments.train_with_checkpoints(
        simulator.FedReconSimulator(cfg.run, NUM_ITEMS, seed=0, reshuffle_each_pass=False),
        seen.fit,
        clients.ClientSampler(train_ids, 5, seed=0),
        cfg.budgets,
        "FedRecon",
    )
    stateful = experiments.train_with_checkpoints(
        baselines.StatefulSimulator(cfg.run, NUM_ITEMS, NUM_USERS, seed=0),
        seen.fit,
        clients.ClientSampler(train_ids, 5, seed=0),
        cfg.budgets,
        "Stateful",
    )
    assert "FedRecon,    3 rounds" in capsys.readouterr().out
    # Snapshots do not change with further training.
    assert not np.array_equal(fedrecon[1].item_matrix, fedrecon[3].item_matrix)
    assert stateful[1].trained.sum() == 5 and stateful[3].trained.sum() > 5

    steps = experiments.by_reconstruction_steps(cfg, fedrecon, packed, test_ids, seed=0)
    assert steps[["rounds", "steps"]].values.tolist() == [[1, 0], [1, 2], [3, 0], [3, 2]]
    centralized = baselines.centralized_als(seen.fit, NUM_ITEMS, 4, iterations=2)
    methods = experiments.Methods(fedrecon, stateful, centralized)
    users = experiments.ScoredUsers(seen, train_ids[:10], packed, test_ids)
    table = experiments.compare_methods(cfg, methods, users, seed=0)
    fed, state, als = experiments.FEDRECON, experiments.STATEFUL, experiments.CENTRALIZED
    assert table["method"].tolist() == [fed] * 4 + [state] * 4 + [als] * 2
    assert table["solver"].tolist() == (["SGD"] * 2 + ["ridge"] * 2) * 2 + ["SGD", "ridge"]
    assert table["rounds"].tolist()[:8] == [1, 3] * 4 and table["rounds"].iloc[8:].isna().all()
    stateful_rows = table[table["method"] == state]
    assert (stateful_rows["unseen with stored embedding"] == 0).all()
    assert stateful_rows["seen with stored embedding"].tolist() == [
        stateful[b].trained[:10].mean() for b in (1, 3, 1, 3)
    ]
    # Every method, each solver, on the same unseen half: the ridge rows are the fold-in,
    # the SGD rows FedRecon's reconstruction from the same initial draw.
    unseen = experiments.unseen_batches(packed, test_ids, cfg.run.eval_split, 5, 0)
    initial = np.random.default_rng(0).uniform(-0.05, 0.05, (len(test_ids), 4))
    models = {  # each method's last model: its rows are the last of its solver's rows
        fed: fedrecon[3].item_matrix,
        state: stateful[3].item_matrix,
        als: centralized[1],
    }
    for method, item_matrix in models.items():
        expected = {
            "ridge": baselines.fold_in(item_matrix, unseen.recon, 0.1),
            "SGD": recommend.reconstruct_embeddings(item_matrix, unseen.recon, initial, 0.1),
        }
        for solver, users in expected.items():
            rows = table[(table["method"] == method) & (table["solver"] == solver)]
            row = rows.iloc[-1]
            want = baselines.phase_metrics(item_matrix, users, unseen.post_recon)
            assert row["unseen rmse"] == pytest.approx(want["rmse"], rel=1e-5)
            assert row["unseen accuracy"] == pytest.approx(want["rating_accuracy"])
    # FedRecon's SGD rows are what its own evaluation measures.
    own = fedrecon[3].evaluate_batches(unseen, np.random.default_rng(0))
    row = table[(table["method"] == fed) & (table["solver"] == "SGD")].iloc[-1]
    assert row["unseen rmse"] == pytest.approx(own["rmse"], rel=1e-4)
    no_embedding = baselines.phase_metrics(
        stateful[3].item_matrix, stateful[3].embeddings(test_ids, 0), unseen.post_recon
    )
    assert stateful_rows["unseen rmse"].max() < no_embedding["rmse"]

    plotting.reconstruction_steps(steps)
    plotting.method_comparison(table)
    plotting.save_table(table, "comparison")
    assert {p.name for p in output_dir.iterdir()} == {
        "06_reconstruction_steps.png",
        "06_stateless_vs_stateful.png",
        "comparison.csv",
    }
    assert len(pd.read_csv(output_dir / "comparison.csv")) == len(table)


def test_snapshots_are_independent_copies(packed):
    """Both simulators' snapshot(): same model now, unchanged by further training."""
    run = small_config().run
    for model in (
        simulator.FedReconSimulator(run, NUM_ITEMS, seed=0, reshuffle_each_pass=False),
        baselines.StatefulSimulator(run, NUM_ITEMS, NUM_USERS, seed=0),
    ):
        model.run_round(packed, [0, 1, 2])
        copy = model.snapshot()
        before = copy.item_matrix.copy()
        np.testing.assert_array_equal(before, model.item_matrix)
        model.run_round(packed, [3, 4, 5])
        np.testing.assert_array_equal(copy.item_matrix, before)
        assert not np.array_equal(model.item_matrix, before)


def liked_in_top(scores, excluded_movies, liked_movies, n):
    """Plain reference: the number of liked movies among the n best not excluded."""
    ranked = sorted(
        (m for m in range(NUM_ITEMS) if m not in excluded_movies), key=lambda m: (-scores[m], m)
    )
    return len(set(ranked[:n]) & liked_movies)


def test_compare_recommendations_against_plain_references(packed):
    cfg = dataclasses.replace(small_config(), num_recommendations=5)
    train_ids, test_ids = list(range(30)), list(range(30, 40))
    seen = experiments.hold_out_ratings(packed, train_ids, 0.3, 0)
    fedrecon = simulator.FedReconSimulator(
        cfg.run, NUM_ITEMS, seed=0, reshuffle_each_pass=False, user_init_range=(0.1, 0.1)
    )
    stateful = baselines.StatefulSimulator(cfg.run, NUM_ITEMS, NUM_USERS, seed=0)
    for first in range(0, 30, 5):
        fedrecon.run_round(seen.fit, train_ids[first : first + 5])
    stateful.run_round(seen.fit, train_ids[:5])  # seen users 5-9 were never sampled
    centralized = baselines.centralized_als(seen.fit, NUM_ITEMS, 4, iterations=2)
    seen_ids = train_ids[:10]
    table = experiments.compare_recommendations(
        cfg,
        experiments.Methods(fedrecon, stateful, centralized),
        experiments.ScoredUsers(seen, seen_ids, packed, test_ids),
        seed=0,
    )
    methods = [
        (experiments.FEDRECON, "SGD"),
        (experiments.STATEFUL, "SGD"),
        (experiments.CENTRALIZED, "SGD"),
        (experiments.FEDRECON, "ridge"),
        (experiments.STATEFUL, "ridge"),
        (experiments.CENTRALIZED, "ridge"),
        (experiments.POPULAR, "-"),
    ]
    assert list(zip(table["method"], table["solver"])) == methods * 2
    assert table["users"].tolist() == ["seen"] * 7 + ["unseen"] * 7

    # Most popular, by hand: movies ranked by their number of training ratings.
    popularity = np.zeros(NUM_ITEMS)
    for user in train_ids:
        for movie in {m for m, _ in user_ratings(seen.fit, user)}:
            popularity[movie] += 1
    unseen = experiments.unseen_batches(packed, test_ids, cfg.run.eval_split, 5, 0)
    hits = []
    for c in range(len(test_ids)):
        excluded = {m for m, _ in phase_pairs(unseen.recon, c)}
        liked = {m for m, r in phase_pairs(unseen.post_recon, c) if r >= 4} - excluded
        if liked:
            hits.append(liked_in_top(popularity, excluded, liked, 5))
    row = table[(table["method"] == experiments.POPULAR) & (table["users"] == "unseen")].iloc[0]
    assert row["users with a liked movie"] == len(hits)
    assert row["hit rate"] == pytest.approx(np.mean(np.array(hits) > 0))
    assert row["precision"] == pytest.approx(np.mean(hits) / 5)

    # FedRecon's lists come from the embeddings its evaluation measures.
    seen_data = experiments.seen_batches(seen, seen_ids, cfg.run.eval_split, 5, 0)
    users = experiments.method_embeddings(cfg, fedrecon, seen_ids, seen_data, 0)
    measured = baselines.phase_metrics(fedrecon.item_matrix, users, seen_data.post_recon)
    assert measured["rmse"] == pytest.approx(fedrecon.evaluate_batches(seen_data)["rmse"], 1e-5)
    hits = []
    for c, user in enumerate(seen_ids):
        excluded = {m for m, _ in user_ratings(seen.fit, user)}
        liked = {m for m, r in user_ratings(seen.held_out, user) if r >= 4} - excluded
        if liked:
            hits.append(liked_in_top(fedrecon.item_matrix @ users[c], excluded, liked, 5))
    chosen = (table["method"] == experiments.FEDRECON) & (table["solver"] == "SGD")
    row = table[chosen & (table["users"] == "seen")].iloc[0]
    assert row["hit rate"] == pytest.approx(np.mean(np.array(hits) > 0))
    assert row["precision"] == pytest.approx(np.mean(hits) / 5)
    assert ((table["list overlap"] >= 0) & (table["list overlap"] <= 1)).all()


def test_method_embeddings_of_each_kind_of_model(packed):
    cfg = small_config()
    seen = experiments.hold_out_ratings(packed, range(20), 0.2, 0)
    stateful = baselines.StatefulSimulator(cfg.run, NUM_ITEMS, NUM_USERS, seed=0)
    stateful.run_round(seen.fit, [0, 1])
    data = experiments.seen_batches(seen, [0, 1, 2], cfg.run.eval_split, 5, 0)
    ridge = experiments.RIDGE
    users = experiments.method_embeddings(cfg, stateful, [0, 1, 2], data, 0, solver=ridge)
    np.testing.assert_array_equal(users[:2], stateful.user_embeddings[:2])
    item_matrix = stateful.item_matrix
    folded = baselines.fold_in(item_matrix, data.recon, cfg.als_regularization)
    np.testing.assert_allclose(users[2], folded[2], rtol=1e-6)
    np.testing.assert_array_equal(
        experiments.method_embeddings(cfg, item_matrix, [0, 1, 2], data, 0, solver=ridge), folded
    )
    # SGD (the default): FedRecon's reconstruction, from the initializer's draw.
    initial = np.random.default_rng(0).uniform(-0.05, 0.05, (3, cfg.run.num_latent_factors))
    reconstructed = recommend.reconstruct_embeddings(item_matrix, data.recon, initial, 0.1)
    users = experiments.method_embeddings(cfg, stateful, [0, 1, 2], data, 0)
    np.testing.assert_array_equal(users[:2], stateful.user_embeddings[:2])
    np.testing.assert_allclose(users[2], reconstructed[2], rtol=1e-6)
    trained = np.ones((3, cfg.run.num_latent_factors), np.float32)
    assert experiments.method_embeddings(cfg, item_matrix, [0, 1, 2], data, 0, trained) is trained
    with pytest.raises(ValueError, match="solver"):
        experiments.method_embeddings(cfg, item_matrix, [0, 1, 2], data, 0, solver="exact")


def test_training_budgets_count_what_each_round_computes(packed):
    """FedRecon trains items on the post-reconstruction half, capped; the stateful model on
    every rating, one step per batch."""
    cfg = dataclasses.replace(
        small_config(), run=dataclasses.replace(small_config().run, post_recon_steps_max=2)
    )
    ids = list(range(10))
    table = experiments.training_budgets(cfg, packed, ids, seed=0)
    counts = packed.counts[packed.rows(ids)]
    batches = -(-counts // 5)
    stateful = table.loc[experiments.STATEFUL]
    assert stateful["item steps"] == pytest.approx(batches.mean())
    assert stateful["u steps"] == pytest.approx(batches.mean())
    assert stateful["ratings in item steps"] == pytest.approx(counts.mean())
    assert stateful["share of the ratings"] == pytest.approx(1.0)
    fed = table.loc[experiments.FEDRECON]
    # Items: the odd batches, at most 2 steps; u: the even batches, 5 passes, at most 50.
    assert fed["item steps"] == pytest.approx(np.minimum(batches // 2, 2).mean())
    assert fed["u steps"] == pytest.approx(np.minimum(-(-batches // 2) * 5, 50).mean())
    assert fed["ratings in item steps"] <= 10
