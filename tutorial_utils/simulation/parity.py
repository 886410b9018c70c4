"""The simulator against TFF 0.87: the same rounds, compared number by number.

:func:`compare_with_tff` gives TFF's ``build_fed_recon`` and
:class:`simulator.FedReconSimulator` the same initial item matrix, the same initial user
embeddings (a constant, so that no random draw can differ), the same clients and the same
batches. It runs rounds of both, then scores every client with ``build_fed_recon_eval``
and with the simulator's evaluation. ``tests/test_simulator.py`` requires every difference
to stay below 1e-4; notebook 05 shows the table. TFF is imported only when called.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients
from tutorial_utils.clients import DatasetSplit, tff_split_fn
from tutorial_utils.config import FedReconRun
from tutorial_utils.plumbing import environment
from tutorial_utils.simulation import simulator
from tutorial_utils.simulation.batches import batches_from_datasets

USER_INIT = 0.01  # every user embedding starts at this constant, in both engines
METRICS = ("loss", "rating_accuracy")


def tff_installed() -> bool:
    """Whether TFF is there to compare with (notebook 05 runs without it)."""
    return environment.installed("tensorflow_federated")


def relative_difference(a: float, b: float) -> float:
    """``|a - b|`` relative to the larger of the two; 0 when they are equal."""
    return abs(a - b) / max(abs(a), abs(b)) if a != b else 0.0


def compare_with_tff(
    rating_clients: clients.RatingClients,
    num_items: int,
    run: FedReconRun,
    split: DatasetSplit,
    num_rounds: int = 5,
    clients_per_round: int = 10,
    seed: int = 3,
) -> pd.DataFrame:
    """``num_rounds`` rounds of ``run`` (its rates and latent factors) with ``split``, by TFF
    and by the simulator, then one evaluation of every client (TFF's default split).

    One row per round and one named ``"evaluation"``: both engines' loss and rating
    accuracy, the largest relative difference of the two metrics, and the largest absolute
    difference between the item matrices (rounds only).
    """
    import tensorflow_federated as tff

    # Imported here, as TFF is: the simulator's package needs neither.
    from tutorial_utils import model, training

    model_fn = model.reconstruction_model_fn(
        num_items,
        run.num_latent_factors,
        user_initializer=tf.keras.initializers.Constant(USER_INIT),
    )
    process = training.build_training_process(model_fn, run, tff_split_fn(split))
    initial = np.random.default_rng(1).uniform(-0.5, 0.5, (num_items, run.num_latent_factors))
    initial = initial.astype(np.float32)
    state = process.set_model_weights(
        process.initialize(), tff.learning.models.ModelWeights([initial], [])
    )
    ours = simulator.FedReconSimulator(
        run, num_items, item_matrix=initial, user_init_range=(USER_INIT, USER_INIT)
    )

    def row(name, theirs: dict, mine: dict, item_difference=np.nan) -> dict:
        return {
            "round": name,
            **{f"TFF {m}": theirs[m] for m in METRICS},
            **{f"simulator {m}": mine[m] for m in METRICS},
            "metric difference": max(relative_difference(mine[m], theirs[m]) for m in METRICS),
            "item difference": item_difference,
        }

    def batches(ids, batch_split: DatasetSplit):
        return batches_from_datasets(
            rating_clients.create_tf_datasets(ids), batch_split, rating_clients.batch_size
        )

    sampler = clients.ClientSampler(rating_clients.client_ids, clients_per_round, seed=seed)
    rows = []
    for number in range(1, num_rounds + 1):
        client_ids = sampler.sample()
        state, metrics = process.next(state, rating_clients.create_tf_datasets(client_ids))
        mine = ours.run_round_batches(batches(client_ids, split))
        theirs_matrix = process.get_model_weights(state).trainable[0]
        difference = float(np.abs(ours.item_matrix - theirs_matrix).max())
        rows.append(row(number, training.round_metrics(metrics), mine, difference))

    everyone = rating_clients.client_ids
    evaluation = training.build_evaluation_process(model_fn, run)
    theirs = training.evaluate(
        evaluation, process.get_model_weights(state), rating_clients.create_tf_datasets(everyone)
    )
    rows.append(row("evaluation", theirs, ours.evaluate_batches(batches(everyone, DatasetSplit()))))
    return pd.DataFrame(rows).set_index("round")
