"""Exercise 4's EMNIST: the writers, their batches, and the two models compared on them."""

import numpy as np
import pytest
import tensorflow as tf

tff = pytest.importorskip("tensorflow_federated")

from tutorial_utils import clients, config, training  # noqa: E402
from tutorial_utils.exercises import emnist  # noqa: E402
from tutorial_utils.plumbing import settings  # noqa: E402

split = tff.learning.models.ReconstructionModel.build_dataset_split_fn


def small_cnn(num_classes):
    """A fully global network, as plain FedAvg trains it: (keras_model, layers, [])."""
    images = tf.keras.Input(shape=emnist.IMAGE_SHAPE)
    conv = tf.keras.layers.Conv2D(4, 5, activation="relu")
    last = tf.keras.layers.Dense(num_classes)
    features = tf.keras.layers.Flatten()(tf.keras.layers.MaxPool2D(4)(conv(images)))
    return tf.keras.Model(images, last(features)), [conv, last], []


@pytest.fixture(scope="module")
def fed_avg_evaluation():
    """``build_fed_recon_eval`` for ``small_cnn``'s fully global network on a disjoint split,
    as notebook 04 scores its FedAvg model: with no local variables, reconstruction does
    nothing and the network is scored on the second half of each writer's batches."""
    return training.build_evaluation_process(
        lambda: emnist.personal_reconstruction_model(small_cnn(10)),
        config.EXERCISES_SMOKE.emnist_run,
        dataset_split_fn=split(split_dataset=True),
        loss_fn=emnist.emnist_loss_fn,
        metrics_fn=emnist.emnist_metrics_fn,
    )


def test_synthetic_emnist_is_repeatable_with_personal_digits():
    first = emnist.synthetic_emnist(3, 12, seed=5)
    again = emnist.synthetic_emnist(3, 12, seed=5)
    assert first.client_ids == again.client_ids == ["writer_000", "writer_001", "writer_002"]
    for client in first.client_ids:
        a = list(first.create_tf_dataset_for_client(client).as_numpy_iterator())
        b = list(again.create_tf_dataset_for_client(client).as_numpy_iterator())
        assert all(np.array_equal(x["pixels"], y["pixels"]) for x, y in zip(a, b))
        assert len(a) == 12 and len({int(x["label"]) for x in a}) <= 3
        assert (
            a[0]["pixels"].shape == (28, 28)
            and 0 <= a[0]["pixels"].min() <= a[0]["pixels"].max() <= 1
        )


def test_emnist_batches_have_a_fixed_order_and_the_input_spec():
    client_data = emnist.synthetic_emnist(1, 9)
    dataset = emnist.emnist_batches(client_data.create_tf_dataset_for_client("writer_000"), 4)
    first, second = ([b["y"].numpy().ravel().tolist() for b in dataset] for _ in range(2))
    assert first == second and [len(b) for b in first] == [4, 4, 1]
    spec = emnist.emnist_input_spec()
    assert dataset.element_spec["x"].shape.as_list() == spec["x"].shape.as_list()
    assert dataset.element_spec["y"].dtype == spec["y"].dtype


def test_load_emnist_says_the_data_are_synthetic_by_default(capsys, monkeypatch):
    monkeypatch.delenv("FEDRECON_EMNIST", raising=False)
    data = emnist.load_emnist(config.EXERCISES_SMOKE)
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "FEDRECON_EMNIST=real" in out and "network access" in out
    assert data.kind == "synthetic" and data.num_classes == 10
    assert data.batch_size == config.EXERCISES_SMOKE.emnist_run.batch_size
    assert len(data.train_ids) == config.EXERCISES_SMOKE.emnist_train_clients
    assert not set(data.train_ids) & set(data.test_ids)
    monkeypatch.setenv("FEDRECON_EMNIST", "imaginary")
    with pytest.raises(ValueError, match="FEDRECON_EMNIST"):
        settings.emnist_choice()
    monkeypatch.setenv("FEDRECON_EMNIST", "Real")
    assert settings.emnist_choice() == "real"


def test_a_fedavg_model_is_scored_by_fedrecon_evaluation_on_the_same_half(fed_avg_evaluation):
    """How notebook 04 compares FedAvg with FedRecon: same network, same scored batches."""
    tf.keras.utils.set_random_seed(0)
    data = emnist.synthetic_emnist(2, 8)
    client_datasets = [
        emnist.emnist_batches(data.create_tf_dataset_for_client(c), 4) for c in data.client_ids
    ]
    run = config.FedReconRun(client_lr=0.05)
    fed_avg = training.build_fed_avg_process(lambda: emnist.global_keras_model(small_cnn(10)), run)
    everyone = clients.ClientSampler([0, 1], 2)
    state, history = training.train(
        fed_avg, lambda ids: [client_datasets[i] for i in ids], everyone, 2, progress=False
    )
    assert len(history) == 2 and "loss" in history.columns
    scores = training.evaluate(
        fed_avg_evaluation, fed_avg.get_model_weights(state), client_datasets
    )
    assert set(scores) == {"loss", "accuracy"} and 0 <= scores["accuracy"] <= 1


def test_a_network_with_local_layers_is_refused_by_fedavg():
    keras_model, global_layers, _ = small_cnn(10)
    with pytest.raises(ValueError, match="local layers"):
        emnist.global_keras_model((keras_model, global_layers[:-1], global_layers[-1:]))


def test_compare_on_new_writers_scores_every_model_on_the_test_writers(capsys, fed_avg_evaluation):
    tf.keras.utils.set_random_seed(0)
    data = emnist.load_emnist(config.EXERCISES_SMOKE, choice="synthetic")
    capsys.readouterr()
    run = config.EXERCISES_SMOKE.emnist_run
    fed_avg = training.build_fed_avg_process(lambda: emnist.global_keras_model(small_cnn(10)), run)
    untrained = fed_avg.get_model_weights(fed_avg.initialize())
    state, _ = training.train(
        fed_avg, data, clients.ClientSampler(data.train_ids, 3, seed=0), 2, progress=False
    )
    trained = fed_avg.get_model_weights(state)
    table = emnist.compare_on_new_writers(
        data,
        {"trained": (fed_avg_evaluation, trained), "untrained": (fed_avg_evaluation, untrained)},
    )
    assert table.index.tolist() == ["trained", "untrained"]
    assert set(table.columns) == {"loss", "accuracy"}
    test_datasets = data.create_tf_datasets(data.test_ids, split="test")
    direct = training.evaluate(fed_avg_evaluation, trained, test_datasets)
    assert table.loc["trained", "loss"] == round(direct["loss"], 4)
    assert table.loc["trained", "loss"] != table.loc["untrained", "loss"]
