"""Federated Reconstruction written out plainly: one client, one batch at a time, in NumPy.

This is the algorithm the simulator (``tutorial_utils.simulation.simulator``) vectorizes and TFF's
``build_fed_recon`` runs, in a form that fits on one screen. It is slow and meant for
reading; ``tests/test_simulator.py`` checks the simulator against it. A batch is a pair
``(movie_ids, ratings)``; a rating is predicted as ``user . item_matrix[movie]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tutorial_utils import metrics
from tutorial_utils.config import FedReconRun


class ClientUpdate(NamedTuple):
    """What one client computed: what it sends, and what it keeps."""

    delta: np.ndarray  # sent: trained item matrix minus the one received
    weight: int  # sent: its number of post-reconstruction examples
    user: np.ndarray  # kept on the device: the reconstructed user embedding
    batch_losses: list  # the loss of each post-reconstruction batch, before its step
    errors: np.ndarray  # prediction - rating of every post-reconstruction example


def client_step(item_matrix, recon_batches, post_batches, run: FedReconRun, user) -> ClientUpdate:
    """One client's round: reconstruct its embedding, then train its copy of the items."""
    items = np.array(item_matrix, np.float64)  # the client's copy of the global matrix
    user = np.array(user, np.float64)  # a fresh start: clients keep no state
    for movies, ratings in recon_batches:  # 1. reconstruction: SGD on u, items frozen
        error = items[movies] @ user - ratings
        user -= run.reconstruction_lr * 2 * error @ items[movies] / len(movies)
    batch_losses, errors = [], []
    for movies, ratings in post_batches:  # 2. training: SGD on the items, u frozen
        error = items[movies] @ user - ratings
        batch_losses.append(np.mean(error**2))
        errors.extend(error)
        gradient = np.zeros_like(items)  # non-zero only on this batch's movies
        np.add.at(gradient, movies, 2 * error[:, None] * user / len(movies))
        items -= run.client_lr * gradient
    weight = sum(len(movies) for movies, _ in post_batches)
    return ClientUpdate(items - item_matrix, weight, user, batch_losses, np.array(errors))


def server_step(item_matrix, updates: Sequence[ClientUpdate], run: FedReconRun) -> np.ndarray:
    """3. The server: the example-weighted mean of the deltas, times the server rate."""
    total_weight = sum(update.weight for update in updates)
    mean_delta = sum(update.weight * update.delta for update in updates) / total_weight
    return item_matrix + run.server_lr * mean_delta


def round_metrics(updates: Sequence[ClientUpdate]) -> dict[str, float]:
    """The round's metrics as TFF reports them: loss as a mean over batches, rating accuracy
    and RMSE over examples."""
    losses = [loss for update in updates for loss in update.batch_losses]
    errors = np.concatenate([update.errors for update in updates])
    return {
        "loss": float(np.mean(losses)),
        "rating_accuracy": float(np.mean(metrics.is_correct(errors, 0.0))),
        "num_examples": len(errors),
        "rmse": metrics.rmse(float(np.sum(errors**2)), len(errors)),
    }
