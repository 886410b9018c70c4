"""What a FedRecon update reveals, and what secure aggregation and DP change (notebook 07).

Three parts, each reusing the simulator's own pieces (one definition of the algorithm):

- **One update.** :func:`client_updates` runs a round's local work exactly as
  ``FedReconSimulator.run_round_batches`` does and returns, per client, the item-matrix
  delta it would send (``trained - received``) and the user embedding it reconstructed
  (which it never sends). :func:`changed_items` and :func:`membership_recovery` measure
  which movies the server reads off an update (the rows that changed).
  :func:`recover` is an attack by a server that knows the protocol: from one update, the
  item rows it sent, the client learning rate and the batch size, it solves for the user
  embedding ``u`` and for the ratings the client trained on after reconstruction.
  :func:`attack` scores it against the truth, client by client.
- **Secure aggregation.** :meth:`ClientUpdates.summed` is what the server sees when only
  the sum of a round's updates reaches it (:func:`rows_changed` reads it);
  ``dp_training.secure_sum_context`` runs TFF's secure aggregators in simulation, where
  TFF's test compiler replaces its secure-sum intrinsics by plain sums, in one process.
  No cryptography runs: a simulation shows what the server would learn, it protects
  nothing.
- **Differential privacy**: :func:`clipped` and :func:`dp_view` build what the server
  sees with TFF's DP aggregator (clipped updates; their sum plus Gaussian noise);
  ``tutorial_utils.studies.dp_training`` trains with it and counts the privacy spent.

Why the attack works
--------------------
After reconstruction the client freezes ``u`` and takes one SGD step per
post-reconstruction batch on the item rows of that batch. With one post-reconstruction
epoch every rated movie is in at most one step, so its row moves once, from the row the
server sent, ``v``, by ``-client_lr * (2 / B) * (u . v - r) * u`` (Keras' mean squared
error over a batch of ``B`` ratings ``r``). Every changed row is a multiple of ``u``: the
update's top singular vector gives ``u``'s direction ``e`` (``u = a e``), and each row
``i`` gives ``d_i = delta_i . e``. Then ``r_i = a (e . v_i) + b B d_i / (2 client_lr)``
with ``b = 1 / a``: two unknown numbers for all the rows. Ratings are whole stars, so
the pair that makes every ``r_i`` a whole number from 1 to 5 is found by taking the 6
rows that moved most and, for each of the 15 pairs of them, trying the 25 pairs of
ratings (solving for ``a`` and ``b`` each time), then checking on all the other rows.
``b`` is kept free, so an update scaled by an unknown factor (clipped) gives the same
ratings and the same ``u``; for the same reason the attack does not need ``client_lr``: a
wrong one only rescales ``b``. It needs the rows the server sent, and the batch size only
for a shorter last batch. A row of the client's last, shorter batch fits with its own
``B``, tried from 1 up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils.config import FedReconRun
from tutorial_utils.simulation import round_math
from tutorial_utils.simulation import simulator as fedrecon
from tutorial_utils.simulation.batches import PackedClients, RoundBatches
from tutorial_utils.simulation.program_inputs import trains_rows_once

View = tuple[np.ndarray, list[int]]  # a matrix the server sees, and whose updates are in it

# --------------------------------------------------------------------------------------
# What one update reveals
# --------------------------------------------------------------------------------------


@tf.function(
    input_signature=[
        *round_math.ROUND_SPECS,
        round_math.TRAINING_SPECS[7],  # client learning rate
        round_math.TRAINING_SPECS[-1],  # no table row is trained twice
    ],
    jit_compile=True,
)
def _local_updates(
    item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr, rows_once
):
    """The clients' part of a training round (``round_math.local_training``), compiled."""
    coefficients, user, _ = round_math.local_training(
        item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr, rows_once
    )
    return coefficients, user


class ClientUpdates(NamedTuple):
    """The updates of a round's clients, one row per (client, item) the client holds.

    ``delta[r]`` is how client ``clients[r]`` changed the row of item ``items[r]``
    (zero for an item it only used for reconstruction); ``users[c]`` is client ``c``'s
    reconstructed embedding, which stays on the device; ``weights[c]`` is its weight in
    TFF's default mean (its post-reconstruction examples).
    """

    items: np.ndarray  # [rows] int
    clients: np.ndarray  # [rows] int, 0 .. num_clients - 1
    delta: np.ndarray  # [rows, k] float32
    users: np.ndarray  # [clients, k] float32
    weights: np.ndarray  # [clients] float
    num_items: int

    @property
    def num_clients(self) -> int:
        return len(self.users)

    def client_delta(self, client: int) -> np.ndarray:
        """The full ``[num_items, k]`` update client ``client`` sends (zero rows elsewhere)."""
        full = np.zeros((self.num_items, self.delta.shape[1]), np.float32)
        mine = self.clients == client
        full[self.items[mine]] = self.delta[mine]
        return full

    def summed(self, weighted: bool = True) -> np.ndarray:
        """What secure aggregation reveals: the (example-weighted) sum of the updates."""
        weights = self.weights[self.clients] if weighted else np.ones(len(self.clients))
        total = np.zeros((self.num_items, self.delta.shape[1]), np.float64)
        np.add.at(total, self.items, self.delta * weights[:, None])
        return total


def client_updates(
    simulator: fedrecon.FedReconSimulator,
    batches: RoundBatches,
    rng: np.random.Generator | None = None,
) -> ClientUpdates:
    """Each client's update for one round on ``batches``, without changing ``simulator``.

    The user embeddings start from ``rng`` (default: the simulator's generator), as a
    training round draws them.
    """
    inputs, arguments = simulator.round_arguments(batches, rng)
    coefficients, users = _local_updates(
        *arguments, simulator.run.client_lr, trains_rows_once(inputs)
    )
    # A row's update is its coefficient times its client's reconstructed embedding.
    users = users.numpy()
    delta = coefficients.numpy()[:, None] * users[inputs.table_clients]
    used = np.zeros(len(inputs.table_items) + 1, bool)
    for rows, mask in (
        (inputs.recon_rows, inputs.recon_mask),
        (inputs.post_recon_rows, inputs.post_recon_mask),
    ):
        used[rows[mask > 0]] = True
    used = used[:-1]
    num_clients = batches.num_clients
    return ClientUpdates(
        items=inputs.table_items[used].astype(np.int64),
        clients=inputs.table_clients[used].astype(np.int64),
        delta=delta[used],
        users=users[:num_clients],
        weights=batches.post_recon.mask.sum(axis=(1, 2)).astype(np.float64),
        num_items=simulator.num_items,
    )


def rated_items(packed: PackedClients, client_ids: Sequence[int]) -> list[set[int]]:
    """The movies each client rated: the truth the recovery is scored against."""
    rows = packed.rows(client_ids)
    return [set(packed.items[r, : packed.counts[r]].tolist()) for r in rows]


def changed_items(updates: ClientUpdates) -> list[set[int]]:
    """Per client, the item rows its update changed: what the server reads off it."""
    moved = np.abs(updates.delta).max(axis=1) > 0
    found = [set() for _ in range(updates.num_clients)]
    for client, item in zip(updates.clients[moved], updates.items[moved]):
        found[client].add(int(item))
    return found


def rows_changed(matrix: np.ndarray) -> set[int]:
    """The rows of an aggregated update that are not zero."""
    return set(np.flatnonzero(np.abs(matrix).max(axis=1) > 0).tolist())


def membership_recovery(guesses: Sequence[set], truths: Sequence[set]) -> pd.DataFrame:
    """One row per client: its rated movies, the guessed ones, precision and recall.

    Precision: share of guessed movies the client rated (1 when nothing is guessed).
    Recall: share of its rated movies that were guessed.
    """
    rows = []
    for guess, truth in zip(guesses, truths, strict=True):
        hits = len(guess & truth)
        rows.append(
            {
                "rated": len(truth),
                "guessed": len(guess),
                "correct": hits,
                "precision": hits / len(guess) if guess else 1.0,
                "recall": hits / len(truth) if truth else 1.0,
            }
        )
    return pd.DataFrame(rows)


def update_norms(updates: ClientUpdates) -> np.ndarray:
    """The L2 norm of each client's whole update."""
    squares = (updates.delta.astype(np.float64) ** 2).sum(axis=1)
    return np.sqrt(np.bincount(updates.clients, squares, minlength=updates.num_clients))


def clipped(updates: ClientUpdates, clip: float) -> ClientUpdates:
    """The updates after TFF's DP clipping: each client's whole update scaled to L2 norm at
    most ``clip`` (``tf.clip_by_global_norm``), every client weighing 1."""
    scale = np.minimum(1.0, clip / np.maximum(update_norms(updates), 1e-30))
    return updates._replace(
        delta=(updates.delta * scale[updates.clients, None]).astype(np.float32),
        weights=np.ones(updates.num_clients),
    )


def dp_view(
    matrix: np.ndarray, clip: float, noise_multiplier: float, rng: np.random.Generator
) -> np.ndarray:
    """A sum of clipped updates (or one clipped update) plus the Gaussian noise of TFF's DP
    aggregator: std ``noise_multiplier * clip`` on every coordinate. (The aggregator then
    divides by the expected clients per round, which changes no attack.)"""
    return matrix + rng.normal(0.0, noise_multiplier * clip, matrix.shape)


def post_recon_ratings(batches: RoundBatches) -> pd.DataFrame:
    """The truth an attack is scored against: one row per (client, item) of the clients'
    post-reconstruction batches, with the rating (the mean, if an item came twice)."""
    post = batches.post_recon
    client = np.broadcast_to(np.arange(post.items.shape[0])[:, None, None], post.items.shape)
    return (
        pd.DataFrame(
            {
                "client": client[post.mask],
                "item": post.items[post.mask],
                "rating": post.ratings[post.mask],
            }
        )
        .groupby(["client", "item"], as_index=False)["rating"]
        .mean()
    )


class Recovery(NamedTuple):
    """What :func:`recover` reads off an update: the changed ``items``, a whole-star
    ``ratings`` for each, the ``user`` embedding, and which rows ``fit`` (their ratings
    came out whole to within the tolerance)."""

    items: np.ndarray
    ratings: np.ndarray
    user: np.ndarray
    fit: np.ndarray


def recover(
    update: np.ndarray,
    sent: np.ndarray,
    client_lr: float,
    batch_size: int,
    *,
    scale: tuple[int, int] = (1, 5),
    tolerance: float = 1e-3,
    anchors: int = 6,
) -> Recovery:
    """The attack of the module's docstring, on one ``[num_items, k]`` update (or any
    matrix the server sees), with the item matrix ``sent`` it broadcast, the client
    learning rate and the batch size. Ratings are whole stars in ``scale``.

    Candidate pairs ``(a, b)`` come from the 25 rating pairs of every two of the
    ``anchors`` rows that moved most; the pair under which most rows are whole (within
    ``tolerance``) wins (among equals, the one that rescales the update least), and is
    refitted by least squares on those rows.
    """
    rows = np.flatnonzero(np.abs(update).max(axis=1) > 0)
    k = update.shape[1]
    nothing = Recovery(rows, np.full(len(rows), np.nan), np.zeros(k), np.zeros(len(rows), bool))
    if len(rows) < 2:
        return nothing
    moved = update[rows].astype(np.float64)
    # The top right singular vector of the changed rows: the top eigenvector of their Gram
    # matrix (k x k, much faster than an SVD of the rows).
    direction = np.linalg.eigh(moved.T @ moved)[1][:, -1]
    p = sent[rows].astype(np.float64) @ direction
    q = batch_size * (moved @ direction) / (2 * client_lr)
    levels = np.arange(scale[0], scale[1] + 1, dtype=np.float64)
    low, high = scale

    def whole(values):
        rounded = np.round(values)
        return (np.abs(values - rounded) < tolerance) & (rounded >= low) & (rounded <= high)

    # Every pair of anchor rows i, j and ratings (r_i, r_j): solve the 2 x 2 system
    # a p_i + b q_i = r_i, a p_j + b q_j = r_j (Cramer's rule, all at once).
    pairs = np.array(list(combinations(np.argsort(-np.abs(q))[:anchors], 2)))
    i, j = pairs[:, 0], pairs[:, 1]
    det = p[i] * q[j] - p[j] * q[i]
    usable = np.abs(det) > 1e-12 * np.maximum(np.abs(p[i] * q[j]), np.abs(p[j] * q[i]))
    i, j, det = i[usable], j[usable], det[usable]
    r_i, r_j = (grid.ravel() for grid in np.meshgrid(levels, levels, indexing="ij"))
    a = (r_i[None] * q[j, None] - r_j[None] * q[i, None]) / det[:, None]
    b = (p[i, None] * r_j[None] - p[j, None] * r_i[None]) / det[:, None]
    candidates = np.stack([a.ravel(), b.ravel()], axis=1)
    # b = 1 / (s a) for an update scaled by s > 0: a and b have the same sign.
    candidates = candidates[candidates[:, 0] * candidates[:, 1] > 0]
    if not len(candidates):
        return nothing
    fits = whole(candidates[:, :1] * p + candidates[:, 1:] * q).sum(axis=1)
    # Most rows whole; among equals, the least rescaled update (a b nearest 1).
    a, b = min(candidates[fits == fits.max()], key=lambda ab: abs(np.log(ab[0] * ab[1])))
    fit = whole(a * p + b * q)
    if fit.sum() >= 2:
        basis = np.stack([p[fit], q[fit]], axis=1)
        (a, b), *_ = np.linalg.lstsq(basis, np.round(a * p + b * q)[fit], rcond=None)
    values = a * p + b * q
    fit = whole(values)
    for shorter in range(batch_size - 1, 0, -1):  # the last batch may hold fewer ratings
        values_short = a * p + b * q * shorter / batch_size
        newly = ~fit & whole(values_short)
        values[newly], fit[newly] = values_short[newly], True
    ratings = np.clip(np.round(values), low, high)
    return Recovery(rows, ratings, a * direction, fit)


def one_by_one(updates: ClientUpdates, clients: Sequence[int] | None = None) -> Iterator[View]:
    """What a server sees without secure aggregation: each client's own update (of
    ``clients``, default all), one at a time (each is a full item matrix)."""
    for client in range(updates.num_clients) if clients is None else clients:
        yield updates.client_delta(client), [client]


def in_rounds(updates: ClientUpdates, size: int, *, weighted: bool = True) -> Iterator[View]:
    """What a server sees with secure aggregation if these clients came ``size`` to a
    round (in order; a last, smaller round is dropped): each round's (example-weighted)
    sum of updates, with the clients in it, one round at a time."""
    for start in range(0, updates.num_clients - size + 1, size):
        members = list(range(start, start + size))
        keep = np.isin(updates.clients, members)
        part = updates._replace(
            items=updates.items[keep], clients=updates.clients[keep], delta=updates.delta[keep]
        )
        yield part.summed(weighted), members


def attack(
    views: Iterable[View],
    updates: ClientUpdates,
    batches: RoundBatches,
    sent: np.ndarray,
    client_lr: float,
    batch_size: int,
    **options,
) -> pd.DataFrame:
    """Runs :func:`recover` on what the server sees and scores it, one row per client.

    ``views`` holds pairs ``(matrix, clients)``: a matrix the server sees (one client's
    update, :func:`one_by_one`; a round's sum, :func:`in_rounds`; either with DP noise)
    and the clients whose updates are in it. Each matrix is attacked once and scored
    against each of its clients. Columns: ``ratings`` (the client's post-reconstruction
    ratings), ``exact`` (share of them recovered exactly, as whole stars), ``guess_4``
    (share that guessing 4 stars everywhere gets right, for reference), ``u_error``
    (``|u_found - u| / |u|``), ``norm_error`` (``||u_found| - |u|| / |u|``),
    ``named_precision`` and ``named_recall`` (the changed rows as a guess of the movies
    the client trained on after reconstruction).
    """
    truth = {c: mine for c, mine in post_recon_ratings(batches).groupby("client")}
    rows = []
    for matrix, members in views:
        found = recover(matrix, sent, client_lr, batch_size, **options)
        guessed = pd.Series(found.ratings, index=found.items)
        named = set(found.items.tolist())
        for client in members:
            mine = truth[client]
            ratings = mine["rating"].to_numpy()
            recovered = guessed.reindex(mine["item"]).to_numpy()
            user = updates.users[client].astype(np.float64)
            norm = np.linalg.norm(user)
            items = set(mine["item"].tolist())
            rows.append(
                {
                    "client": client,
                    "ratings": len(mine),
                    "exact": float(np.mean(recovered == ratings)),
                    "guess_4": float(np.mean(ratings == 4)),
                    "u_error": float(np.linalg.norm(found.user - user) / norm),
                    "norm_error": float(abs(np.linalg.norm(found.user) - norm) / norm),
                    "named_precision": len(named & items) / len(named) if named else 1.0,
                    "named_recall": len(named & items) / len(items),
                }
            )
    return pd.DataFrame(rows).set_index("client").sort_index()


def attack_summary(table: pd.DataFrame) -> dict[str, float]:
    """An :func:`attack` table in a few numbers: ratings in all, the share recovered
    exactly (over all ratings, and its lowest per client), guessing 4's share, and the
    median and largest ``u_error``."""
    total = table["ratings"].sum()
    return {
        "clients": len(table),
        "ratings": int(total),
        "exact": float((table["exact"] * table["ratings"]).sum() / total),
        "lowest_exact": float(table["exact"].min()),
        "guess_4": float((table["guess_4"] * table["ratings"]).sum() / total),
        "median_u_error": float(table["u_error"].median()),
        "largest_u_error": float(table["u_error"].max()),
        "named_precision": float(table["named_precision"].mean()),
    }


def mean_rating_rmse(
    packed: PackedClients,
    train_ids: Sequence[int],
    test_ids: Sequence[int],
    run: FedReconRun,
    *,
    seed: int = 42,
) -> dict[str, float]:
    """The baseline that predicts the training users' mean rating for every test rating,
    scored on the ratings the trade-off scores: those that
    ``simulator.FedReconSimulator.evaluate(packed, test_ids, reshuffle_each_pass=False, seed=seed)``
    evaluates after reconstruction (``run.eval_split``), not on all the test users' ratings.

    Returns ``mean`` (the training users' mean rating), ``rmse`` (on the scored ratings),
    ``num_examples`` (how many were scored) and ``rmse_all`` (on all the test ratings)."""

    def all_ratings(ids):
        return np.concatenate([packed.ratings[r, : packed.counts[r]] for r in packed.rows(ids)])

    mean = float(all_ratings(train_ids).mean())
    rng = np.random.default_rng(seed)  # as evaluate: the same generator, the same batches
    batches = packed.round_batches(test_ids, run.eval_split, run.batch_size, rng, False)
    post = batches.post_recon
    scored = post.ratings[post.mask].astype(np.float64)
    return {
        "mean": mean,
        "rmse": float(np.sqrt(np.mean((scored - mean) ** 2))),
        "num_examples": int(scored.size),
        "rmse_all": float(np.sqrt(np.mean((all_ratings(test_ids) - mean) ** 2))),
    }
