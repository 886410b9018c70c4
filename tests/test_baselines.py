"""The stateful proposal and centralized matrix factorization, against plain references."""

from __future__ import annotations

import numpy as np
import pytest

from tutorial_utils import metrics
from tutorial_utils.clients import DatasetSplit
from tutorial_utils.config import FedReconRun
from tutorial_utils.simulation.batches import PackedClients, PhaseBatches
from tutorial_utils.studies import baselines

NUM_USERS, NUM_ITEMS, K = 12, 15, 3


def planted_clients(seed: int = 0, duplicates: bool = False) -> tuple[PackedClients, np.ndarray]:
    """Users who rated 8-15 distinct movies with ratings ``u . v`` of a planted rank-3 model."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(NUM_USERS, K)), rng.normal(size=(NUM_ITEMS, K))
    rated = [rng.choice(NUM_ITEMS, rng.integers(8, 16), replace=False) for _ in range(NUM_USERS)]
    if duplicates:
        rated = [np.concatenate([r, r[:2]]) for r in rated]  # every user rated two movies twice
    ratings = [(items[r] @ users[u]).astype(np.float32) for u, r in enumerate(rated)]
    return PackedClients(range(NUM_USERS), rated, ratings), users @ items.T


def run(**overrides) -> FedReconRun:
    return FedReconRun(num_latent_factors=K, batch_size=4, **overrides)


def stateful_simulator(run: FedReconRun, seed: int = 0, **init_ranges):
    return baselines.StatefulSimulator(run, NUM_ITEMS, NUM_USERS, seed, **init_ranges)


def reference_round(item_matrix, users, batches, run):
    """One stateful round, one client and one example at a time."""
    item_matrix = item_matrix.astype(np.float64)
    total, weights, new_users = np.zeros_like(item_matrix), [], []
    for c in range(batches.mask.shape[0]):
        local, user = item_matrix.copy(), users[c].astype(np.float64)
        for t in range(batches.mask.shape[1]):
            real = batches.mask[c, t]
            if not real.any():
                continue
            items, ratings = batches.items[c, t][real], batches.ratings[c, t][real]
            d_user, d_items = np.zeros(K), np.zeros_like(local)
            for item, rating in zip(items, ratings):
                error = 2 * (local[item] @ user - rating) / len(items)
                d_user += error * local[item]
                d_items[item] += error * user
            local -= run.client_lr * d_items
            user = user - run.reconstruction_lr * d_user
        weights.append(batches.mask[c].sum())
        total += weights[-1] * (local - item_matrix)
        new_users.append(user)
    return item_matrix + run.server_lr * total / sum(weights), np.array(new_users)


@pytest.mark.parametrize("duplicates", [False, True])
def test_stateful_round_matches_a_per_example_reference(duplicates):
    clients, _ = planted_clients(duplicates=duplicates)
    cfg = run(client_lr=0.1, reconstruction_lr=0.05)
    stateful = stateful_simulator(cfg, seed=1)
    start = stateful.item_matrix.copy()
    ids = [3, 7, 1]
    # The same draws as run_round: the batches, then the new users' embeddings.
    rng = np.random.default_rng(1)
    rng.uniform(size=start.shape)
    batches = clients.round_batches(
        ids, DatasetSplit(split_dataset=False), 4, rng, reshuffle_each_pass=False
    ).recon
    users = rng.uniform(*stateful.user_init_range, size=(3, K))
    metrics = stateful.run_round(clients, ids)
    expected_items, expected_users = reference_round(start, users, batches, cfg)
    np.testing.assert_allclose(stateful.item_matrix, expected_items, atol=1e-5)
    np.testing.assert_allclose(stateful.user_embeddings[ids], expected_users, atol=1e-5)
    assert metrics["num_examples"] == clients.counts[ids].sum()


def test_stateful_keeps_embeddings_of_sampled_users_only():
    clients, _ = planted_clients()
    stateful = stateful_simulator(run(), seed=0)
    stateful.run_round(clients, [0, 1])
    first = stateful.user_embeddings[[0, 1]].copy()
    stateful.run_round(clients, [1, 2])
    assert stateful.trained.tolist() == [True] * 3 + [False] * (NUM_USERS - 3)
    np.testing.assert_array_equal(stateful.user_embeddings[0], first[0])
    assert not np.allclose(stateful.user_embeddings[1], first[1])  # trained again from its state
    embeddings = stateful.embeddings([0, 5], seed=0)
    np.testing.assert_array_equal(embeddings[0], stateful.user_embeddings[0])
    assert np.all(np.abs(embeddings[1]) <= 0.05)  # never sampled: the initializer's draw


def test_stateful_training_fits_the_planted_model():
    clients, _ = planted_clients()
    stateful = stateful_simulator(
        run(client_lr=0.1, reconstruction_lr=0.1),
        user_init_range=(0.3, 0.6),
        item_init_range=(-0.5, 0.5),
    )
    losses = [stateful.run_round(clients, range(NUM_USERS))["loss"] for _ in range(300)]
    assert losses[-1] < 0.2 * losses[0]


def test_centralized_als_fits_a_planted_low_rank_model():
    clients, truth = planted_clients()
    users, items = baselines.centralized_als(
        clients, NUM_ITEMS, K, regularization=1e-4, iterations=50
    )
    rows, movies, ratings = baselines._flat_ratings(clients)
    predictions = np.einsum("nk,nk->n", users[rows], items[movies])
    assert np.sqrt(np.mean(np.square(predictions - ratings))) < 0.05
    assert users.shape == (NUM_USERS, K) and items.shape == (NUM_ITEMS, K)


def test_centralized_als_leaves_unrated_items_at_zero():
    clients = PackedClients(
        [0, 1], [np.array([0, 1]), np.array([1])], [np.array([4.0, 2.0]), np.array([3.0])]
    )
    _, items = baselines.centralized_als(clients, 4, 2, iterations=2)
    assert not items[2:].any() and items[:2].any()


def test_fold_in_solves_a_new_users_embedding():
    rng = np.random.default_rng(0)
    item_matrix = rng.normal(size=(NUM_ITEMS, K)).astype(np.float32)
    planted = np.array([[1.0, -2.0, 0.5], [0.2, 0.3, -0.4]])
    rated = [np.arange(10), np.arange(5, 12)]
    clients = PackedClients(
        [0, 1], rated, [item_matrix[r] @ planted[i] for i, r in enumerate(rated)]
    )
    phase = clients.round_batches(
        [0, 1], DatasetSplit(split_dataset=False), 4, np.random.default_rng(0)
    ).recon
    np.testing.assert_allclose(baselines.fold_in(item_matrix, phase, 1e-6), planted, atol=1e-3)
    # Stronger regularization shrinks the embedding towards 0.
    shrunk = baselines.fold_in(item_matrix, phase, 1.0)
    assert np.all(np.linalg.norm(shrunk, axis=1) < np.linalg.norm(planted, axis=1))


def test_phase_metrics_by_hand():
    phase = PhaseBatches(
        items=np.array([[[0, 1], [1, 0]]]),
        ratings=np.array([[[3.0, 1.0], [2.0, 0.0]]], np.float32),
        mask=np.array([[[True, True], [True, False]]]),
    )
    item_matrix = np.array([[1.0], [2.0]])  # predictions 1, 2, 2 for the user [1]
    metrics = baselines.phase_metrics(item_matrix, np.array([[1.0]]), phase)
    assert metrics["num_examples"] == 3
    assert metrics["rmse"] == pytest.approx(np.sqrt((4 + 1 + 0) / 3))
    assert metrics["rating_accuracy"] == pytest.approx(1 / 3)


def test_stateful_round_scores_with_the_shared_definitions(monkeypatch):
    """The stateful round counts a correct rating with ``metrics.is_correct``, and
    ``phase_metrics`` scores with ``metrics.is_correct`` and ``metrics.rmse``."""
    clients, _ = planted_clients()
    calls = []

    def never_correct(ratings, predictions):
        calls.append("is_correct")
        return np.zeros(np.broadcast(ratings, predictions).shape, bool)

    def fixed_rmse(squared_error_sum, num_examples):
        calls.append("rmse")
        return 7.0

    monkeypatch.setattr(metrics, "is_correct", never_correct)
    monkeypatch.setattr(metrics, "rmse", fixed_rmse)
    stateful = stateful_simulator(run(), seed=0)
    assert stateful.run_round(clients, [0, 1])["rating_accuracy"] == 0.0
    assert "is_correct" in calls
    phase = clients.round_batches([0, 1], DatasetSplit(), 4, np.random.default_rng(0)).recon
    scores = baselines.phase_metrics(stateful.item_matrix, stateful.embeddings([0, 1]), phase)
    assert scores["rmse"] == 7.0 and scores["rating_accuracy"] == 0.0


def test_stateful_snapshot_is_unchanged_by_further_training():
    clients, _ = planted_clients()
    stateful = stateful_simulator(run(), seed=0)
    stateful.run_round(clients, [0, 1])
    snapshot = stateful.snapshot()
    stateful.run_round(clients, [2, 3])
    assert snapshot.trained.tolist() == [True] * 2 + [False] * (NUM_USERS - 2)
    assert not np.array_equal(snapshot.item_matrix, stateful.item_matrix)
    assert snapshot.run == stateful.run and snapshot.num_items == NUM_ITEMS


def test_stateful_folds_in_only_the_users_it_never_sampled():
    clients, _ = planted_clients()
    stateful = stateful_simulator(run(), seed=0)
    stateful.run_round(clients, [0, 1])
    ids = [1, 5, 0, 7]  # 1 and 0 were sampled, 5 and 7 were not
    phase = clients.round_batches(
        ids, DatasetSplit(split_dataset=False), 4, np.random.default_rng(2)
    ).recon
    users = stateful.folded_in_embeddings(ids, phase, regularization=0.1)
    np.testing.assert_array_equal(users[[0, 2]], stateful.user_embeddings[[1, 0]])
    solved = baselines.fold_in(stateful.item_matrix, phase, 0.1)
    np.testing.assert_allclose(users[[1, 3]], solved[[1, 3]], rtol=1e-6)
    # The solved embeddings fit those users' ratings better than the initializer's draws.
    new_users = PhaseBatches(*(array[[1, 3]] for array in phase))
    folded = baselines.phase_metrics(stateful.item_matrix, users[[1, 3]], new_users)
    initial = baselines.phase_metrics(stateful.item_matrix, stateful.embeddings([5, 7]), new_users)
    assert folded["rmse"] < initial["rmse"]
    with pytest.raises(ValueError, match="phase holds 4 clients, not 2"):
        stateful.folded_in_embeddings([1, 5], phase, 0.1)
