"""Federated Reconstruction with TFF 0.87: building the processes, training, evaluating.

TFF 0.87 names (the walkthrough's older names in brackets):

- ``tff.learning.algorithms.build_fed_recon``
  (``tff.learning.reconstruction.build_training_process``)
- ``tff.learning.algorithms.build_fed_recon_eval``
  (``tff.learning.reconstruction.build_federated_evaluation``)
- ``tff.learning.models.ReconstructionModel.from_keras_model_and_layers``
  (``tff.learning.reconstruction.from_keras_model``)
- ``tff.learning.optimizers.build_sgdm(lr)`` (``lambda: tf.keras.optimizers.SGD(lr)``)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import pandas as pd
from tqdm import tqdm

from tutorial_utils import model, runtime
from tutorial_utils.datasets import ClientSampler


@dataclasses.dataclass(frozen=True)
class LearningRates:
    """The three SGD learning rates of FedRecon (the walkthrough's values by default)."""

    server: float = 1.0
    client: float = 0.5
    reconstruction: float = 0.1


def build_training_process(
    model_fn: Callable,
    learning_rates: LearningRates = LearningRates(),
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
):
    """``tff.learning.algorithms.build_fed_recon`` with SGD at the given rates.

    ``model_fn`` returns any ``tff.learning.models.ReconstructionModel``; the loss and the
    metrics are matrix factorization's unless ``loss_fn`` and ``metrics_fn`` say otherwise.
    """
    import tensorflow_federated as tff

    runtime.start()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        server_optimizer_fn=sgd(learning_rates.server),
        client_optimizer_fn=sgd(learning_rates.client),
        reconstruction_optimizer_fn=sgd(learning_rates.reconstruction),
        dataset_split_fn=dataset_split_fn,
    )


def build_evaluation_process(
    model_fn: Callable,
    reconstruction_learning_rate: float = 0.1,
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
):
    """``tff.learning.algorithms.build_fed_recon_eval``: reconstruct, then evaluate.

    A model without local variables skips reconstruction and is scored on the second part
    of each client's data: that is how a fully global model is scored on the same examples
    as a partially local one.
    """
    import tensorflow_federated as tff

    runtime.start()
    return tff.learning.algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(
            reconstruction_learning_rate
        ),
        dataset_split_fn=dataset_split_fn,
    )


def build_fed_avg_process(model_fn: Callable, learning_rates: LearningRates = LearningRates()):
    """Plain federated averaging (``build_weighted_fed_avg``): every variable is global.

    ``model_fn`` returns a ``tff.learning.models.VariableModel`` (for instance from
    ``tff.learning.models.from_keras_model``); ``learning_rates.reconstruction`` is unused.
    """
    import tensorflow_federated as tff

    runtime.start()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=sgd(learning_rates.client),
        server_optimizer_fn=sgd(learning_rates.server),
    )


def fixed_order(dataset):
    """``dataset`` as one pass yields it, replayed in that same order on every pass.

    The clients' pipelines shuffle with ``reshuffle_each_iteration``, so each pass sees a
    new order. ``build_dataset_split_fn(split_dataset=True)`` takes the even batches of one
    pass for reconstruction and the odd batches of *another* pass for scoring, so on such
    data the two parts overlap. Evaluating on ``fixed_order`` copies keeps them disjoint.
    The batches (a smaller last one included) are those of the first pass, held in memory.
    """
    import numpy as np
    import tensorflow as tf

    batches = list(dataset.as_numpy_iterator())
    if not batches:
        return dataset
    batch_size = len(tf.nest.flatten(batches[0])[0])
    examples = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *batches)
    return tf.data.Dataset.from_tensor_slices(examples).batch(batch_size)


def round_metrics(metrics) -> dict[str, float]:
    """Loss and rating accuracy from the metrics of a training round, as plain floats."""
    train = metrics["client_work"]["train"]
    return {name: float(value) for name, value in train.items()}


def evaluate(evaluation_process, model_weights, client_datasets) -> dict[str, float]:
    """Evaluates ``model_weights`` on ``client_datasets``: loss and rating accuracy."""
    state = evaluation_process.initialize()
    state = evaluation_process.set_model_weights(state, model_weights)
    _, metrics = evaluation_process.next(state, client_datasets)
    current = metrics["client_work"]["eval"]["current_round_metrics"]
    return {name: float(value) for name, value in current.items()}


def train(
    training_process,
    clients,
    sampler: ClientSampler,
    num_rounds: int,
    *,
    state=None,
    progress: bool = True,
    desc: str = "Training",
):
    """Runs ``num_rounds`` rounds, each on the clients ``sampler`` draws.

    ``clients`` makes the datasets of a round from their ids: a :class:`RatingClients`
    (its ``create_tf_datasets``) or any function ``ids -> list of datasets``. Works for
    any TFF learning process (FedRecon, FedAvg). Returns the final state and a table with
    one row of training metrics per round; a progress bar shows the latest loss and
    accuracy.
    """
    create_datasets = getattr(clients, "create_tf_datasets", clients)
    state = training_process.initialize() if state is None else state
    rows = []
    bar = tqdm(range(num_rounds), desc=desc, unit="round", file=sys.stdout, disable=not progress)
    for round_num in bar:
        state, metrics = training_process.next(state, create_datasets(sampler.sample()))
        row = {"round": round_num, **round_metrics(metrics)}
        rows.append(row)
        shown = {
            "loss": row.get("loss"),
            "accuracy": row.get("rating_accuracy", row.get("accuracy")),
        }
        bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items() if v is not None}, refresh=False)
    return state, pd.DataFrame(rows).set_index("round")
