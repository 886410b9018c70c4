"""FedRecon training and evaluation with TFF on a tiny rating table."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tutorial_utils import config, model, training
from tutorial_utils.clients import ClientSampler, RatingClients, movie_ids, shared_ratings

tff = pytest.importorskip("tensorflow_federated")

NUM_ITEMS = 30


@pytest.fixture(scope="module")
def clients():
    rng = np.random.default_rng(1)
    rows = []
    for user in range(12):
        movies = rng.choice(NUM_ITEMS // 2, size=12, replace=False) + (user % 2) * (NUM_ITEMS // 2)
        rows += [(user, int(m), int(rng.integers(1, 6))) for m in movies]
    frame = pd.DataFrame(rows, columns=["UserID", "MovieID", "Rating"])
    return RatingClients(frame, batch_size=3)


def run(clients, rounds):
    tf.keras.utils.set_random_seed(3)
    model_fn = model.reconstruction_model_fn(NUM_ITEMS, 4)
    process = training.build_training_process(model_fn)
    evaluation = training.build_evaluation_process(model_fn)
    sampler = ClientSampler(clients.client_ids, 3, seed=0)
    state, history = training.train(process, clients, sampler, rounds, progress=False)
    result = training.evaluate(
        evaluation, process.get_model_weights(state), clients.create_tf_datasets(range(12))
    )
    return process, state, history, result


def test_training_reports_one_row_per_round_and_evaluation_reports_loss_and_accuracy(clients):
    _, _, history, result = run(clients, 3)
    assert list(history.index) == [1, 2, 3]
    assert set(history.columns) == {"loss", "rating_accuracy"}
    assert set(result) == {"loss", "rating_accuracy"}
    assert np.isfinite(history.to_numpy()).all() and 0 <= result["rating_accuracy"] <= 1


def test_a_round_only_changes_the_item_rows_its_clients_rated(clients):
    tf.keras.utils.set_random_seed(3)
    process = training.build_training_process(model.reconstruction_model_fn(NUM_ITEMS, 4))
    state = process.initialize()
    before = process.get_model_weights(state).trainable[0]
    # Users 0, 2 and 4 only rate the first half of the items.
    state, _ = process.next(state, clients.create_tf_datasets([0, 2, 4]))
    after = process.get_model_weights(state).trainable[0]
    changed = np.flatnonzero(np.any(before != after, axis=1))
    rated = set().union(*(set(clients.client_arrays(u)[0].tolist()) for u in (0, 2, 4)))
    assert len(changed) > 0 and set(changed.tolist()) <= rated
    assert all(row < NUM_ITEMS // 2 for row in changed)


def test_seeded_runs_repeat_exactly(clients):
    first = run(clients, 2)
    second = run(clients, 2)
    pd.testing.assert_frame_equal(first[2], second[2])
    assert first[3] == second[3]


def test_training_lowers_the_loss_on_the_walkthrough_rates(clients):
    _, _, history, _ = run(clients, 12)
    assert history["loss"].iloc[-3:].mean() < history["loss"].iloc[:3].mean()


def test_train_also_takes_a_function_that_makes_the_datasets(clients):
    _, _, history, _ = run(clients, 2)
    tf.keras.utils.set_random_seed(3)
    process = training.build_training_process(model.reconstruction_model_fn(NUM_ITEMS, 4))
    sampler = ClientSampler(clients.client_ids, 3, seed=0)
    _, again = training.train(
        process, lambda ids: clients.create_tf_datasets(ids), sampler, 2, progress=False
    )
    pd.testing.assert_frame_equal(history, again)


def test_builders_take_another_loss_and_metrics(clients):
    process = training.build_training_process(
        model.reconstruction_model_fn(NUM_ITEMS, 4),
        loss_fn=tf.keras.losses.MeanAbsoluteError,
        metrics_fn=lambda: [tf.keras.metrics.MeanSquaredError(name="mse")],
    )
    sampler = ClientSampler(clients.client_ids, 3, seed=0)
    _, history = training.train(process, clients, sampler, 1, progress=False)
    assert set(history.columns) == {"loss", "mse"}


def test_default_evaluation_split_is_disjoint_on_data_that_is_not_reshuffled():
    clients = RatingClients(
        pd.DataFrame({"UserID": [0] * 7, "MovieID": range(7), "Rating": [3] * 7}), batch_size=3
    )
    dataset = clients.create_tf_dataset_for_client(0, reshuffle_each_pass=False)
    split_fn = tff.learning.models.ReconstructionModel.build_dataset_split_fn(split_dataset=True)
    recon, post = split_fn(dataset)
    assert shared_ratings(movie_ids(recon), movie_ids(post)) == (0, 3)


def test_the_builders_make_notebook_03s_explicit_calls(clients):
    """Notebook 03 calls build_fed_recon and build_fed_recon_eval itself; the helpers the
    other notebooks use must build the same processes."""
    run = config.FedReconRun(client_lr=0.3, reconstruction_lr=0.05, num_latent_factors=4)
    # A constant user initializer, so that a round's result depends on the process only.
    constant = tf.keras.initializers.Constant(0.01)
    model_fn = model.reconstruction_model_fn(NUM_ITEMS, 4, user_initializer=constant)
    sgd = tff.learning.optimizers.build_sgdm
    explicit = tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=model.loss_fn,
        metrics_fn=model.metrics_fn,
        server_optimizer_fn=sgd(run.server_lr),
        client_optimizer_fn=sgd(run.client_lr),
        reconstruction_optimizer_fn=sgd(run.reconstruction_lr),
    )
    helper = training.build_training_process(model_fn, run)
    assert helper.next.type_signature == explicit.next.type_signature
    ids = clients.client_ids[:4]
    start = explicit.initialize()
    explicit_state, explicit_metrics = explicit.next(start, clients.create_tf_datasets(ids))
    helper_state, helper_metrics = helper.next(start, clients.create_tf_datasets(ids))
    assert training.round_metrics(helper_metrics) == training.round_metrics(explicit_metrics)
    for a, b in zip(
        helper.get_model_weights(helper_state).trainable,
        explicit.get_model_weights(explicit_state).trainable,
    ):
        np.testing.assert_array_equal(a, b)
    datasets = clients.create_tf_datasets(ids, reshuffle_each_pass=False)
    explicit_eval = tff.learning.algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=model.loss_fn,
        metrics_fn=model.metrics_fn,
        reconstruction_optimizer_fn=sgd(run.reconstruction_lr),
    )
    helper_eval = training.build_evaluation_process(model_fn, run)
    assert helper_eval.next.type_signature == explicit_eval.next.type_signature
    weights = explicit.get_model_weights(start)
    state = explicit_eval.set_model_weights(explicit_eval.initialize(), weights)
    _, metrics = explicit_eval.next(state, datasets)
    by_hand = {
        k: float(v) for k, v in metrics["client_work"]["eval"]["current_round_metrics"].items()
    }
    assert training.evaluate(helper_eval, weights, datasets) == by_hand
