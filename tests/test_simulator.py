"""The vectorized FedRecon simulator: its pieces, a plain reference, and TFF itself.

Everything but the ``requires_tff`` tests runs without TensorFlow Federated (`make
test-without-tff` hides it).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tutorial_utils import clients, config
from tutorial_utils.plumbing import environment
from tutorial_utils.simulation import parity, reference_fedrecon, round_math, runs
from tutorial_utils.simulation import simulator as sim
from tutorial_utils.simulation.batches import (
    PackedClients,
    RoundBatches,
    stage_overlap,
    step_schedule,
)
from tutorial_utils.simulation.program_inputs import (
    RoundInputs,
    bucket,
    round_inputs,
    trains_rows_once,
)

requires_tff = pytest.mark.skipif(
    not environment.installed("tensorflow_federated"),
    reason="tensorflow_federated is not installed",
)

NUM_USERS, NUM_ITEMS, NUM_FACTORS = 40, 60, 8
OPTIONS_SPLIT = clients.DatasetSplit(recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2)
NO_SPLIT = clients.DatasetSplit(recon_epochs=2, post_recon_epochs=2, split_dataset=False)


def small_run(**fields) -> config.FedReconRun:
    """The walkthrough's run with this file's latent factors and ``fields`` changed."""
    return config.FedReconRun(num_latent_factors=NUM_FACTORS, **fields)


# A run whose training split is OPTIONS_SPLIT.
OPTIONS_RUN = small_run(recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2)


@pytest.fixture(scope="module")
def ratings_df() -> pd.DataFrame:
    """40 users with 20 to 80 ratings of 60 items (a user may rate an item twice)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(20, 81, size=NUM_USERS)
    return pd.DataFrame(
        {
            "UserID": np.repeat(np.arange(NUM_USERS), counts),
            "MovieID": rng.integers(0, NUM_ITEMS, size=counts.sum()),
            "Rating": rng.integers(1, 6, size=counts.sum()),
        }
    )


@pytest.fixture(scope="module")
def rating_clients(ratings_df) -> clients.RatingClients:
    return clients.RatingClients(ratings_df, batch_size=5)


def batch(items, ratings):
    return np.asarray(items), np.asarray(ratings, np.float32)


# --------------------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------------------


def test_bucket_rounds_up_by_at_most_a_quarter():
    assert [bucket(n) for n in (0, 1, 4, 5, 8, 9, 50, 100, 4832)] == [
        1,
        1,
        4,
        5,
        8,
        10,
        56,
        112,
        5120,
    ]
    for n in range(1, 3000):
        assert n <= bucket(n) <= max(4, 1.25 * n)


def test_step_schedule_default_split_alternates_batches():
    schedule = step_schedule(np.array([7, 1, 4]), clients.DatasetSplit(), "recon")
    np.testing.assert_array_equal(schedule.active, [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(schedule.batch[schedule.active], [0, 2, 4, 6, 0, 0, 2])
    post = step_schedule(np.array([7, 1, 4]), clients.DatasetSplit(), "post_recon")
    np.testing.assert_array_equal(post.active.sum(axis=1), [3, 0, 2])
    np.testing.assert_array_equal(post.batch[post.active], [1, 3, 5, 1, 3])
    assert not post.epoch.any()


def test_step_schedule_epochs_then_steps_max():
    schedule = step_schedule(np.array([7, 4]), OPTIONS_SPLIT, "recon")
    np.testing.assert_array_equal(schedule.active.sum(axis=1), [3, 3])
    np.testing.assert_array_equal(schedule.batch, [[0, 2, 4], [0, 2, 0]])
    np.testing.assert_array_equal(schedule.epoch, [[0, 0, 0], [0, 0, 1]])
    post = step_schedule(np.array([7, 4]), NO_SPLIT, "post_recon")
    np.testing.assert_array_equal(post.active.sum(axis=1), [14, 8])
    np.testing.assert_array_equal(post.batch[1, :8], [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(post.epoch[1, :8], [0] * 4 + [1] * 4)


@pytest.mark.parametrize(
    "split",
    [
        clients.DatasetSplit(),
        OPTIONS_SPLIT,
        NO_SPLIT,
        clients.DatasetSplit(recon_epochs=3, post_recon_epochs=2, post_recon_steps_max=5),
    ],
)
def test_step_schedule_matches_the_tf_data_split(split):
    """The schedule picks the batches that split_dataset_fn's tf.data pipelines yield."""
    for num_batches in (1, 2, 5, 8):
        dataset = tf.data.Dataset.range(num_batches)  # batch i is the number i
        recon, post = clients.split_dataset_fn(split)(dataset)
        for phase, phase_dataset in (("recon", recon), ("post_recon", post)):
            schedule = step_schedule(np.array([num_batches]), split, phase)
            expected = [int(i) for i in phase_dataset]
            assert schedule.batch[schedule.active].tolist() == expected


def test_split_dataset_fn_reads_a_reshuffling_dataset_once_per_stage():
    """As in TFF, the two stages are separate iterations: with reshuffling, different orders."""

    def shuffled_batches():
        return tf.data.Dataset.range(40).shuffle(40, seed=1, reshuffle_each_iteration=True).batch(4)

    dataset = shuffled_batches()
    first_pass, second_pass = [[b.tolist() for b in dataset.as_numpy_iterator()] for _ in range(2)]
    assert first_pass != second_pass
    recon, post = clients.split_dataset_fn(clients.DatasetSplit())(shuffled_batches())
    assert [b.tolist() for b in recon.as_numpy_iterator()] == first_pass[0::2]
    assert [b.tolist() for b in post.as_numpy_iterator()] == second_pass[1::2]


def packed_example() -> PackedClients:
    """Three clients whose rating of item i is always i % 5 + 1."""
    items = [np.arange(12), np.arange(20, 23), np.arange(30, 53)]
    return PackedClients([7, 3, 9], items, [i % 5 + 1.0 for i in items])


def test_packed_clients_pad_and_find_rows():
    packed = packed_example()
    assert packed.items.shape == (3, 23)
    np.testing.assert_array_equal(packed.counts, [12, 3, 23])
    np.testing.assert_array_equal(packed.rows([9, 7]), [2, 0])
    assert not packed.items[1, 3:].any()


def test_packed_clients_from_rating_clients(rating_clients):
    packed = PackedClients.from_rating_clients(rating_clients)
    assert packed.client_ids == rating_clients.client_ids
    row = packed.rows([5])[0]
    items, ratings = rating_clients.client_arrays(5)
    np.testing.assert_array_equal(packed.items[row, : len(items)], items)
    np.testing.assert_array_equal(packed.ratings[row, : len(items)], ratings)


def test_round_batches_masks_and_contents():
    packed = packed_example()
    rng = np.random.default_rng(0)
    batches = packed.round_batches(
        [7, 3, 9], clients.DatasetSplit(), 5, rng, reshuffle_each_pass=False
    )
    # 12 ratings -> batches of 5, 5, 2: recon gets batches 0 and 2, post batch 1.
    np.testing.assert_array_equal(batches.recon.mask.sum(axis=(1, 2)), [7, 3, 13])
    np.testing.assert_array_equal(batches.post_recon.mask.sum(axis=(1, 2)), [5, 0, 10])
    for phase in batches:
        real = phase.mask
        np.testing.assert_array_equal(phase.ratings[real], phase.items[real] % 5 + 1)
        assert not phase.items[~real].any() and not phase.ratings[~real].any()
    # One order per round: the two halves are disjoint and cover every rating once.
    for c, count in enumerate(packed.counts):
        seen = np.concatenate(
            [
                batches.recon.items[c][batches.recon.mask[c]],
                batches.post_recon.items[c][batches.post_recon.mask[c]],
            ]
        )
        np.testing.assert_array_equal(np.sort(seen), np.sort(packed.items[c, :count]))


def test_round_batches_reshuffle_each_pass_draws_new_orders():
    packed = PackedClients([0], [np.arange(300)], [np.ones(300)])
    split = clients.DatasetSplit(recon_epochs=2, split_dataset=False)
    batches = packed.round_batches([0], split, 5, np.random.default_rng(0))
    recon = batches.recon.items[0].reshape(-1)
    first, second = recon[:300], recon[300:]
    np.testing.assert_array_equal(np.sort(first), np.arange(300))
    np.testing.assert_array_equal(np.sort(second), np.arange(300))
    assert (first != second).any()
    assert (batches.post_recon.items[0].reshape(-1) != first).any()


def test_round_inputs_number_local_item_rows():
    batches = RoundBatches.from_lists(
        recon=[[batch([4, 4, 1], [1, 2, 3])], [batch([4], [5])]],
        post_recon=[[batch([1, 2], [1, 1]), batch([2], [3])], []],
        batch_size=3,
    )
    inputs = round_inputs(batches, num_items=6)
    num_rows = len(inputs.table_items)
    # Client 0 holds items 1, 2, 4; client 1 its own copy of item 4.
    pairs = {(int(c), int(i)) for c, i in zip(inputs.table_clients, inputs.table_items)}
    assert {(0, 1), (0, 2), (0, 4), (1, 4)} <= pairs
    rows = inputs.recon_rows
    assert rows[0, 0, 0] == rows[0, 0, 1] != rows[1, 0, 0]
    assert inputs.table_items[rows[0, 0, 2]] == 1 and inputs.table_clients[rows[1, 0, 0]] == 1
    assert inputs.post_recon_rows[0, 0, 0] == rows[0, 0, 2]
    # Padded examples point at the scratch row just past the table.
    assert (inputs.post_recon_rows[inputs.post_recon_mask == 0] == num_rows).all()
    assert inputs.post_recon_mask.sum() == 3 and inputs.recon_mask.sum() == 4
    with pytest.raises(ValueError, match="Item ids"):
        round_inputs(batches, num_items=4)


# --------------------------------------------------------------------------------------
# The algorithm, against a plain one-client-at-a-time reference
# --------------------------------------------------------------------------------------


def reference_round(item_matrix, recon, post_recon, run, user_init, train=True):
    """``reference_fedrecon``'s plain round: every client, then the server.

    With ``train=False``, the evaluation: post-reconstruction batches are only measured.
    """
    if not train:
        run = dataclasses.replace(run, client_lr=0.0)
    start = np.full(item_matrix.shape[1], user_init)
    updates = [
        reference_fedrecon.client_step(item_matrix, recon_batches, post_batches, run, start)
        for recon_batches, post_batches in zip(recon, post_recon)
    ]
    return (
        reference_fedrecon.server_step(item_matrix, updates, run),
        reference_fedrecon.round_metrics(updates),
    )


def test_client_lists_undo_the_padding():
    recon = [[batch([4, 4, 1], [1, 2, 3])], [batch([4], [5]), batch([2], [1])]]
    phase = RoundBatches.from_lists(recon, [[], []], batch_size=3).recon
    for got, want in zip(phase.client_lists(), recon):
        assert len(got) == len(want)
        for (items, ratings), (want_items, want_ratings) in zip(got, want):
            np.testing.assert_array_equal(items, want_items)
            np.testing.assert_array_equal(ratings, want_ratings)


def test_reference_client_step_by_hand():
    """One batch of two ratings, worked out on paper: u moves, then the two item rows."""
    run = config.FedReconRun(reconstruction_lr=0.5, client_lr=0.25, server_lr=1.0)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    batch_ = (np.array([0, 1]), np.array([2.0, 4.0]))
    update = reference_fedrecon.client_step(items, [batch_], [batch_], run, np.zeros(2))
    # Reconstruction: error = (0 - 2, 0 - 4), u -= 0.5 * 2 * error @ items / 2 = (1, 2).
    np.testing.assert_allclose(update.user, [1.0, 2.0])
    # Training: error = (1 - 2, 2 - 4) = (-1, -2); row 0 += 0.25 * (2 * 1 / 2) * u, row 1 += ...
    np.testing.assert_allclose(update.delta, [[0.25, 0.5], [0.5, 1.0], [0.0, 0.0]])
    assert update.weight == 2 and update.batch_losses == [2.5]
    new_items = reference_fedrecon.server_step(items, [update, update._replace(weight=0)], run)
    np.testing.assert_allclose(new_items, items + update.delta)
    assert reference_fedrecon.round_metrics([update])["rating_accuracy"] == 0.0


def random_client_batches(rng, num_clients, max_batches, batch_size=5):
    """Per client, 0 to ``max_batches`` batches of 1 to ``batch_size`` random ratings."""

    def random_batch():
        size = rng.integers(1, batch_size + 1)
        return batch(rng.integers(0, NUM_ITEMS, size=size), rng.integers(1, 6, size=size))

    return [
        [random_batch() for _ in range(rng.integers(0, max_batches + 1))]
        for _ in range(num_clients)
    ]


def random_round(seed: int, num_clients: int):
    """A random item matrix, random batches of ``num_clients`` clients, and a simulator that
    starts every user at 0.3 (as ``reference_round(..., 0.3)`` does)."""
    rng = np.random.default_rng(seed)
    item_matrix = rng.uniform(-0.5, 0.5, (NUM_ITEMS, NUM_FACTORS)).astype(np.float32)
    recon = random_client_batches(rng, num_clients, 4)
    post_recon = random_client_batches(rng, num_clients, 6)
    simulator = sim.FedReconSimulator(
        small_run(), NUM_ITEMS, item_matrix=item_matrix, user_init_range=(0.3, 0.3)
    )
    return item_matrix, recon, post_recon, simulator


def test_training_round_matches_the_reference():
    run = small_run()
    item_matrix, recon, post_recon, simulator = random_round(1, 6)
    post_recon[0] = []  # a client without post-reconstruction batches weighs nothing
    metrics = simulator.run_round_batches(RoundBatches.from_lists(recon, post_recon, 5))
    expected_matrix, expected = reference_round(item_matrix, recon, post_recon, run, 0.3)
    np.testing.assert_allclose(simulator.item_matrix, expected_matrix, atol=1e-5)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["rating_accuracy"] == pytest.approx(expected["rating_accuracy"])
    assert metrics["num_examples"] == expected["num_examples"]


def distinct_round(seed: int, num_clients: int):
    """As :func:`random_round`, but no client rates an item twice after reconstruction, so
    every client trains each of its item rows at most once."""
    item_matrix, recon, _, simulator = random_round(seed, num_clients)
    rng = np.random.default_rng(seed)
    post_recon = []
    for _ in range(num_clients):
        items = rng.permutation(NUM_ITEMS)[: rng.integers(1, 30)]
        ratings = rng.integers(1, 6, size=len(items))
        post_recon.append([batch(items[i : i + 5], ratings[i : i + 5]) for i in range(0, 30, 5)])
    return item_matrix, recon, [[b for b in c if len(b[0])] for c in post_recon], simulator


def test_training_rows_once_matches_the_reference():
    run = small_run()
    item_matrix, recon, post_recon, simulator = distinct_round(3, 6)
    batches = RoundBatches.from_lists(recon, post_recon, 5)
    assert trains_rows_once(round_inputs(batches, NUM_ITEMS))
    metrics = simulator.run_round_batches(batches)
    expected_matrix, expected = reference_round(item_matrix, recon, post_recon, run, 0.3)
    np.testing.assert_allclose(simulator.item_matrix, expected_matrix, atol=1e-5)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["rating_accuracy"] == pytest.approx(expected["rating_accuracy"])


@pytest.mark.parametrize("seed", [4, 5])
def test_training_every_step_at_once_equals_one_step_after_another(seed):
    _, recon, post_recon, simulator = distinct_round(seed, 7)
    inputs, arguments = simulator.round_arguments(RoundBatches.from_lists(recon, post_recon, 5))
    compiled = tf.function(round_math.local_training, jit_compile=True)
    at_once, in_order = (
        compiled(*arguments, simulator.run.client_lr, tf.constant(once)) for once in (True, False)
    )
    for fast, plain in zip(at_once, in_order):
        np.testing.assert_array_equal(fast.numpy(), plain.numpy())


def test_trains_rows_once_tells_whether_a_client_trains_an_item_twice():
    recon = [[batch([4], [1])], [batch([4], [1])]]
    once = [[batch([1, 2], [3, 4]), batch([3], [5])], [batch([1], [2])]]  # two rows of item 1
    twice = [[batch([1, 2], [3, 4]), batch([2], [5])], [batch([1], [2])]]
    for post_recon, expected in ((once, True), (twice, False)):
        inputs = round_inputs(RoundBatches.from_lists(recon, post_recon, 5), NUM_ITEMS)
        assert trains_rows_once(inputs) is expected
        stacked = RoundInputs(*(np.stack([a, a]) for a in inputs))  # two rounds
        assert trains_rows_once(stacked) is expected


def test_evaluation_matches_the_reference_and_changes_nothing():
    run = small_run()
    item_matrix, recon, post_recon, simulator = random_round(2, 5)
    metrics = simulator.evaluate_batches(RoundBatches.from_lists(recon, post_recon, 5))
    _, expected = reference_round(item_matrix, recon, post_recon, run, 0.3, train=False)
    np.testing.assert_array_equal(simulator.item_matrix, item_matrix)
    for name in ("loss", "rating_accuracy", "rmse"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-5), name
    assert metrics["num_examples"] == expected["num_examples"]


def test_round_without_post_reconstruction_examples_leaves_items_unchanged():
    simulator = sim.FedReconSimulator(small_run(), NUM_ITEMS, seed=0)
    before = simulator.item_matrix
    batches = RoundBatches.from_lists([[batch([1, 2], [3, 4])]], [[]], 5)
    metrics = simulator.run_round_batches(batches)
    assert metrics == {"loss": 0.0, "rating_accuracy": 0.0, "num_examples": 0}
    np.testing.assert_array_equal(simulator.item_matrix, before)


def test_client_with_non_finite_update_is_dropped():
    options = {"item_matrix": None, "user_init_range": (0.1, 0.1)}
    item_matrix = np.random.default_rng(3).uniform(-0.05, 0.05, (NUM_ITEMS, NUM_FACTORS))
    good = ([batch([1, 2], [3, 4])], [batch([3, 4, 5], [5, 1, 2])])
    bad = ([batch([6], [3e38])], [batch([3, 7], [3e38, 3e38])])  # overflows to inf
    options["item_matrix"] = item_matrix
    alone = sim.FedReconSimulator(small_run(), NUM_ITEMS, **options)
    alone.run_round_batches(RoundBatches.from_lists([good[0]], [good[1]], 5))
    both = sim.FedReconSimulator(small_run(), NUM_ITEMS, **options)
    metrics = both.run_round_batches(
        RoundBatches.from_lists([good[0], bad[0]], [good[1], bad[1]], 5)
    )
    assert np.isfinite(both.item_matrix).all()
    np.testing.assert_array_equal(both.item_matrix, alone.item_matrix)
    assert metrics["num_examples"] == 5  # the metrics still count the dropped client


@pytest.fixture(scope="module")
def packed_clients(rating_clients) -> PackedClients:
    return PackedClients.from_rating_clients(rating_clients)


def simulate(packed_clients, seed, rounds=3):
    simulator = sim.FedReconSimulator(OPTIONS_RUN, NUM_ITEMS, seed=seed)
    sampler = clients.ClientSampler(packed_clients.client_ids, 10, seed=0)
    history = [simulator.run_round(packed_clients, sampler.sample()) for _ in range(rounds)]
    history.append(simulator.evaluate(packed_clients, packed_clients.client_ids))
    return history, simulator.item_matrix


def test_same_seed_same_results(packed_clients):
    first, first_matrix = simulate(packed_clients, seed=5)
    second, second_matrix = simulate(packed_clients, seed=5)
    assert first == second
    np.testing.assert_array_equal(first_matrix, second_matrix)
    third, third_matrix = simulate(packed_clients, seed=6)
    assert third != first and not np.array_equal(third_matrix, first_matrix)


def test_training_lowers_the_loss(packed_clients):
    simulator = sim.FedReconSimulator(small_run(client_lr=0.1), NUM_ITEMS, seed=0)
    everyone = packed_clients.client_ids
    before = simulator.evaluate(packed_clients, everyone)
    for _ in range(30):
        simulator.run_round(packed_clients, everyone)
    after = simulator.evaluate(packed_clients, everyone)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["rmse"] < before["rmse"]


def test_config_checks_its_values():
    with pytest.raises(ValueError, match="recon_epochs"):
        clients.DatasetSplit(recon_epochs=0)
    with pytest.raises(ValueError, match="post_recon_steps_max"):
        clients.DatasetSplit(post_recon_steps_max=0)
    with pytest.raises(ValueError, match="batch_size"):
        config.FedReconRun(batch_size=0)
    with pytest.raises(ValueError, match="shape"):
        sim.FedReconSimulator(
            config.FedReconRun(num_latent_factors=4), 10, item_matrix=np.zeros((10, 5))
        )
    with pytest.raises(ValueError, match="num_items"):
        sim.FedReconSimulator(config.FedReconRun(), 0)


def test_imports_neither_tff_nor_keras_model():
    """The simulator needs plain TensorFlow only (it must run where TFF cannot be installed)."""
    code = (
        "import sys, tutorial_utils.simulation.simulator, tutorial_utils.simulation.runs; "
        "print(sorted({'tensorflow_federated', 'tutorial_utils.model'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# Parity with TensorFlow Federated
# --------------------------------------------------------------------------------------


@requires_tff
@pytest.mark.parametrize(
    "split, client_lr",
    [(clients.DatasetSplit(), 0.5), (OPTIONS_SPLIT, 0.5), (NO_SPLIT, 0.1)],
    ids=["default-split", "epochs-and-steps-max", "no-split"],
)
def test_matches_tff(rating_clients, split, client_lr):
    """Same initial items, user initializer, clients and batches: the same rounds as TFF."""
    table = parity.compare_with_tff(
        rating_clients, NUM_ITEMS, small_run(client_lr=client_lr), split
    )
    rounds, evaluation = table.drop(index="evaluation"), table.loc["evaluation"]
    assert list(rounds.index) == [1, 2, 3, 4, 5]
    print(
        f"\n{split}: max relative metric difference {rounds['metric difference'].max():.2e}, "
        f"max absolute item difference {rounds['item difference'].max():.2e}, "
        f"evaluation {evaluation['metric difference']:.2e}; "
        f"final loss {rounds['simulator loss'].iloc[-1]:.4f}"
    )
    assert rounds["metric difference"].max() <= 1e-4
    assert rounds["item difference"].max() <= 1e-4
    assert evaluation["metric difference"] <= 1e-4


def test_relative_difference():
    assert parity.relative_difference(2.0, 2.0) == 0.0
    assert parity.relative_difference(0.0, 0.0) == 0.0
    assert parity.relative_difference(1.0, 0.8) == pytest.approx(0.2)
    assert parity.relative_difference(-1.0, 1.0) == pytest.approx(2.0)


# --------------------------------------------------------------------------------------
# The training loop and the evaluation helpers of notebook 05
# --------------------------------------------------------------------------------------


def test_evaluate_with_a_seed_leaves_the_training_rounds_unchanged(packed_clients):
    ids = packed_clients.client_ids
    plain = sim.FedReconSimulator(OPTIONS_RUN, NUM_ITEMS, seed=4)
    evaluated = sim.FedReconSimulator(OPTIONS_RUN, NUM_ITEMS, seed=4)
    plain.run_round(packed_clients, ids[:10])
    evaluated.run_round(packed_clients, ids[:10])
    first = evaluated.evaluate(packed_clients, ids[10:], seed=7)
    assert evaluated.evaluate(packed_clients, ids[10:], seed=7) == first
    assert evaluated.evaluate(packed_clients, ids[10:], seed=8) != first
    plain.run_round(packed_clients, ids[:10])
    evaluated.run_round(packed_clients, ids[:10])
    np.testing.assert_array_equal(plain.item_matrix, evaluated.item_matrix)


def test_evaluate_reshuffle_option_overrides_the_config(packed_clients):
    simulator = sim.FedReconSimulator(small_run(), NUM_ITEMS, seed=0, reshuffle_each_pass=True)
    ids = packed_clients.client_ids
    reshuffled = simulator.evaluate(packed_clients, ids, seed=1)
    assert simulator.evaluate(packed_clients, ids, seed=1, reshuffle_each_pass=True) == reshuffled
    assert simulator.evaluate(packed_clients, ids, seed=1, reshuffle_each_pass=False) != reshuffled


@pytest.mark.parametrize(
    "split",
    [
        clients.DatasetSplit(),
        OPTIONS_SPLIT,
        clients.DatasetSplit(recon_epochs=5, recon_steps_max=50, post_recon_steps_max=50),
    ],
)
def test_stage_overlap_one_order_keeps_the_halves_disjoint(split):
    packed = packed_example()
    overlap = stage_overlap(packed, [9, 7, 3], split, 5, reshuffle_each_pass=False, seed=0)
    assert overlap.index.tolist() == [9, 7, 3]
    assert not overlap["shared"].any()
    assert (overlap["reconstruction"] + overlap["evaluation"] <= packed.counts[[2, 0, 1]]).all()


def test_stage_overlap_counts_the_batches_that_evaluate_draws():
    """Items are distinct within each client of packed_example, so items identify ratings."""
    packed = packed_example()
    split = clients.DatasetSplit(recon_epochs=3)
    for reshuffle in (False, True):
        overlap = stage_overlap(packed, [7, 9], split, 5, reshuffle_each_pass=reshuffle, seed=3)
        batches = packed.round_batches([7, 9], split, 5, np.random.default_rng(3), reshuffle)
        for c, client in enumerate([7, 9]):
            recon = set(batches.recon.items[c][batches.recon.mask[c]].tolist())
            post = set(batches.post_recon.items[c][batches.post_recon.mask[c]].tolist())
            assert overlap.loc[client].tolist() == [len(recon), len(post), len(recon & post)]
    # Reshuffling each pass: the 3 reconstruction passes and the evaluation pass mix.
    assert overlap["shared"].sum() > 0


def test_train_returns_one_row_per_round_and_evaluates_on_schedule(packed_clients, capsys):
    ids = packed_clients.client_ids
    simulator = sim.FedReconSimulator(OPTIONS_RUN, NUM_ITEMS, seed=0)
    sampler = clients.ClientSampler(ids[:30], 10, seed=0)
    history = sim.train(
        simulator,
        packed_clients,
        sampler,
        5,
        eval_client_ids=ids[30:],
        eval_every=2,
        seed=1,
        reshuffle_each_pass=False,
    )
    assert history.index.tolist() == [1, 2, 3, 4, 5]
    assert history.columns.tolist() == [
        "loss",
        "rating_accuracy",
        "num_examples",
        "val_loss",
        "val_rmse",
        "val_rating_accuracy",
    ]
    assert history["val_rmse"].notna().tolist() == [False, True, False, True, True]
    assert "Training" in capsys.readouterr().out
    # The same rounds as run_round by hand (evaluating with a seed changes nothing).
    again = sim.FedReconSimulator(OPTIONS_RUN, NUM_ITEMS, seed=0)
    sampler = clients.ClientSampler(ids[:30], 10, seed=0)
    by_hand = [again.run_round(packed_clients, sampler.sample()) for _ in range(5)]
    assert history["loss"].tolist() == [m["loss"] for m in by_hand]
    np.testing.assert_array_equal(simulator.item_matrix, again.item_matrix)
    last = simulator.evaluate(packed_clients, ids[30:], seed=1, reshuffle_each_pass=False)
    assert history.loc[5, "val_rating_accuracy"] == last["rating_accuracy"]


def test_train_without_evaluation_or_progress_bar(packed_clients, capsys):
    simulator = sim.FedReconSimulator(small_run(), NUM_ITEMS, seed=0)
    sampler = clients.ClientSampler(packed_clients.client_ids, 5, seed=0)
    history = sim.train(simulator, packed_clients, sampler, 2, progress=False)
    assert history.columns.tolist() == ["loss", "rating_accuracy", "num_examples"]
    assert capsys.readouterr().out == ""


def test_evaluation_table_makes_one_row_per_group(packed_clients):
    simulator = sim.FedReconSimulator(small_run(), NUM_ITEMS, seed=0)
    ids = packed_clients.client_ids
    table = sim.evaluation_table(
        simulator, packed_clients, {"validation": ids[:10], "test": ids[10:25]}, seed=2
    )
    assert table.index.tolist() == ["validation", "test"]
    assert table.columns.tolist() == ["users", "loss", "rmse", "rating_accuracy", "num_examples"]
    assert table["users"].tolist() == [10, 15]
    expected = simulator.evaluate(packed_clients, ids[10:25], seed=2)
    assert table.loc["test", "rmse"] == expected["rmse"]


# --------------------------------------------------------------------------------------
# runs.train_and_score with the simulator
# --------------------------------------------------------------------------------------


def test_simulated_runs_repeat_with_their_seed_and_learn(ratings_df):
    base = dataclasses.replace(config.SMOKE, max_clients=None)
    run = small_run(client_lr=0.1, clients_per_round=20, num_rounds=1)
    source = type("Source", (), {"kind": "synthetic"})()
    movies = pd.DataFrame(index=range(NUM_ITEMS))

    def scores(seed, run=run):
        result = runs.train_and_score(
            run,
            runs.MovieLensData(source, ratings_df, movies),
            engine="simulator",
            base=base,
            seed=seed,
            progress=False,
        )
        assert result.engine == "simulator" and list(result.history.index) == list(
            range(1, run.num_rounds + 1)
        )
        return {"validation": result.validation, "test": result.test}

    first = scores(3)
    assert first == scores(3)
    assert first != scores(4)
    longer = scores(3, dataclasses.replace(run, num_rounds=40))
    for name in first:
        assert longer[name]["num_examples"] == first[name]["num_examples"]
        assert longer[name]["loss"] < first[name]["loss"]


def test_train_and_score_refuses_unknown_engines_and_tff_only_options(ratings_df):
    source = type("Source", (), {"kind": "synthetic"})()
    movielens = runs.MovieLensData(source, ratings_df, pd.DataFrame())
    with pytest.raises(ValueError, match="engine"):
        runs.train_and_score(small_run(), movielens, engine="jax")
    with pytest.raises(ValueError, match="split_fn"):
        runs.train_and_score(small_run(), movielens, engine="simulator", split_fn=print)
