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
from tutorial_utils.datasets import ClientSampler, RatingClients


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
):
    """``tff.learning.algorithms.build_fed_recon`` with SGD at the given rates."""
    import tensorflow_federated as tff

    runtime.start()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=model.loss_fn,
        metrics_fn=model.metrics_fn,
        server_optimizer_fn=sgd(learning_rates.server),
        client_optimizer_fn=sgd(learning_rates.client),
        reconstruction_optimizer_fn=sgd(learning_rates.reconstruction),
        dataset_split_fn=dataset_split_fn,
    )


def build_evaluation_process(
    model_fn: Callable,
    reconstruction_learning_rate: float = 0.1,
    dataset_split_fn: Callable | None = None,
):
    """``tff.learning.algorithms.build_fed_recon_eval``: reconstruct, then evaluate."""
    import tensorflow_federated as tff

    runtime.start()
    return tff.learning.algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=model.loss_fn,
        metrics_fn=model.metrics_fn,
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(
            reconstruction_learning_rate
        ),
        dataset_split_fn=dataset_split_fn,
    )


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
    clients: RatingClients,
    sampler: ClientSampler,
    num_rounds: int,
    *,
    state=None,
    progress: bool = True,
):
    """Runs ``num_rounds`` rounds, each on the clients ``sampler`` draws.

    Returns the final state and a table with one row of training metrics per round.
    A progress bar shows the latest loss and accuracy.
    """
    state = training_process.initialize() if state is None else state
    rows = []
    bar = tqdm(
        range(num_rounds), desc="Training", unit="round", file=sys.stdout, disable=not progress
    )
    for round_num in bar:
        client_datasets = clients.create_tf_datasets(sampler.sample())
        state, metrics = training_process.next(state, client_datasets)
        row = {"round": round_num, **round_metrics(metrics)}
        rows.append(row)
        bar.set_postfix(
            loss=f"{row['loss']:.3f}", accuracy=f"{row['rating_accuracy']:.3f}", refresh=False
        )
    return state, pd.DataFrame(rows).set_index("round")
