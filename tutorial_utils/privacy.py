"""What a FedRecon update reveals, and user-level differential privacy (notebook 07).

Three parts, each reusing the simulator's own pieces (one definition of the algorithm):

- **One update.** :func:`client_updates` runs a round's local work exactly as
  ``FedReconSimulator.run_round_batches`` does and returns, per client, the item-matrix
  delta it would send (``trained - received``) and the user embedding it reconstructed
  (which it never sends). :func:`changed_items`, :func:`membership_recovery` and
  :func:`update_directions` measure what the server can read from them: which movies a
  client rated (the rows that changed) and, from the direction of each row, whether the
  rating was above or below the prediction.
- **Secure aggregation.** :meth:`ClientUpdates.summed` is what the server sees when only
  the sum of a round's updates reaches it (:func:`rows_changed` reads it);
  ``dp_training.secure_sum_context`` runs TFF's secure aggregators in simulation, where
  TFF's test compiler replaces its secure-sum intrinsics by plain sums, in one process.
  No cryptography runs: a simulation shows what the server would learn, it protects
  nothing.
- **Differential privacy** lives in ``tutorial_utils.dp_training``: TFF's fixed-clip
  Gaussian aggregator, the simulator's matching option, accounting and the trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import round_math
from tutorial_utils import simulator as fedrecon
from tutorial_utils.batches import PackedClients, RoundBatches
from tutorial_utils.program_inputs import trains_rows_once

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


def update_directions(
    updates: ClientUpdates, item_matrix: np.ndarray, batches: RoundBatches
) -> pd.DataFrame:
    """One row per changed (client, item) row: does it move towards the user embedding?

    Columns: ``rating`` (the client's, the mean if it rated the item twice),
    ``prediction`` (reconstructed user . received item row), ``towards`` (the row moved
    towards the user embedding: ``delta . u > 0``) and ``cosine`` (of ``delta`` and
    ``u``). Training moves an item row along ``u`` when the rating is above the
    prediction and against ``u`` when it is below.
    """
    post = batches.post_recon
    client = np.broadcast_to(np.arange(post.items.shape[0])[:, None, None], post.items.shape)
    ratings = (
        pd.DataFrame(
            {
                "client": client[post.mask],
                "item": post.items[post.mask],
                "rating": post.ratings[post.mask],
            }
        )
        .groupby(["client", "item"])["rating"]
        .mean()
    )
    moved = np.abs(updates.delta).max(axis=1) > 0
    delta = updates.delta[moved]
    who, item = updates.clients[moved], updates.items[moved]
    user = updates.users[who]
    along = np.einsum("rk,rk->r", delta, user)
    norms = np.linalg.norm(delta, axis=1) * np.linalg.norm(user, axis=1)
    table = pd.DataFrame(
        {
            "client": who,
            "item": item,
            "prediction": np.einsum("rk,rk->r", item_matrix[item], user),
            "towards": along > 0,
            "cosine": along / np.maximum(norms, 1e-30),
        }
    )
    return table.join(ratings, on=["client", "item"])


def direction_summary(directions: pd.DataFrame, high: float = 4.0) -> dict[str, float]:
    """What the directions say about the ratings, in a few numbers.

    ``rank_one``: mean ``|cosine|`` (1: every row moves along ``u``, so one update shows
    the user embedding's direction); ``sign_matches_residual``: share of rows with
    ``towards == (rating > prediction)``; the mean rating and the share of ratings of
    at least ``high`` among rows moving towards and away; their correlation.
    """
    towards = directions["towards"]
    above = directions["rating"] > directions["prediction"]
    high_rating = directions["rating"] >= high
    return {
        "rows": len(directions),
        "rank_one": float(directions["cosine"].abs().mean()),
        "sign_matches_residual": float((towards == above).mean()),
        "share_towards": float(towards.mean()),
        "mean_rating_towards": float(directions.loc[towards, "rating"].mean()),
        "mean_rating_away": float(directions.loc[~towards, "rating"].mean()),
        "high_share_towards": float(high_rating[towards].mean()),
        "high_share_away": float(high_rating[~towards].mean()),
        "correlation_with_rating": _correlation(towards, directions["rating"]),
    }


def _correlation(a, b) -> float:
    """Pearson's correlation, NaN when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
