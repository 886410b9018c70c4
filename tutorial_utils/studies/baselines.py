"""What FedRecon is compared with: the stateful proposal and centralized training.

**Stateful federated matrix factorization** is the proposal the walkthrough describes
before FedRecon: the server sends the item matrix ``V`` to the sampled clients; each
client runs SGD on its ratings, updating ``V`` and its own user embedding ``u`` together;
the server averages the updates of ``V``, and every client *stores* ``u`` for the next time
it is sampled. A client that has never been sampled has only the initial ``u``, so users
who never took part in training get no trained embedding, unless they are given one when
they arrive: :meth:`StatefulSimulator.folded_in_embeddings` solves it from their ratings with
the item matrix fixed, as centralized training does for a new user (``fold_in``).

**Centralized matrix factorization** collects every training rating on one server and fits
``u . v`` by alternating least squares (ALS, with the weighted regularization of Zhou et al.
2008): the reference point of one server that sees every training rating.

Both use the same model as FedRecon (a rating is ``u . v``, no biases), and the helpers at
the end measure any user embeddings on the same batches as the simulator.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from tutorial_utils import metrics
from tutorial_utils.clients import DatasetSplit
from tutorial_utils.config import FedReconRun
from tutorial_utils.simulation.batches import PackedClients, PhaseBatches
from tutorial_utils.simulation.simulator import UNIFORM_INIT_RANGE, initial_item_matrix


class StatefulSimulator:
    """Stateful federated matrix factorization, every client of a round at once.

    Each round, every sampled client starts from its stored embedding (a fresh draw from
    ``user_init_range`` the first time), passes once over its shuffled ratings in batches
    of ``run.batch_size``, and at each batch takes one SGD step on ``u`` (at
    ``run.reconstruction_lr``) and on its copy of the item rows (at ``run.client_lr``)
    together. The server adds the example-weighted mean of the item deltas, times
    ``run.server_lr``, as FedRecon does. ``run``'s splits are unused: a client uses all of
    its ratings. ``num_users`` is the number of user ids (every id is below it).
    Methods mirror :class:`~tutorial_utils.simulation.simulator.FedReconSimulator`, so
    :func:`simulator.train` runs it.
    """

    def __init__(
        self,
        run: FedReconRun,
        num_items: int,
        num_users: int,
        seed: int = 0,
        *,
        user_init_range: tuple[float, float] = UNIFORM_INIT_RANGE,
        item_init_range: tuple[float, float] = UNIFORM_INIT_RANGE,
    ):
        self.run, self.num_items = run, num_items
        self.user_init_range, self.item_init_range = user_init_range, item_init_range
        self.rng = np.random.default_rng(seed)
        self.item_matrix = initial_item_matrix(run, num_items, self.rng, item_init_range)
        self.user_embeddings = np.zeros((num_users, run.num_latent_factors), np.float32)
        self.trained = np.zeros(num_users, bool)  # has the user ever been sampled?

    def snapshot(self) -> StatefulSimulator:
        """A copy of this model (item matrix, stored embeddings, generator), unaffected by
        further training."""
        return copy.deepcopy(self)

    def run_round(self, clients: PackedClients, client_ids: Sequence[int]) -> dict[str, float]:
        """One round on ``client_ids``; returns the loss and accuracy seen while training."""
        run, num_items = self.run, self.num_items
        k = run.num_latent_factors
        one_pass = DatasetSplit(split_dataset=False)
        batches = clients.round_batches(
            client_ids, one_pass, run.batch_size, self.rng, reshuffle_each_pass=False
        ).recon
        ids = np.asarray(client_ids, np.int64)
        users = self.user_embeddings[ids].copy()
        new = ~self.trained[ids]
        users[new] = self.rng.uniform(*self.user_init_range, size=(new.sum(), k))
        # One row per (client, item) pair: the clients' local copies of their item rows,
        # plus a scratch row that padded examples point at.
        num_clients, num_steps, _ = batches.mask.shape
        keys = np.arange(num_clients)[:, None, None] * num_items + batches.items
        pairs, inverse = np.unique(keys[batches.mask], return_inverse=True)
        rows = np.full(batches.mask.shape, len(pairs))
        rows[batches.mask] = inverse
        table = np.vstack([self.item_matrix[pairs % num_items], np.zeros((1, k), np.float32)])
        start = table.copy()
        # Unless a client rated a movie twice, no two examples of a step share a row, and
        # plain indexed addition is exact (and much faster than ``np.add.at``).
        distinct = len(pairs) == batches.mask.sum()
        loss_sum = num_batches = correct = 0.0
        for t in range(num_steps):
            mask, ratings = batches.mask[:, t], batches.ratings[:, t]
            vectors = table[rows[:, t]]
            predictions = np.einsum("cbk,ck->cb", vectors, users)
            count = mask.sum(axis=1, keepdims=True)
            errors = np.where(mask, predictions - ratings, 0.0)
            loss_sum += (np.square(errors).sum(axis=1) / np.maximum(count[:, 0], 1)).sum()
            num_batches += (count > 0).sum()
            correct += (mask & metrics.is_correct(ratings, predictions)).sum()
            d_predictions = 2.0 * errors / np.maximum(count, 1)
            d_users = np.einsum("cb,cbk->ck", d_predictions, vectors)
            update = -run.client_lr * d_predictions[..., None] * users[:, None]
            if distinct:  # each real example has its own row; padding adds 0 to the scratch row
                table[rows[:, t]] += update
            else:
                np.add.at(table, rows[:, t], update)
            users -= run.reconstruction_lr * d_users
        weights = batches.mask.sum(axis=(1, 2)).astype(np.float32)
        delta = (table - start)[:-1] * weights[pairs // num_items, None]
        total = np.zeros_like(self.item_matrix)
        np.add.at(total, pairs % num_items, delta)
        self.item_matrix += run.server_lr * total / weights.sum()
        self.user_embeddings[ids] = users
        self.trained[ids] = True
        num_examples = int(weights.sum())
        return {
            "loss": float(loss_sum / max(num_batches, 1)),
            "rating_accuracy": float(correct / max(num_examples, 1)),
            "num_examples": num_examples,
        }

    def embeddings(self, client_ids: Sequence[int], seed: int = 0) -> np.ndarray:
        """The stored embeddings of ``client_ids``; the initializer's for never-sampled ones."""
        ids = np.asarray(client_ids, np.int64)
        users = self.user_embeddings[ids].copy()
        untrained = ~self.trained[ids]
        users[untrained] = np.random.default_rng(seed).uniform(
            *self.user_init_range, size=(untrained.sum(), users.shape[1])
        )
        return users

    def folded_in_embeddings(
        self, client_ids: Sequence[int], phase: PhaseBatches, regularization: float
    ) -> np.ndarray:
        """The stored embeddings of ``client_ids``; a never-sampled user's is solved from
        its ratings in ``phase`` (client ``c`` of ``phase`` is ``client_ids[c]``) with the
        item matrix fixed (:func:`fold_in`)."""
        ids = np.asarray(client_ids, np.int64)
        if phase.mask.shape[0] != len(ids):
            raise ValueError(f"phase holds {phase.mask.shape[0]} clients, not {len(ids)}.")
        users = self.user_embeddings[ids].copy()
        untrained = ~self.trained[ids]
        if untrained.any():
            chosen = PhaseBatches(*(array[untrained] for array in phase))
            users[untrained] = fold_in(self.item_matrix, chosen, regularization)
        return users


# ---------------------------------------------------------------------------------------
# Centralized matrix factorization
# ---------------------------------------------------------------------------------------


def _ridge_rows(
    index: np.ndarray,
    other_index: np.ndarray,
    values: np.ndarray,
    other: np.ndarray,
    num_rows: int,
    regularization: float,
) -> np.ndarray:
    """For each row r: argmin_x sum_(i in r) (x . other_i - y_i)^2 + reg * n_r * |x|^2.

    Rows without values get 0.
    """
    k = other.shape[1]
    grams = np.zeros((num_rows, k, k))
    grams[:, np.arange(k), np.arange(k)] = 1.0  # rows without values: I x = 0
    targets = np.zeros((num_rows, k))
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(num_rows + 1))
    for row in np.flatnonzero(np.diff(bounds)):
        chosen = order[bounds[row] : bounds[row + 1]]
        vectors = other[other_index[chosen]].astype(np.float64)
        grams[row] = vectors.T @ vectors + regularization * len(chosen) * np.eye(k)
        targets[row] = vectors.T @ values[chosen]
    return np.linalg.solve(grams, targets[..., None])[..., 0].astype(np.float32)


def _flat_ratings(clients: PackedClients) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, item, rating)`` of every rating of ``clients``, row = the client's table row."""
    valid = np.arange(clients.items.shape[1])[None, :] < clients.counts[:, None]
    rows = np.broadcast_to(np.arange(len(clients))[:, None], valid.shape)
    return rows[valid], clients.items[valid], clients.ratings[valid]


def centralized_als(
    clients: PackedClients,
    num_items: int,
    num_latent_factors: int,
    *,
    regularization: float = 0.1,
    iterations: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Alternating least squares on every rating of ``clients``, gathered in one place.

    Returns ``(user_embeddings, item_matrix)``; ``user_embeddings[r]`` belongs to
    ``clients.client_ids[r]``. Items nobody rated keep a zero row.
    """
    users, items, ratings = _flat_ratings(clients)
    rng = np.random.default_rng(seed)
    item_matrix = rng.normal(0.0, 0.1, size=(num_items, num_latent_factors)).astype(np.float32)
    for _ in range(iterations):
        user_embeddings = _ridge_rows(
            users, items, ratings, item_matrix, len(clients), regularization
        )
        item_matrix = _ridge_rows(items, users, ratings, user_embeddings, num_items, regularization)
    return user_embeddings, item_matrix


def fold_in(
    item_matrix: np.ndarray, phase: PhaseBatches, regularization: float = 0.1
) -> np.ndarray:
    """Each client's embedding solved from its ratings in ``phase``, ``item_matrix`` fixed.

    The user half of one ALS step: how a centrally trained model gets an embedding for a
    new user. A client without ratings in ``phase`` gets 0.
    """
    num_clients = phase.mask.shape[0]
    client = np.broadcast_to(np.arange(num_clients)[:, None, None], phase.mask.shape)
    return _ridge_rows(
        client[phase.mask],
        phase.items[phase.mask],
        phase.ratings[phase.mask],
        np.asarray(item_matrix, np.float32),
        num_clients,
        regularization,
    )


# ---------------------------------------------------------------------------------------
# Measuring embeddings on the simulator's batches
# ---------------------------------------------------------------------------------------


def phase_metrics(
    item_matrix: np.ndarray, user_embeddings: np.ndarray, phase: PhaseBatches
) -> dict[str, float]:
    """RMSE and rating accuracy of ``u_c . v`` on client ``c``'s examples in ``phase``.

    Scored as the simulator scores (``metrics.is_correct`` and ``metrics.rmse``, over
    examples).
    """
    predictions = np.einsum(
        "cik,ck->ci",
        np.asarray(item_matrix)[phase.items.reshape(len(phase.items), -1)],
        np.asarray(user_embeddings),
    )
    mask = phase.mask.reshape(len(phase.mask), -1)
    ratings = phase.ratings.reshape(len(phase.ratings), -1)[mask]
    predictions = predictions[mask]
    num_examples = int(mask.sum())
    squared_error = float(np.sum(np.square((predictions - ratings).astype(np.float64))))
    correct = int(np.sum(metrics.is_correct(ratings, predictions)))
    return {
        "rmse": metrics.rmse(squared_error, num_examples),
        "rating_accuracy": correct / num_examples if num_examples else 0.0,
        "num_examples": num_examples,
    }
