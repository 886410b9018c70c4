"""What an update reveals, the simulator's DP server update, TFF's DP aggregator, accounting."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients, config
from tutorial_utils.simulation import simulator as sim
from tutorial_utils.simulation.batches import PackedClients, RoundBatches
from tutorial_utils.studies import dp_training, privacy

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
        config.FedReconRun(num_latent_factors=4, client_lr=0.5),
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
    # The attack: from each update, the rows sent, the learning rate and the batch size,
    # the server recovers u and the post-reconstruction ratings.
    table = privacy.attack(privacy.one_by_one(updates), updates, batches, item_matrix, 0.5, 2)
    assert table["exact"].tolist() == [1.0, 1.0]
    assert table["u_error"].max() < 1e-4
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


def one_client_round(rng, num_clients=1, post_sizes=(5, 5, 5, 5, 3), recon_batches=3):
    """Clients that each rated distinct movies: ``recon_batches`` full reconstruction
    batches, then post-reconstruction batches of ``post_sizes`` ratings (the last one
    shorter, as a client's last batch often is)."""
    recon, post = [], []
    for _ in range(num_clients):
        items = rng.choice(NUM_ITEMS, 5 * recon_batches + sum(post_sizes), replace=False)
        ratings = rng.integers(1, 6, len(items))
        recon.append([batch(items[5 * b : 5 * b + 5], ratings[5 * b : 5 * b + 5])
                      for b in range(recon_batches)])  # fmt: skip
        start, batches = 5 * recon_batches, []
        for size in post_sizes:
            batches.append(batch(items[start : start + size], ratings[start : start + size]))
            start += size
        post.append(batches)
    return RoundBatches.from_lists(recon, post, 5)


def test_one_update_gives_back_u_and_every_post_reconstruction_rating():
    rng = np.random.default_rng(11)
    batches = one_client_round(rng, num_clients=4)
    run = small_run(client_lr=0.5)
    sent = rng.uniform(-0.5, 0.5, (NUM_ITEMS, NUM_FACTORS)).astype(np.float32)
    updates = privacy.client_updates(
        sim.FedReconSimulator(run, NUM_ITEMS, item_matrix=sent, seed=1), batches
    )
    table = privacy.attack(privacy.one_by_one(updates), updates, batches, sent, 0.5, 5)
    assert table["ratings"].tolist() == [23] * 4
    assert table["exact"].tolist() == [1.0] * 4  # the short last batch included
    assert table["u_error"].max() < 1e-4 and table["norm_error"].max() < 1e-4
    assert table["named_precision"].tolist() == [1.0] * 4
    some = privacy.attack(privacy.one_by_one(updates, [2, 0]), updates, batches, sent, 0.5, 5)
    assert some.index.tolist() == [0, 2] and some["exact"].tolist() == [1.0] * 2
    # Clipping rescales an update: the same answer.
    clipped = privacy.clipped(updates, 0.01)
    np.testing.assert_allclose(privacy.update_norms(clipped), 0.01, rtol=1e-5)
    again = privacy.attack(privacy.one_by_one(clipped), updates, batches, sent, 0.5, 5)
    assert again["exact"].tolist() == [1.0] * 4 and again["u_error"].max() < 1e-4
    # The scale is left free, so the attack does not even need the learning rate.
    wrong_lr = privacy.attack(privacy.one_by_one(updates), updates, batches, sent, 0.37, 5)
    assert wrong_lr["exact"].tolist() == [1.0] * 4 and wrong_lr["u_error"].max() < 1e-4
    # The recovered ratings are the client's, row for row.
    found = privacy.recover(updates.client_delta(0), sent, 0.5, 5)
    truth = privacy.post_recon_ratings(batches).query("client == 0").set_index("item")
    np.testing.assert_array_equal(found.ratings, truth.loc[found.items, "rating"])
    np.testing.assert_allclose(found.user, updates.users[0], rtol=1e-4)


def test_sums_and_noise_defeat_the_attack():
    rng = np.random.default_rng(12)
    batches = one_client_round(rng, num_clients=6)
    sent = rng.uniform(-0.5, 0.5, (NUM_ITEMS, NUM_FACTORS)).astype(np.float32)
    updates = privacy.client_updates(
        sim.FedReconSimulator(small_run(), NUM_ITEMS, item_matrix=sent, seed=2), batches
    )
    rounds = list(privacy.in_rounds(updates, 3))
    assert [members for _, members in rounds] == [[0, 1, 2], [3, 4, 5]]
    by_hand = sum(updates.client_delta(c) * updates.weights[c] for c in (0, 1, 2))
    np.testing.assert_allclose(rounds[0][0], by_hand, atol=1e-6)
    assert len(list(privacy.in_rounds(updates, 4))) == 1  # the last, smaller round is dropped
    summed = privacy.attack(rounds, updates, batches, sent, 0.5, 5)
    assert summed["exact"].mean() < 0.5 and summed["u_error"].min() > 0.1
    noise = np.random.default_rng(0)
    views = [
        (privacy.dp_view(matrix, 1.0, 1.0, noise), members)
        for matrix, members in privacy.one_by_one(privacy.clipped(updates, 1.0))
    ]
    assert all(np.abs(matrix).min() > 0 for matrix, _ in views)  # every row moves
    noisy = privacy.attack(views, updates, batches, sent, 0.5, 5)
    assert noisy["exact"].mean() < 0.5 and noisy["u_error"].min() > 0.5
    assert noisy["named_precision"].max() < 0.5  # the rated movies are hidden too
    summary = privacy.attack_summary(noisy)
    assert summary["clients"] == 6 and summary["ratings"] == 6 * 23


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


def epsilon_by_hand(event, relation, delta, count=1):
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
    accountant.compose(event, count)
    return accountant.get_epsilon(delta)


def test_epsilon_is_dp_accountings_for_the_sampling_that_runs():
    dp_accounting = pytest.importorskip("dp_accounting")
    relation = dp_accounting.NeighboringRelation
    z, m, n, rounds = 1.3, 100, 4832, 500
    # Poisson sampling, add-or-remove neighbours: sensitivity clip, the multiplier as is.
    poisson = dp_accounting.PoissonSampledDpEvent(m / n, dp_accounting.GaussianDpEvent(z))
    expected = epsilon_by_hand(poisson, relation.ADD_OR_REMOVE_ONE, 1e-6, rounds)
    assert dp_training.epsilon(z, m, n, rounds) == pytest.approx(expected, rel=1e-12)
    assert dp_training.DELTA == 1e-6
    # Fixed-size samples, replace-one neighbours: sensitivity 2 clip, the multiplier halved.
    fixed = dp_accounting.SampledWithoutReplacementDpEvent(
        n, m, dp_accounting.GaussianDpEvent(z / 2)
    )
    expected_fixed = epsilon_by_hand(fixed, relation.REPLACE_ONE, 1e-6, rounds)
    got = dp_training.epsilon(z, m, n, rounds, sampling="fixed")
    assert got == pytest.approx(expected_fixed, rel=1e-12)
    # Not the multiplier as is: that would count half the sensitivity.
    unhalved = dp_accounting.SampledWithoutReplacementDpEvent(
        n, m, dp_accounting.GaussianDpEvent(z)
    )
    assert got > 1.5 * epsilon_by_hand(unhalved, relation.REPLACE_ONE, 1e-6, rounds)
    # Another delta, another answer.
    looser = dp_training.epsilon(z, m, n, rounds, delta=1e-5)
    assert looser == pytest.approx(
        epsilon_by_hand(poisson, relation.ADD_OR_REMOVE_ONE, 1e-5, rounds)
    )
    assert looser < dp_training.epsilon(z, m, n, rounds)


def test_pld_epsilon_is_dp_accountings_pld_and_below_the_rdp_bound():
    dp_accounting = pytest.importorskip("dp_accounting")
    z, m, n, rounds = 1.1, 20, 4832, 500
    by_hand = dp_accounting.pld.PLDAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        value_discretization_interval=1e-4,
    )
    by_hand.compose(
        dp_accounting.PoissonSampledDpEvent(m / n, dp_accounting.GaussianDpEvent(z)), rounds
    )
    pld = dp_training.epsilon(z, m, n, rounds, accountant="pld")
    assert dp_training.PLD_DISCRETIZATION == 1e-4
    assert pld == pytest.approx(by_hand.get_epsilon(1e-6), rel=1e-12)
    assert pld < 0.6 * dp_training.epsilon(z, m, n, rounds)  # RDP: a loose upper bound
    # One round: the RDP-to-(epsilon, delta) conversion dominates the RDP figure.
    gaussian = dp_accounting.GaussianDpEvent(z)
    one_pld = dp_training.epsilon_of_rounds([gaussian], m, n, accountant="pld")
    assert one_pld == pytest.approx(dp_training.epsilon(z, m, n, 1, accountant="pld"), rel=1e-12)
    assert one_pld < 0.2 * dp_training.epsilon_of_rounds([gaussian], m, n)
    assert dp_training.epsilon_of_rounds([gaussian] * rounds, m, n, accountant="pld") == (
        pytest.approx(pld, rel=1e-12)
    )


def test_recorded_rounds_are_accounted_round_by_round():
    dp_accounting = pytest.importorskip("dp_accounting")
    m, n = 20, 4832
    same = [dp_accounting.GaussianDpEvent(0.9)] * 50
    assert dp_training.epsilon_of_rounds(same, m, n) == pytest.approx(
        dp_training.epsilon(0.9, m, n, 50), rel=1e-12
    )
    assert dp_training.epsilon_of_rounds(same, m, n, sampling="fixed") == pytest.approx(
        dp_training.epsilon(0.9, m, n, 50, sampling="fixed"), rel=1e-12
    )
    mixed = [dp_accounting.GaussianDpEvent(z) for z in (0.7, 1.1, 2.0)]
    composed = dp_accounting.ComposedDpEvent(
        [dp_accounting.PoissonSampledDpEvent(m / n, g) for g in mixed]
    )
    expected = epsilon_by_hand(composed, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, 1e-6)
    assert dp_training.epsilon_of_rounds(mixed, m, n) == pytest.approx(expected, rel=1e-12)
    assert dp_training.epsilon_of_rounds([dp_accounting.GaussianDpEvent(0.0)], m, n) == math.inf
    with pytest.raises(ValueError, match="gaussians"):
        dp_training.epsilon_of_rounds([], m, n)
    with pytest.raises(ValueError, match="delta"):
        dp_training.epsilon_of_rounds(mixed, m, n, delta=1 / n)


def test_epsilon_falls_with_noise_and_grows_with_rounds():
    epsilons = [dp_training.epsilon(z, 100, 4832, 500) for z in (0.5, 0.8, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(epsilons, epsilons[1:]))
    assert dp_training.epsilon(1.0, 100, 4832, 100) < epsilons[2]
    assert dp_training.epsilon(0.0, 100, 4832, 500) == math.inf
    # The same noise costs more with fixed-size samples (twice the sensitivity).
    assert dp_training.epsilon(1.0, 100, 4832, 500, sampling="fixed") > epsilons[2]


def test_noise_multiplier_for_reaches_the_target():
    for target, sampling in ((8.0, "poisson"), (1.0, "poisson"), (4.0, "fixed")):
        z = dp_training.noise_multiplier_for(target, 100, 4832, 500, sampling=sampling)
        assert dp_training.epsilon(z, 100, 4832, 500, sampling=sampling) <= target
        assert dp_training.epsilon(z - 2e-3, 100, 4832, 500, sampling=sampling) > target
    assert dp_training.noise_multiplier_for(math.inf, 100, 4832, 500) == 0.0


def test_poisson_sampler_draws_each_user_independently():
    ids = list(range(1000, 3000))
    sampler = dp_training.PoissonSampler(ids, 50, seed=3)
    sizes = [len(sampler.sample()) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(50, rel=0.05)
    assert np.var(sizes) == pytest.approx(50 * (1 - 50 / 2000), rel=0.25)  # binomial
    assert len(set(sizes)) > 10
    first = dp_training.PoissonSampler(ids, 50, seed=3).sample()
    assert first == dp_training.PoissonSampler(ids, 50, seed=3).sample()
    assert set(first) <= set(ids) and len(set(first)) == len(first)
    with pytest.raises(ValueError, match="clients_per_round"):
        dp_training.PoissonSampler(ids[:10], 11)


def test_simulator_trains_on_poisson_rounds_even_an_empty_one(rating_clients):
    packed = PackedClients.from_rating_clients(rating_clients)
    run = small_run(clients_per_round=4, server_lr=1.0)
    noisy = sim.FedReconSimulator(run, NUM_ITEMS, seed=5, dp_clip=1.0, dp_noise_multiplier=1.0)
    before = noisy.item_matrix
    assert noisy.run_round(packed, [])["num_examples"] == 0
    change = (noisy.item_matrix - before).astype(np.float64)
    assert change.std() == pytest.approx(1.0 / run.clients_per_round, rel=0.15)  # the noise


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
    with pytest.raises(ValueError, match="delta"):
        dp_training.epsilon(1.0, 100, 4832, 500, delta=1 / 4832)  # not well below 1 / n
    with pytest.raises(ValueError, match="accountant"):
        dp_training.epsilon(1.0, 100, 4832, 500, accountant="moments")
    with pytest.raises(ValueError, match="Poisson"):
        dp_training.epsilon(1.0, 100, 4832, 500, sampling="fixed", accountant="pld")


def test_privacy_tradeoff_trains_one_run_per_budget(rating_clients):
    users = clients.split_clients(rating_clients.client_ids, seed=0)
    packed = PackedClients.from_rating_clients(rating_clients)
    run = small_run(clients_per_round=5, num_rounds=2)
    settings = dataclasses.replace(
        config.PRIVACY_SMOKE, run=run, clip=0.5, target_epsilons=(4.0,), delta=1e-6, seed=42
    )
    table = dp_training.privacy_tradeoff(
        settings, packed, users[0], users[2], NUM_ITEMS, progress=False
    )
    assert list(table.index) == [
        "no DP", "Poisson sampling", "uniform weights", "clipping only", "epsilon <= 4"
    ]  # fmt: skip
    # One change a row.
    assert table["sampling"].tolist() == ["fixed"] + ["poisson"] * 4
    assert table["weights"].tolist() == ["examples"] * 2 + ["uniform"] * 3
    assert table["clip"].tolist()[2:] == [dp_training.NO_CLIP, 0.5, 0.5]
    assert table["noise_multiplier"].tolist()[3] == 0.0 and table["noise_multiplier"].iloc[4] > 0
    noisy = table.loc["epsilon <= 4"]
    z, n = noisy["noise_multiplier"], len(users[0])
    assert noisy["epsilon"] <= 4.0
    assert noisy["epsilon"] == dp_training.epsilon(z, 5, n, 2)
    assert noisy["epsilon_pld"] == dp_training.epsilon(z, 5, n, 2, accountant="pld")
    assert noisy["epsilon_pld"] < noisy["epsilon"]  # the RDP figure is an upper bound
    assert noisy["epsilon_poisson_2clip"] == dp_training.epsilon(z / 2, 5, n, 2)
    assert noisy["epsilon_fixed_size_bound"] == dp_training.epsilon(z, 5, n, 2, sampling="fixed")
    assert noisy["epsilon"] < noisy["epsilon_poisson_2clip"] < noisy["epsilon_fixed_size_bound"]
    assert np.isinf(table.loc["clipping only", ["epsilon", "epsilon_pld"]].astype(float)).all()
    assert table["test_rmse"].notna().all()
    # steps=False: only the clipped rows, the same runs as in the full table.
    short = dp_training.privacy_tradeoff(
        settings, packed, users[0], users[2], NUM_ITEMS, steps=False, progress=False
    )
    assert list(short.index) == ["clipping only", "epsilon <= 4"]
    pd.testing.assert_frame_equal(
        short.drop(columns="seconds"), table.iloc[3:].drop(columns="seconds")
    )
    with pytest.raises(ValueError, match="clients_per_round"):
        dp_training.privacy_tradeoff(
            dataclasses.replace(settings, run=small_run(clients_per_round=50)),
            packed, users[0], users[2], NUM_ITEMS, progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="clip"):
        dp_training.privacy_tradeoff(
            dataclasses.replace(settings, clip=0.0), packed, users[0], users[2], NUM_ITEMS
        )


def test_the_noise_does_not_move_the_runs_other_draws(rating_clients):
    users = clients.split_clients(rating_clients.client_ids, seed=0)
    packed = PackedClients.from_rating_clients(rating_clients)
    run = small_run(clients_per_round=4)

    def state_after_rounds(cls, z, **options):
        model = cls(run, NUM_ITEMS, seed=3, dp_clip=0.5, dp_noise_multiplier=z, **options)
        for _ in range(3):
            model.run_round(packed, users[0][:4])
        return model.rng.bit_generator.state, model.item_matrix

    separate = dp_training._SeparateNoiseSimulator
    clipped, clipped_matrix = state_after_rounds(separate, 0.0, noise_seed=4)
    noised, noised_matrix = state_after_rounds(separate, 1.0, noise_seed=4)
    assert noised == clipped  # shuffles and user embeddings: the same draws
    assert not np.allclose(noised_matrix, clipped_matrix)  # but noise was added
    assert state_after_rounds(separate, 1.0, noise_seed=4)[0] == noised  # seeded
    # The plain simulator draws its noise from the shared generator, which moves it.
    assert state_after_rounds(sim.FedReconSimulator, 1.0)[0] != clipped


def test_the_mean_rating_baseline_scores_the_evaluated_ratings(rating_clients):
    users = clients.split_clients(rating_clients.client_ids, seed=0)
    packed = PackedClients.from_rating_clients(rating_clients)
    run = small_run(clients_per_round=4)
    baseline = privacy.mean_rating_rmse(packed, users[0], users[2], run, seed=7)
    scored = sim.FedReconSimulator(run, NUM_ITEMS).evaluate(
        packed, users[2], reshuffle_each_pass=False, seed=7
    )
    assert baseline["num_examples"] == scored["num_examples"]
    train = np.concatenate([packed.ratings[r, : packed.counts[r]] for r in packed.rows(users[0])])
    test = np.concatenate([packed.ratings[r, : packed.counts[r]] for r in packed.rows(users[2])])
    assert baseline["mean"] == pytest.approx(train.mean())
    assert baseline["rmse_all"] == pytest.approx(np.sqrt(np.mean((test - train.mean()) ** 2)))
    assert baseline["num_examples"] < test.size  # a part of the test ratings only
    # The scored ratings are the post-reconstruction batches' of the same seeded split.
    batches = packed.round_batches(
        users[2], run.eval_split, run.batch_size, np.random.default_rng(7), False
    )
    truth = batches.post_recon.ratings[batches.post_recon.mask]
    assert baseline["rmse"] == pytest.approx(np.sqrt(np.mean((truth - train.mean()) ** 2)))


# --------------------------------------------------------------------------------------
# TFF's aggregators
# --------------------------------------------------------------------------------------


def test_tff_dp_aggregator_matches_the_simulator(rating_clients):
    pytest.importorskip("tensorflow_federated")
    run = small_run(clients_per_round=8, client_lr=0.3)
    ids = rating_clients.client_ids[:8]
    clipped = dp_training.DPAggregation(clip=0.05)
    exact = dp_training.one_round_both_ways(rating_clients, ids, run, NUM_ITEMS, clipped)
    assert not np.array_equal(exact["simulator"], exact["before"])
    np.testing.assert_allclose(exact["tff"], exact["simulator"], atol=1e-6)
    # With noise: TFF's difference from the noiseless simulator is the noise.
    noisy = dp_training.one_round_both_ways(
        rating_clients, ids, run, NUM_ITEMS, dp_training.DPAggregation(0.05, noise_multiplier=2.0)
    )
    difference = noisy["tff"].astype(np.float64) - noisy["simulator"]
    expected_std = run.server_lr * 2.0 * 0.05 / run.clients_per_round
    assert difference.std() == pytest.approx(expected_std, rel=0.1)  # 480 coordinates
    assert noisy["dp_event"].noise_multiplier == pytest.approx(2.0)
    # Fewer clients than expected (a Poisson round): both still divide by the expected 8.
    fewer = dp_training.one_round_both_ways(rating_clients, ids[:5], run, NUM_ITEMS, clipped)
    np.testing.assert_allclose(fewer["tff"], fewer["simulator"], atol=1e-6)


def test_tff_secure_sum_gives_the_plain_mean(rating_clients):
    pytest.importorskip("tensorflow_federated")
    run = small_run(clients_per_round=6)
    ids = rating_clients.client_ids[:6]
    result = dp_training.one_round_both_ways(rating_clients, ids, run, NUM_ITEMS, "secure")
    assert not np.array_equal(result["simulator"], result["before"])
    np.testing.assert_allclose(result["tff"], result["simulator"], atol=1e-4)


def test_the_readmes_share_of_revealed_ratings_is_notebook_07s():
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    notebook = json.loads((root / "notebooks" / "07_privacy.ipynb").read_text())
    printed = "".join(
        "".join(output.get("text", ""))
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )
    share = re.search(r"the changed rows cover ([\d.]+)% of the movies it rated", printed)
    assert share, "notebook 07 no longer prints the share of rated movies its updates reveal"
    intro = " ".join((root / "README.md").read_text().split("\n\n")[1].split())
    expected = f"post-reconstruction half ({float(share.group(1)):.0f}% of its ratings, on average)"
    assert expected in intro


# --------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------


def test_the_figures_are_saved(tmp_path, monkeypatch):
    from tutorial_utils import plotting

    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    by_size = pd.DataFrame({"exact": [1.0, 0.3, 0.1], "guess_4": [0.35] * 3}, index=[1, 5, 100])
    by_noise = pd.DataFrame({"exact": [0.9, 0.2], "guess_4": [0.35] * 2}, index=[1e-4, 1.0])
    figure = plotting.attack_recovery(by_size, by_noise, {"epsilon 16": 0.6}, name="attack")
    assert [len(ax.lines) for ax in figure.axes] == [2, 3]  # attack, guess, the mark
    table = pd.DataFrame(
        {
            "epsilon": [math.inf] * 4 + [8.0, 1.0],
            "test_rmse": [0.9, 0.92, 1.0, 1.05, 1.1, 1.6],
            "test_accuracy": [0.42, 0.41, 0.40, 0.39, 0.37, 0.26],
        },
        index=["no DP", "Poisson sampling", "uniform weights", "clipping only", "e8", "e1"],
    )
    figure = plotting.privacy_tradeoff(table, 1e-6, baseline_rmse=1.11, name="tradeoff")
    assert (tmp_path / "attack.png").exists() and (tmp_path / "tradeoff.png").exists()
    # DP curve and four reference lines on both panels; the mean-rating line on RMSE's only
    assert [len(ax.lines) for ax in figure.axes] == [6, 5]
    assert figure.axes[0].lines[-1].get_ydata()[0] == 1.11
    assert "delta = 1e-06" in figure.axes[0].get_xlabel()
    assert "more private to the left" in figure.axes[0].get_xlabel()


def test_tff_records_the_noise_multiplier_it_used(rating_clients):
    pytest.importorskip("tensorflow_federated")
    from tutorial_utils import model

    run = small_run(clients_per_round=4)
    process = dp_training.build_dp_process(
        model.reconstruction_model_fn(NUM_ITEMS, NUM_FACTORS), run, clip=0.5, noise_multiplier=1.1
    )
    state, _ = process.next(process.initialize(), rating_clients.create_tf_datasets(range(4)))
    assert dp_training.recorded_noise_multiplier(state) == pytest.approx(1.1)
    # Accounted for the sampling that ran: one Poisson round of rate 4 / 30.
    event = dp_training.recorded_event(state)
    assert dp_training.epsilon_of_rounds([event], 4, NUM_USERS, delta=1e-3) == pytest.approx(
        dp_training.epsilon(1.1, 4, NUM_USERS, 1, delta=1e-3), rel=1e-6
    )
    with pytest.raises(ValueError, match="clip"):
        dp_training.build_dp_process(
            model.reconstruction_model_fn(NUM_ITEMS, NUM_FACTORS),
            run,
            clip=0.0,
            noise_multiplier=1.0,
        )


def test_the_attack_recovers_the_ratings_from_tffs_own_update(rating_clients, ratings_df):
    pytest.importorskip("tensorflow_federated")
    run = small_run(clients_per_round=1)  # one client: the server's new model shows its update
    user = rating_clients.client_ids[3]
    result = dp_training.one_round_both_ways(
        rating_clients, [user], run, NUM_ITEMS, dp_training.DPAggregation(dp_training.NO_CLIP)
    )
    update = result["tff"].astype(np.float64) - result["before"]
    found = privacy.recover(update, result["before"], run.client_lr, 5)
    assert len(found.items) >= 10 and found.fit.all()
    truth = ratings_df[ratings_df["UserID"] == user].set_index("MovieID")["Rating"]
    np.testing.assert_array_equal(found.ratings, truth.loc[found.items].to_numpy())
