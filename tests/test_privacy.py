"""What an update reveals, the simulator's DP server update, TFF's DP aggregator, accounting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients, config, dp_training, privacy
from tutorial_utils import simulator as sim
from tutorial_utils.batches import RoundBatches

NUM_USERS, NUM_ITEMS, NUM_FACTORS = 30, 60, 8


def small_run(**fields) -> config.FedReconRun:
    return config.FedReconRun(num_latent_factors=NUM_FACTORS, **fields)


def batch(items, ratings):
    return np.asarray(items), np.asarray(ratings, np.float32)


@pytest.fixture(scope="module")
def ratings_df() -> pd.DataFrame:
    """30 users with 20 to 60 distinct ratings of 60 items."""
    rng = np.random.default_rng(0)
    frames = []
    for user in range(NUM_USERS):
        items = rng.choice(NUM_ITEMS, size=rng.integers(20, 61), replace=False)
        frames.append(
            pd.DataFrame(
                {"UserID": user, "MovieID": items, "Rating": rng.integers(1, 6, len(items))}
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def rating_clients(ratings_df) -> clients.RatingClients:
    return clients.RatingClients(ratings_df, batch_size=5)


def random_round(rng, num_clients, num_items=NUM_ITEMS):
    """Per client 1-3 reconstruction and 1-4 post-reconstruction batches of distinct items."""

    def batches(count):
        return [
            batch(rng.choice(num_items, 5, replace=False), rng.integers(1, 6, 5))
            for _ in range(count)
        ]

    recon = [batches(rng.integers(1, 4)) for _ in range(num_clients)]
    post = [batches(rng.integers(1, 5)) for _ in range(num_clients)]
    return RoundBatches.from_lists(recon, post, 5)


# --------------------------------------------------------------------------------------
# What one update reveals
# --------------------------------------------------------------------------------------


def test_recovery_on_a_round_where_the_truth_is_known():
    # Client 0 reconstructs on movies 1, 2 and trains on 3, 4; client 1 on 4, then 5, 6.
    batches = RoundBatches.from_lists(
        recon=[[batch([1, 2], [5, 1])], [batch([4], [3])]],
        post_recon=[[batch([3, 4], [5, 1])], [batch([5, 6], [4, 2])]],
        batch_size=2,
    )
    item_matrix = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 4)).astype(np.float32)
    simulator = sim.FedReconSimulator(
        config.FedReconRun(num_latent_factors=4),
        8,
        item_matrix=item_matrix,
        user_init_range=(0.2, 0.2),
    )
    updates = privacy.client_updates(simulator, batches)
    assert privacy.changed_items(updates) == [{3, 4}, {5, 6}]
    truth = [{1, 2, 3, 4}, {4, 5, 6}]
    table = privacy.membership_recovery(privacy.changed_items(updates), truth)
    assert table["precision"].tolist() == [1.0, 1.0]
    assert table["recall"].tolist() == pytest.approx([0.5, 2 / 3])
    # The sum shows the union, not who rated what.
    union = privacy.rows_changed(updates.summed())
    assert union == {3, 4, 5, 6}
    shared = privacy.membership_recovery([union, union], truth)
    assert shared["precision"].tolist() == [0.5, 0.75]
    # One step per client: each row moves along u, towards it exactly when the rating
    # is above the prediction.
    directions = privacy.update_directions(updates, item_matrix, batches)
    assert len(directions) == 4
    np.testing.assert_allclose(directions["cosine"].abs(), 1.0, atol=1e-5)
    above = directions["rating"] > directions["prediction"]
    assert (directions["towards"] == above).all()
    summary = privacy.direction_summary(directions)
    assert summary["sign_matches_residual"] == 1.0 and summary["rank_one"] > 0.9999
    np.testing.assert_array_equal(simulator.item_matrix, item_matrix)  # nothing trained


def test_the_updates_are_the_ones_a_training_round_averages():
    rng = np.random.default_rng(1)
    batches = random_round(rng, 6)
    run = small_run()
    options = {"item_matrix": rng.uniform(-0.3, 0.3, (NUM_ITEMS, NUM_FACTORS)), "seed": 3}
    updates = privacy.client_updates(sim.FedReconSimulator(run, NUM_ITEMS, **options), batches)
    trained = sim.FedReconSimulator(run, NUM_ITEMS, **options)
    before = trained.item_matrix
    trained.run_round_batches(batches)
    expected = before + run.server_lr * updates.summed() / updates.weights.sum()
    np.testing.assert_allclose(trained.item_matrix, expected, atol=1e-6)
    post = batches.post_recon
    moved = np.abs(updates.delta).max(axis=1) > 0
    assert set(updates.items[moved].tolist()) <= set(post.items[post.mask].tolist())


# --------------------------------------------------------------------------------------
# The simulator's differentially private server update
# --------------------------------------------------------------------------------------


def clipped_mean_by_hand(updates: privacy.ClientUpdates, clip: float, denominator: int):
    total = np.zeros((updates.num_items, updates.delta.shape[1]))
    for client in range(updates.num_clients):
        delta = updates.client_delta(client).astype(np.float64)
        total += delta * min(1.0, clip / max(np.linalg.norm(delta), 1e-30))
    return total / denominator


def test_dp_update_without_noise_is_the_clipped_unweighted_mean():
    rng = np.random.default_rng(2)
    batches = random_round(rng, 8)
    run = small_run(clients_per_round=10)  # the denominator, not the 8 clients present
    item_matrix = rng.uniform(-0.3, 0.3, (NUM_ITEMS, NUM_FACTORS)).astype(np.float32)
    updates = privacy.client_updates(
        sim.FedReconSimulator(run, NUM_ITEMS, item_matrix=item_matrix, seed=4), batches
    )
    norms = [np.linalg.norm(updates.client_delta(c)) for c in range(8)]
    clip = float(np.median(norms))  # half the clients are clipped, half are not
    private = sim.FedReconSimulator(run, NUM_ITEMS, item_matrix=item_matrix, seed=4, dp_clip=clip)
    private.run_round_batches(batches)
    expected = item_matrix + run.server_lr * clipped_mean_by_hand(updates, clip, 10)
    np.testing.assert_allclose(private.item_matrix, expected, atol=1e-6)
    # A clip above every norm leaves the deltas alone: the plain unweighted mean.
    loose = sim.FedReconSimulator(run, NUM_ITEMS, item_matrix=item_matrix, seed=4, dp_clip=1e6)
    loose.run_round_batches(batches)
    unweighted = item_matrix + run.server_lr * updates.summed(weighted=False) / 10
    np.testing.assert_allclose(loose.item_matrix, unweighted, atol=1e-6)


def test_dp_noise_has_the_promised_std_and_is_seeded():
    rng = np.random.default_rng(5)
    num_items = 2000
    batches = random_round(rng, 10, num_items)
    run = small_run(clients_per_round=10, server_lr=0.5)
    clip, z = 0.2, 1.3
    item_matrix = rng.uniform(-0.3, 0.3, (num_items, NUM_FACTORS)).astype(np.float32)

    def after(noise, seed=6):
        simulator = sim.FedReconSimulator(
            run,
            num_items,
            item_matrix=item_matrix,
            seed=seed,
            dp_clip=clip,
            dp_noise_multiplier=noise,
        )
        simulator.run_round_batches(batches)
        return simulator.item_matrix.astype(np.float64)

    difference = after(z) - after(0.0)
    expected_std = run.server_lr * z * clip / run.clients_per_round
    assert difference.std() == pytest.approx(expected_std, rel=0.03)
    assert abs(difference.mean()) < 0.05 * expected_std
    np.testing.assert_array_equal(after(z), after(z))
    assert not np.array_equal(after(z), after(z, seed=7))


def test_simulator_refuses_bad_dp_settings():
    with pytest.raises(ValueError, match="dp_clip"):
        sim.FedReconSimulator(small_run(), NUM_ITEMS, dp_clip=0.0)
    with pytest.raises(ValueError, match="dp_clip"):
        sim.FedReconSimulator(small_run(), NUM_ITEMS, dp_clip=-1.0)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        sim.FedReconSimulator(small_run(), NUM_ITEMS, dp_clip=1.0, dp_noise_multiplier=-0.1)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        sim.FedReconSimulator(small_run(), NUM_ITEMS, dp_noise_multiplier=1.0)  # no clip


# --------------------------------------------------------------------------------------
# Accounting and settings
# --------------------------------------------------------------------------------------


def test_epsilon_falls_with_noise_and_grows_with_rounds():
    epsilons = [dp_training.epsilon(z, 100, 4832, 500) for z in (0.5, 0.8, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(epsilons, epsilons[1:]))
    assert dp_training.epsilon(1.0, 100, 4832, 100) < epsilons[2]
    assert dp_training.epsilon(0.0, 100, 4832, 500) == math.inf
    assert dp_training.epsilon(1.0, 100, 4832, 500, sampling="fixed") > 0


def test_noise_multiplier_for_reaches_the_target():
    for target in (8.0, 1.0):
        z = dp_training.noise_multiplier_for(target, 100, 4832, 500)
        assert dp_training.epsilon(z, 100, 4832, 500) <= target
        assert dp_training.epsilon(z - 2e-3, 100, 4832, 500) > target
    assert dp_training.noise_multiplier_for(math.inf, 100, 4832, 500) == 0.0


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="noise_multiplier"):
        dp_training.epsilon(-1.0, 100, 4832, 500)
    with pytest.raises(ValueError, match="clients_per_round"):
        dp_training.epsilon(1.0, 5000, 4832, 500)
    with pytest.raises(ValueError, match="clients_per_round"):
        dp_training.epsilon(1.0, 0, 4832, 500)
    with pytest.raises(ValueError, match="clip"):
        dp_training.check_settings(clip=0.0)
    with pytest.raises(ValueError, match="sampling"):
        dp_training.epsilon(1.0, 100, 4832, 500, sampling="shuffled")
    with pytest.raises(ValueError, match="target_epsilon"):
        dp_training.noise_multiplier_for(0.0, 100, 4832, 500)


def test_privacy_tradeoff_trains_one_run_per_budget(rating_clients):
    users = clients.split_clients(rating_clients.client_ids, seed=0)
    packed = clients.UserSplit(rating_clients, *users).packed()
    run = small_run(clients_per_round=5, num_rounds=2)
    table = dp_training.privacy_tradeoff(
        run, packed, users[0], users[2], NUM_ITEMS, clip=0.5, target_epsilons=(4.0,), progress=False
    )
    assert list(table.index) == ["no DP", "clipping only", "epsilon <= 4"]
    assert table.loc["epsilon <= 4", "epsilon"] <= 4.0
    assert table["test_rmse"].notna().all()
    with pytest.raises(ValueError, match="clients_per_round"):
        dp_training.privacy_tradeoff(
            small_run(clients_per_round=50), packed, users[0], users[2], NUM_ITEMS,
            clip=0.5, target_epsilons=(4.0,), progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="clip"):
        dp_training.privacy_tradeoff(
            run, packed, users[0], users[2], NUM_ITEMS, clip=0.0, target_epsilons=(4.0,)
        )


# --------------------------------------------------------------------------------------
# TFF's aggregators
# --------------------------------------------------------------------------------------


def test_tff_dp_aggregator_matches_the_simulator(rating_clients):
    pytest.importorskip("tensorflow_federated")
    run = small_run(clients_per_round=8, client_lr=0.3)
    ids = rating_clients.client_ids[:8]
    exact = dp_training.one_round_both_ways(rating_clients, ids, run, NUM_ITEMS, clip=0.05)
    assert not np.array_equal(exact["simulator"], exact["before"])
    np.testing.assert_allclose(exact["tff"], exact["simulator"], atol=1e-6)
    # With noise: TFF's difference from the noiseless simulator is the noise.
    noisy = dp_training.one_round_both_ways(
        rating_clients, ids, run, NUM_ITEMS, clip=0.05, noise_multiplier=2.0
    )
    difference = noisy["tff"].astype(np.float64) - noisy["simulator"]
    expected_std = run.server_lr * 2.0 * 0.05 / run.clients_per_round
    assert difference.std() == pytest.approx(expected_std, rel=0.1)  # 480 coordinates


def test_tff_secure_sum_gives_the_plain_mean(rating_clients):
    pytest.importorskip("tensorflow_federated")
    run = small_run(clients_per_round=6)
    ids = rating_clients.client_ids[:6]
    result = dp_training.one_round_both_ways(
        rating_clients, ids, run, NUM_ITEMS, aggregator="secure"
    )
    assert not np.array_equal(result["simulator"], result["before"])
    np.testing.assert_allclose(result["tff"], result["simulator"], atol=1e-4)


# --------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------


def test_the_figures_are_saved(tmp_path, monkeypatch):
    from tutorial_utils import plotting

    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    directions = pd.DataFrame(
        {"towards": [True, True, False], "rating": [5.0, 4.0, 1.0], "cosine": [1.0, 1.0, -1.0]}
    )
    plotting.update_directions(directions, name="directions")
    table = pd.DataFrame(
        {
            "epsilon": [math.inf, math.inf, 8.0, 1.0],
            "test_rmse": [0.9, 1.0, 1.1, 1.6],
            "test_accuracy": [0.42, 0.40, 0.37, 0.26],
        },
        index=["no DP", "clipping only", "epsilon <= 8", "epsilon <= 1"],
    )
    figure = plotting.privacy_tradeoff(table, name="tradeoff")
    assert (tmp_path / "directions.png").exists() and (tmp_path / "tradeoff.png").exists()
    assert [len(ax.lines) for ax in figure.axes] == [3, 3]  # DP curve, two reference lines


def test_tff_records_the_noise_multiplier_it_used(rating_clients):
    pytest.importorskip("tensorflow_federated")
    from tutorial_utils import model

    run = small_run(clients_per_round=4)
    process = dp_training.build_dp_process(
        model.reconstruction_model_fn(NUM_ITEMS, NUM_FACTORS), run, clip=0.5, noise_multiplier=1.1
    )
    state, _ = process.next(process.initialize(), rating_clients.create_tf_datasets(range(4)))
    assert dp_training.recorded_noise_multiplier(state) == pytest.approx(1.1)
    with pytest.raises(ValueError, match="clip"):
        dp_training.build_dp_process(
            model.reconstruction_model_fn(NUM_ITEMS, NUM_FACTORS),
            run,
            clip=0.0,
            noise_multiplier=1.0,
        )
