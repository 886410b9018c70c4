"""Notebook 06's experiments: data for seen and unseen users, runs with checkpoints, tables.

Users are split as in the rest of the tutorial (train / validation / test by user). The
training users' ratings are further split, each user keeping a random ``held_out_fraction``
aside: training uses the rest, and those held-out ratings measure *seen* users (people who
took part in training). The test users are the *unseen* users: their data are split into a
reconstruction half and an evaluation half, as FedRecon's evaluation does. Every method is
measured on exactly the same ratings.

The parameters are ``config.BeyondConfig`` (``config.beyond()``), the figures
``plotting.reconstruction_steps`` and ``plotting.method_comparison``, and the tables are
saved by ``reporting.save_table``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tutorial_utils import baselines, simulator
from tutorial_utils.batches import PackedClients, PhaseBatches, RoundBatches
from tutorial_utils.config import BeyondConfig
from tutorial_utils.splits import DatasetSplit

# ---------------------------------------------------------------------------------------
# Data: seen users' held-out ratings, unseen users' halves
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class SeenUsers:
    """The training users' ratings, split into what training uses and what is held out."""

    fit: PackedClients  # every training user, without the held-out ratings
    held_out: PackedClients  # the held-out ratings of the same users


def hold_out_ratings(clients: PackedClients, client_ids, fraction: float, seed: int) -> SeenUsers:
    """Puts a random ``fraction`` of each user's ratings aside (at least 1; at least 1 kept)."""
    rng = np.random.default_rng(seed)
    fit_items, fit_ratings, held_items, held_ratings = [], [], [], []
    for row in clients.rows(client_ids):
        count = clients.counts[row]
        if count < 2:
            raise ValueError(f"User {clients.client_ids[row]} has fewer than 2 ratings.")
        num_held = min(max(1, round(fraction * count)), count - 1)
        order = rng.permutation(count)
        held, fit = order[:num_held], np.sort(order[num_held:])
        fit_items.append(clients.items[row, fit])
        fit_ratings.append(clients.ratings[row, fit])
        held_items.append(clients.items[row, held])
        held_ratings.append(clients.ratings[row, held])
    ids = [int(c) for c in client_ids]
    return SeenUsers(
        PackedClients(ids, fit_items, fit_ratings),
        PackedClients(ids, held_items, held_ratings),
    )


def seen_batches(
    seen: SeenUsers, client_ids, recon_split: DatasetSplit, batch_size: int, seed: int
) -> RoundBatches:
    """Seen users: reconstruct on the ratings used in training, evaluate on the held-out ones.

    ``recon_split``'s reconstruction options apply to all of the user's training ratings.
    """
    rng = np.random.default_rng(seed)
    recon_split = dataclasses.replace(recon_split, split_dataset=False)
    recon = seen.fit.round_batches(client_ids, recon_split, batch_size, rng, False).recon
    one_pass = DatasetSplit(split_dataset=False)
    held = seen.held_out.round_batches(client_ids, one_pass, batch_size, rng, False).post_recon
    return RoundBatches(recon, held)


def unseen_batches(
    clients: PackedClients,
    client_ids,
    split: DatasetSplit,
    batch_size: int,
    seed: int,
) -> RoundBatches:
    """Unseen users: one shuffled order, alternate batches to reconstruct and to evaluate."""
    return clients.round_batches(
        client_ids, split, batch_size, np.random.default_rng(seed), reshuffle_each_pass=False
    )


def with_reconstruction_steps(batches_of, steps: int, batch_size: int, seed: int) -> RoundBatches:
    """``unseen_batches`` with exactly ``steps`` reconstruction steps (0 allowed).

    ``batches_of(split)`` makes the batches for a split. Passes over the reconstruction
    half repeat as often as needed, so every user takes ``steps`` steps; the evaluation half
    is the same for every ``steps``.
    """
    split = DatasetSplit(recon_epochs=max(steps, 1), recon_steps_max=max(steps, 1))
    batches = batches_of(split)
    if steps == 0:
        recon = PhaseBatches(*(array[:, :0] for array in batches.recon))
        batches = RoundBatches(recon, batches.post_recon)
    return batches


# ---------------------------------------------------------------------------------------
# Training with checkpoints
# ---------------------------------------------------------------------------------------


def train_with_checkpoints(
    model, clients: PackedClients, sampler, budgets: tuple[int, ...], label: str
) -> dict:
    """Trains ``model`` (a FedRecon or stateful simulator) for ``max(budgets)`` rounds,
    keeping its ``snapshot()`` at each budget.

    Returns ``{rounds: snapshot}``; prints one line per budget with the last round's
    training loss and accuracy.
    """
    snapshots, done = {}, 0
    for budget in sorted(budgets):
        history = simulator.train(model, clients, sampler, budget - done, progress=False)
        done = budget
        last = history.iloc[-1]
        print(
            f"{label}, {budget:4d} rounds: training loss {last['loss']:.3f}, "
            f"accuracy {last['rating_accuracy']:.3f}"
        )
        snapshots[budget] = model.snapshot()
    return snapshots


# ---------------------------------------------------------------------------------------
# Part 2: unseen users against reconstruction steps
# ---------------------------------------------------------------------------------------


def by_reconstruction_steps(
    config: BeyondConfig, snapshots: dict, clients: PackedClients, client_ids, seed: int
) -> pd.DataFrame:
    """Unseen users' RMSE and rating accuracy after each number of reconstruction steps.

    One row per (training budget, steps). Every row uses the same evaluation half and the
    same initial user embeddings.
    """
    rows = []
    batch_size = config.run.batch_size
    for budget, model in sorted(snapshots.items()):
        for steps in config.reconstruction_steps:
            batches = with_reconstruction_steps(
                lambda split: unseen_batches(clients, client_ids, split, batch_size, seed),
                steps,
                batch_size,
                seed,
            )
            metrics = model.evaluate_batches(batches, np.random.default_rng(seed))
            rows.append(
                {
                    "rounds": budget,
                    "steps": steps,
                    "rmse": metrics["rmse"],
                    "rating_accuracy": metrics["rating_accuracy"],
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Part 3: stateless, stateful and centralized
# ---------------------------------------------------------------------------------------


def compare_methods(
    config: BeyondConfig,
    fedrecon: dict,
    stateful: dict,
    centralized: tuple[np.ndarray, np.ndarray],
    seen: SeenUsers,
    seen_ids,
    unseen: PackedClients,
    unseen_ids,
    seed: int,
) -> pd.DataFrame:
    """Seen and unseen users' RMSE and accuracy for every method and budget.

    - FedRecon: each user reconstructs its embedding on the device (``config.run.eval_split``).
    - Stateful: each user's stored embedding; a user never sampled, and every unseen user,
      has only the initializer's.
    - Centralized (ALS): the embeddings from training; an unseen user's is solved from its
      reconstruction half with the item matrix fixed (``baselines.fold_in``).

    ``trained embedding`` columns give the share of users whose embedding was fitted to
    their own ratings.
    """
    split, batch_size = config.run.eval_split, config.run.batch_size
    seen_data = seen_batches(seen, seen_ids, split, batch_size, seed)
    unseen_data = unseen_batches(unseen, unseen_ids, split, batch_size, seed)
    rows = []

    def add(method, rounds, seen_metrics, unseen_metrics, seen_trained, unseen_trained):
        rows.append(
            {
                "method": method,
                "rounds": rounds,
                "seen rmse": seen_metrics["rmse"],
                "seen accuracy": seen_metrics["rating_accuracy"],
                "unseen rmse": unseen_metrics["rmse"],
                "unseen accuracy": unseen_metrics["rating_accuracy"],
                "seen with trained embedding": seen_trained,
                "unseen with trained embedding": unseen_trained,
            }
        )

    for budget, model in sorted(fedrecon.items()):
        add(
            "FedRecon (stateless)",
            budget,
            model.evaluate_batches(seen_data, np.random.default_rng(seed)),
            model.evaluate_batches(unseen_data, np.random.default_rng(seed)),
            1.0,
            1.0,
        )
    seen_index = np.asarray(seen_ids, np.int64)
    for budget, stored in sorted(stateful.items()):
        add(
            "Stateful",
            budget,
            baselines.phase_metrics(
                stored.item_matrix, stored.embeddings(seen_ids, seed), seen_data.post_recon
            ),
            baselines.phase_metrics(
                stored.item_matrix, stored.embeddings(unseen_ids, seed), unseen_data.post_recon
            ),
            float(stored.trained[seen_index].mean()),
            float(stored.trained[np.asarray(unseen_ids, np.int64)].mean()),
        )
    user_embeddings, item_matrix = centralized
    add(
        "Centralized (ALS)",
        pd.NA,
        baselines.phase_metrics(
            item_matrix, user_embeddings[seen.fit.rows(seen_ids)], seen_data.post_recon
        ),
        baselines.phase_metrics(
            item_matrix,
            baselines.fold_in(item_matrix, unseen_data.recon, config.als_regularization),
            unseen_data.post_recon,
        ),
        1.0,
        1.0,
    )
    table = pd.DataFrame(rows)
    table["rounds"] = table["rounds"].astype("Int64")
    return table
