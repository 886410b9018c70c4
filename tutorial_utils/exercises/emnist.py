"""EMNIST for exercise 4: writers as clients, and a CNN with a personal user embedding.

Federated EMNIST's clients are writers, each with their own handwriting. It cannot always
be downloaded, so :func:`load_emnist` uses by default an offline stand-in,
:func:`synthetic_emnist`, made from TFF's synthetic digits; ``FEDRECON_EMNIST=real``
(``settings.emnist_choice()``) loads the real one. Its sizes are ``ExerciseConfig``'s
(``emnist_run.batch_size``, ``emnist_train_clients``, ...). A client's examples become
model batches with :func:`emnist_batches`; the loss and the metrics are
:func:`emnist_loss_fn` and :func:`emnist_metrics_fn`. A network given as
``(keras_model, global_layers, local_layers)`` becomes a TFF model with
:func:`personal_reconstruction_model` (FedRecon) or :func:`global_keras_model` (FedAvg).

The checks of exercise 4's TFF calls are in :mod:`tutorial_utils.exercises.model_checks`.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import config, training
from tutorial_utils.exercises.feedback import wrap
from tutorial_utils.plumbing import settings

IMAGE_SHAPE = (28, 28, 1)
# How many of the ten digits each synthetic writer writes: their personal preference.
DIGITS_PER_WRITER = 3


@dataclasses.dataclass
class EmnistData:
    """Federated EMNIST, or its synthetic stand-in: clients are writers."""

    train: object  # tff.simulation.datasets.ClientData
    test: object  # tff.simulation.datasets.ClientData
    train_ids: list
    test_ids: list
    num_classes: int
    kind: str  # "synthetic" or "real"
    description: str
    batch_size: int

    def create_tf_datasets(self, client_ids, split: str = "train") -> list[tf.data.Dataset]:
        """The batched datasets of these clients of ``split`` (``"train"`` or ``"test"``)."""
        client_data = {"train": self.train, "test": self.test}[split]
        return [
            emnist_batches(client_data.create_tf_dataset_for_client(c), self.batch_size)
            for c in client_ids
        ]


def emnist_batches(dataset: tf.data.Dataset, batch_size: int, seed: int = 42) -> tf.data.Dataset:
    """Raw EMNIST elements (``pixels`` [28, 28] white background, ``label``) as model batches.

    ``x`` is the ink (``1 - pixels``, [b, 28, 28, 1]) and ``y`` the label ([b, 1]). The
    examples are shuffled once, in the same order on every pass, so that splitting a
    client's batches into halves gives disjoint halves.
    """

    def to_example(element):
        return collections.OrderedDict(
            x=tf.expand_dims(1.0 - element["pixels"], -1),
            y=tf.reshape(tf.cast(element["label"], tf.int32), [1]),
        )

    return (
        dataset.shuffle(1000, seed=seed, reshuffle_each_iteration=False)
        .map(to_example)
        .batch(batch_size)
    )


def emnist_input_spec() -> collections.OrderedDict:
    """The element spec of a client's EMNIST batches."""
    return collections.OrderedDict(
        x=tf.TensorSpec(shape=[None, *IMAGE_SHAPE], dtype=tf.float32),
        y=tf.TensorSpec(shape=[None, 1], dtype=tf.int32),
    )


def emnist_loss_fn() -> tf.keras.losses.Loss:
    """Cross-entropy on the logits of the last Dense layer."""
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def emnist_metrics_fn() -> list:
    """Accuracy: the share of images whose largest logit is the true class."""
    return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def synthetic_emnist(
    num_clients: int,
    examples_per_client: int,
    *,
    digits_per_client: int = DIGITS_PER_WRITER,
    noise: float = 0.3,
    max_shift: int = 2,
    seed: int = 0,
    prefix: str = "writer",
):
    """An offline stand-in for federated EMNIST, made from TFF's synthetic digits.

    ``tff.simulation.datasets.emnist.get_synthetic()`` holds one hard-coded 28x28 image
    per digit. Each client here writes only ``digits_per_client`` of the ten digits;
    every example is one of those images, shifted by up to ``max_shift`` pixels and
    covered in Gaussian noise (``noise`` is its standard deviation, on ink from 0 to 1).
    A small network learns the noisy digits only slowly from exercise 4's few rounds,
    while which digits a writer uses is a simple pattern: a personal preference that a
    user embedding can learn from a few of the writer's images and a global model cannot.
    Same arguments, same data. Returns a ``ClientData`` in EMNIST's format.
    """
    import tensorflow_federated as tff

    digits = tff.simulation.datasets.emnist.get_synthetic()
    first = digits.create_tf_dataset_for_client(digits.client_ids[0]).batch(10)
    batch = next(iter(first))
    ink = 1.0 - batch["pixels"].numpy()[np.argsort(batch["label"].numpy())]
    rng = np.random.default_rng(seed)
    clients = collections.OrderedDict()
    for client in range(num_clients):
        own_digits = rng.choice(10, size=digits_per_client, replace=False)
        labels = rng.choice(own_digits, size=examples_per_client)
        shifts = rng.integers(-max_shift, max_shift + 1, size=(examples_per_client, 2))
        images = np.stack(
            [np.roll(ink[label], tuple(s), axis=(0, 1)) for label, s in zip(labels, shifts)]
        )
        images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
        clients[f"{prefix}_{client:03d}"] = collections.OrderedDict(
            label=labels.astype(np.int32), pixels=(1.0 - images).astype(np.float32)
        )
    return tff.simulation.datasets.TestClientData(clients)


SYNTHETIC_EMNIST_MESSAGE = (
    "EMNIST: SYNTHETIC stand-in, not real handwriting. TFF's offline synthetic EMNIST "
    "(tff.simulation.datasets.emnist.get_synthetic: one hard-coded image per digit) is "
    "copied with random shifts and noise into {train} training writers and {test} new "
    "writers, each writing only {digits} of the 10 digits. The numbers below say nothing "
    "about real EMNIST. To use the real federated EMNIST (3,400 writers, 62 classes: digits and "
    "letters), set FEDRECON_EMNIST=real before starting Jupyter: TFF then downloads it from "
    "storage.googleapis.com, which needs network access."
)
REAL_EMNIST_MESSAGE = (
    "EMNIST: the REAL federated EMNIST (tff.simulation.datasets.emnist.load_data, "
    "only_digits=False: 3,400 writers, 62 classes). Training uses the writers' training "
    "examples; evaluation uses the held-out test examples of {test} writers."
)


def load_emnist(cfg: config.ExerciseConfig | None = None, choice: str | None = None) -> EmnistData:
    """EMNIST for exercise 4, and a printed message saying which data are in use.

    ``choice`` (default: ``settings.emnist_choice()``, that is ``FEDRECON_EMNIST``, else
    ``synthetic``) is ``synthetic``, built offline by :func:`synthetic_emnist`, or ``real``,
    which downloads the federated EMNIST with TFF (network access needed). The sizes and
    the batch size are ``cfg``'s (default: ``config.exercises()``).
    """
    cfg = cfg or config.exercises()
    choice = choice or settings.emnist_choice()
    if choice == "real":
        import tensorflow_federated as tff

        train, test = tff.simulation.datasets.emnist.load_data(only_digits=False)
        rng = np.random.RandomState(cfg.seed)
        test_ids = sorted(
            rng.choice(test.client_ids, cfg.emnist_test_clients, replace=False).tolist()
        )
        data = EmnistData(
            train=train,
            test=test,
            train_ids=list(train.client_ids),
            test_ids=test_ids,
            num_classes=62,
            kind="real",
            batch_size=cfg.emnist_run.batch_size,
            description=REAL_EMNIST_MESSAGE.format(test=len(test_ids)),
        )
    else:
        train = synthetic_emnist(
            cfg.emnist_train_clients,
            cfg.emnist_examples_per_client,
            digits_per_client=DIGITS_PER_WRITER,
            seed=cfg.seed,
        )
        test = synthetic_emnist(
            cfg.emnist_test_clients,
            cfg.emnist_examples_per_client,
            digits_per_client=DIGITS_PER_WRITER,
            seed=cfg.seed + 1,
            prefix="new_writer",
        )
        data = EmnistData(
            train=train,
            test=test,
            train_ids=list(train.client_ids),
            test_ids=list(test.client_ids),
            num_classes=10,
            kind="synthetic",
            batch_size=cfg.emnist_run.batch_size,
            description=SYNTHETIC_EMNIST_MESSAGE.format(
                train=len(train.client_ids), test=len(test.client_ids), digits=DIGITS_PER_WRITER
            ),
        )
    print(wrap(data.description))
    return data


def personal_reconstruction_model(parts) -> object:
    """``(keras_model, global_layers, local_layers)`` as a ``ReconstructionModel`` on EMNIST."""
    import tensorflow_federated as tff

    keras_model, global_layers, local_layers = parts
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model,
        global_layers=global_layers,
        local_layers=local_layers,
        input_spec=emnist_input_spec(),
    )


def global_keras_model(parts) -> object:
    """A network without local layers as a ``tff.learning`` model, for plain FedAvg."""
    import tensorflow_federated as tff

    keras_model, _, local_layers = parts
    if local_layers:
        raise ValueError("FedAvg trains a fully global model: this one has local layers.")
    return tff.learning.models.from_keras_model(
        keras_model,
        loss=emnist_loss_fn(),
        input_spec=emnist_input_spec(),
        metrics=emnist_metrics_fn(),
    )


def compare_on_new_writers(data: EmnistData, trained: dict) -> pd.DataFrame:
    """Scores trained models on the test writers' held-out examples: one row per model.

    ``trained`` maps a name (``"FedRecon"``, ``"FedAvg"``) to ``(evaluation_process,
    model_weights)``: a ``build_fed_recon_eval`` process with a disjoint split, and the
    weights its training process ended with. Every model is scored on the same test
    writers, ``data.create_tf_datasets(data.test_ids, split="test")``. Columns: the
    process's metrics (``loss`` and ``accuracy``), rounded to 4 decimals.
    """
    test_datasets = data.create_tf_datasets(data.test_ids, split="test")
    scores = {
        name: training.evaluate(evaluation, weights, test_datasets)
        for name, (evaluation, weights) in trained.items()
    }
    return pd.DataFrame(scores).T.round(4)


# --------------------------------------------------------------------------------------
# Exercise 4: checks of the TFF calls
# --------------------------------------------------------------------------------------
