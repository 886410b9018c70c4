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

from collections.abc import Callable

import pandas as pd

from tutorial_utils import model
from tutorial_utils.config import WALKTHROUGH_RUN, FedReconRun
from tutorial_utils.plumbing import rounds, runtime


def build_training_process(
    model_fn: Callable,
    run: FedReconRun = WALKTHROUGH_RUN,
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
    **options,
):
    """``tff.learning.algorithms.build_fed_recon`` with SGD at ``run``'s three rates.

    ``model_fn`` returns any ``tff.learning.models.ReconstructionModel``; the loss and the
    metrics are matrix factorization's unless ``loss_fn`` and ``metrics_fn`` say otherwise.
    ``dataset_split_fn`` is TFF's default unless given, e.g.
    ``clients.tff_split_fn(run.train_split)``. ``options`` go to ``build_fed_recon`` as they
    are, e.g. ``model_aggregator_factory`` and ``client_weighting`` (``dp_training``).
    """
    import tensorflow_federated as tff

    runtime.start()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        server_optimizer_fn=sgd(run.server_lr),
        client_optimizer_fn=sgd(run.client_lr),
        reconstruction_optimizer_fn=sgd(run.reconstruction_lr),
        dataset_split_fn=dataset_split_fn,
        **options,
    )


def build_evaluation_process(
    model_fn: Callable,
    run: FedReconRun = WALKTHROUGH_RUN,
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
):
    """``tff.learning.algorithms.build_fed_recon_eval``: reconstruct at ``run``'s
    reconstruction rate, then evaluate.

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
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(run.reconstruction_lr),
        dataset_split_fn=dataset_split_fn,
    )


def build_fed_avg_process(model_fn: Callable, run: FedReconRun = WALKTHROUGH_RUN):
    """Plain federated averaging (``build_weighted_fed_avg``): every variable is global.

    ``model_fn`` returns a ``tff.learning.models.VariableModel`` (for instance from
    ``tff.learning.models.from_keras_model``); ``run.reconstruction_lr`` is unused.
    """
    import tensorflow_federated as tff

    runtime.start()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=sgd(run.client_lr),
        server_optimizer_fn=sgd(run.server_lr),
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
    clients,
    sampler,
    num_rounds: int,
    *,
    state=None,
    evaluate: Callable[[object], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "Training",
) -> tuple[object, pd.DataFrame]:
    """Runs ``num_rounds`` rounds, each on the clients ``sampler`` draws: the loop that
    notebook 03 writes out (sample, ``training_process.next``, keep
    ``metrics["client_work"]["train"]``), through :func:`rounds.run_rounds` for the
    progress bar and the optional evaluations.

    ``clients`` makes the datasets of a round from their ids: a ``clients.RatingClients``
    (its ``create_tf_datasets``) or any function ``ids -> list of datasets``. Works for
    any TFF learning process (FedRecon, FedAvg). Returns the final state and a table with
    one row of training metrics per round, numbered from 1. With ``evaluate(state)`` and
    ``eval_every``, validation metrics are added every ``eval_every`` rounds and after the
    last one (``val_<metric>`` columns).
    """
    create_datasets = getattr(clients, "create_tf_datasets", clients)
    current = {"state": training_process.initialize() if state is None else state}

    def next_round(client_ids):
        current["state"], metrics = training_process.next(
            current["state"], create_datasets(client_ids)
        )
        return round_metrics(metrics)

    history = rounds.run_rounds(
        next_round,
        sampler,
        num_rounds,
        evaluate=None if evaluate is None else lambda: evaluate(current["state"]),
        eval_every=eval_every,
        progress=progress,
        desc=desc,
    )
    return current["state"], history
