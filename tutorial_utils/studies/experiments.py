"""Notebook 06's experiments: data for seen and unseen users, runs with checkpoints, tables.

Users are split as in the rest of the tutorial (train / validation / test by user). The
training users' ratings are further split, each user keeping a random ``held_out_fraction``
aside: training uses the rest, and those held-out ratings measure *seen* users (people who
took part in training). The test users are the *unseen* users: their data are split into a
reconstruction half and an evaluation half, as FedRecon's evaluation does. Every method is
measured on exactly the same ratings.

A user who has no embedding from training (every user of FedRecon, users the stateful
model never sampled, unseen users of ALS) gets one from the same ratings with the item
matrix fixed, by one of two solvers, and every method is scored with both (:data:`SOLVERS`):

- ``SGD``: FedRecon's reconstruction, with its budget (``config.run.eval_split``: up to 5
  passes at most 50 steps of batches of 5, rate 0.1, from a uniform draw);
- ``ridge``: the exact ridge solution (``baselines.fold_in``, regularization
  ``config.als_regularization``).

Then every method is scored on the same ratings: the RMSE and accuracy of its predictions
(``compare_methods``) and its top-N lists against a most-popular baseline
(``compare_recommendations``). ``training_budgets`` states what one round of each
federated method computes on a client.

The parameters are ``config.BeyondConfig`` (``config.beyond()``), the figures
``plotting.reconstruction_steps`` and ``plotting.method_comparison``, and the tables are
saved by ``plotting.save_table``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tutorial_utils.clients import DatasetSplit
from tutorial_utils.config import BeyondConfig
from tutorial_utils.simulation import simulator
from tutorial_utils.simulation.batches import PackedClients, PhaseBatches, RoundBatches
from tutorial_utils.studies import baselines, recommend

FEDRECON = "FedRecon (stateless)"
STATEFUL = "Stateful"
CENTRALIZED = "Centralized (ALS)"
POPULAR = "Most popular"
SGD = "SGD"  # FedRecon's reconstruction, with its step budget
RIDGE = "ridge"  # the exact ridge fold-in
SOLVERS = (SGD, RIDGE)

# ---------------------------------------------------------------------------------------
# Data: seen users' held-out ratings, unseen users' halves
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class SeenUsers:
    """The training users' ratings, split into what training uses and what is held out."""

    fit: PackedClients  # every training user, without the held-out ratings
    held_out: PackedClients  # the held-out ratings of the same users


@dataclasses.dataclass(frozen=True)
class Methods:
    """The trained models compared: FedRecon's and the stateful model's (a dict by rounds of
    training for :func:`compare_methods`, one model each for :func:`compare_recommendations`)
    and centralized ALS' ``(user embeddings, item matrix)``."""

    fedrecon: object
    stateful: object
    centralized: tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ScoredUsers:
    """Who is scored: ``seen_ids`` on their ratings held out in ``seen``, and the unseen
    ``unseen_ids`` on the evaluation half of their ratings in ``unseen``."""

    seen: SeenUsers
    seen_ids: list
    unseen: PackedClients
    unseen_ids: list


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


def solve_embeddings(
    config: BeyondConfig,
    item_matrix: np.ndarray,
    phase: PhaseBatches,
    solver: str,
    seed: int,
    init_range: tuple[float, float] = simulator.UNIFORM_INIT_RANGE,
) -> np.ndarray:
    """Every client's embedding fitted to its ratings in ``phase``, ``item_matrix`` fixed.

    ``SGD``: FedRecon's reconstruction (``recommend.reconstruct_embeddings``) from a uniform
    draw in ``init_range`` with ``seed``, at ``config.run.reconstruction_lr``, one
    step per batch of ``phase``; ``RIDGE``: ``baselines.fold_in`` with
    ``config.als_regularization``.
    """
    if solver == SGD:
        rng = np.random.default_rng(seed)
        initial = rng.uniform(
            *init_range, size=(phase.mask.shape[0], config.run.num_latent_factors)
        )
        return recommend.reconstruct_embeddings(
            item_matrix, phase, initial, config.run.reconstruction_lr
        )
    if solver == RIDGE:
        return baselines.fold_in(item_matrix, phase, config.als_regularization)
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")


def method_embeddings(
    config: BeyondConfig,
    model,
    group_ids,
    group: RoundBatches,
    seed: int,
    trained_embeddings: np.ndarray | None = None,
    solver: str = SGD,
) -> np.ndarray:
    """The embeddings one method gives the users ``group_ids`` before it predicts.

    ``group`` holds the users' batches (``seen_batches`` or ``unseen_batches``); an
    embedding a method has to solve comes from the reconstruction stage, never from the
    ratings it scores, by ``solver`` (:func:`solve_embeddings`).

    - ``FedReconSimulator``: every user's is solved (FedRecon keeps none).
    - ``StatefulSimulator``: the stored embedding; a user never sampled gets one solved.
    - an item matrix (ALS): ``trained_embeddings`` (one row per user) when given, otherwise
      solved.
    """
    if isinstance(model, simulator.FedReconSimulator):
        return solve_embeddings(
            config, model.item_matrix, group.recon, solver, seed, model.user_init_range
        )
    if isinstance(model, baselines.StatefulSimulator):
        ids = np.asarray(group_ids, np.int64)
        users = model.user_embeddings[ids].copy()
        untrained = ~model.trained[ids]
        if untrained.any():
            solved = solve_embeddings(
                config, model.item_matrix, group.recon, solver, seed, model.user_init_range
            )
            users[untrained] = solved[untrained]
        return users
    if trained_embeddings is not None:
        return trained_embeddings
    return solve_embeddings(config, np.asarray(model), group.recon, solver, seed)


def compare_methods(
    config: BeyondConfig, methods: Methods, users: ScoredUsers, seed: int
) -> pd.DataFrame:
    """Seen and unseen users' RMSE and accuracy for every method, solver and budget.

    - FedRecon: every user's embedding solved from its reconstruction ratings.
    - Stateful: each user's stored embedding; a user never sampled, and every unseen user,
      gets one solved from its reconstruction ratings.
    - Centralized (ALS): the embeddings from training; an unseen user's is solved.

    Each method appears once per solver (``solver``: :data:`SOLVERS`), with the same
    initial draw for SGD. ``with stored embedding`` columns give the share of users whose
    embedding was kept from training (the others got theirs at evaluation, from the same
    ratings for every method).
    """
    fedrecon, stateful, centralized = methods.fedrecon, methods.stateful, methods.centralized
    seen, seen_ids, unseen, unseen_ids = users.seen, users.seen_ids, users.unseen, users.unseen_ids
    split, batch_size = config.run.eval_split, config.run.batch_size
    seen_data = seen_batches(seen, seen_ids, split, batch_size, seed)
    unseen_data = unseen_batches(unseen, unseen_ids, split, batch_size, seed)
    seen_index, unseen_index = np.asarray(seen_ids, np.int64), np.asarray(unseen_ids, np.int64)
    user_embeddings, item_matrix = centralized
    als_seen = user_embeddings[seen.fit.rows(seen_ids)]
    rows = []

    def add(method, solver, rounds, model, trained, stored):
        scores = {}
        for group, ids, data in (
            ("seen", seen_ids, seen_data),
            ("unseen", unseen_ids, unseen_data),
        ):
            users = method_embeddings(
                config, model, ids, data, seed, trained if group == "seen" else None, solver
            )
            matrix = model if isinstance(model, np.ndarray) else model.item_matrix
            scores[group] = baselines.phase_metrics(matrix, users, data.post_recon)
        rows.append(
            {
                "method": method,
                "solver": solver,
                "rounds": rounds,
                "seen rmse": scores["seen"]["rmse"],
                "seen accuracy": scores["seen"]["rating_accuracy"],
                "unseen rmse": scores["unseen"]["rmse"],
                "unseen accuracy": scores["unseen"]["rating_accuracy"],
                "seen with stored embedding": stored[0],
                "unseen with stored embedding": stored[1],
            }
        )

    for solver in SOLVERS:
        for budget, model in sorted(fedrecon.items()):
            add(FEDRECON, solver, budget, model, None, (0.0, 0.0))
    for solver in SOLVERS:
        for budget, model in sorted(stateful.items()):
            stored = (
                float(model.trained[seen_index].mean()),
                float(model.trained[unseen_index].mean()),
            )
            add(STATEFUL, solver, budget, model, None, stored)
    for solver in SOLVERS:
        add(CENTRALIZED, solver, pd.NA, item_matrix, als_seen, (1.0, 0.0))
    table = pd.DataFrame(rows)
    table["rounds"] = table["rounds"].astype("Int64")
    return table


def training_budgets(config: BeyondConfig, clients: PackedClients, client_ids, seed: int):
    """What one round of each federated method computes on a client, mean over
    ``client_ids`` (the training users, on the ratings training uses).

    FedRecon: SGD steps on ``u`` (reconstruction, ``config.run.train_split``), then SGD
    steps on the item rows (the other half, capped); stateful: one pass over every rating,
    each step updating ``u`` and the item rows together. Columns: ``u`` steps, item
    steps, ratings the item steps use, and their share of the client's ratings.
    """
    rng = np.random.default_rng(seed)
    batch_size = config.run.batch_size
    fed = clients.round_batches(client_ids, config.run.train_split, batch_size, rng, False)
    joint = clients.round_batches(
        client_ids, DatasetSplit(split_dataset=False), batch_size, rng, False
    ).recon
    held = clients.counts[clients.rows(client_ids)].astype(np.float64)

    def row(user_steps, item_phase):
        ratings = item_phase.mask.sum(axis=(1, 2))
        return {
            "u steps": float(np.mean(user_steps)),
            "item steps": float(item_phase.mask.any(axis=2).sum(axis=1).mean()),
            "ratings in item steps": float(ratings.mean()),
            "share of the ratings": float((ratings / held).mean()),
        }

    table = pd.DataFrame(
        {
            FEDRECON: row(fed.recon.mask.any(axis=2).sum(axis=1), fed.post_recon),
            STATEFUL: row(joint.mask.any(axis=2).sum(axis=1), joint),
        }
    ).T
    table.index.name = "method"
    return table


# ---------------------------------------------------------------------------------------
# Part 4: are the recommendations personal?
# ---------------------------------------------------------------------------------------


def _movie_mask(phase: PhaseBatches, num_movies: int, min_rating: float = -np.inf) -> np.ndarray:
    """``[clients, movies]``: which movies each client has in ``phase`` (rated >= min_rating)."""
    chosen = phase.mask & (phase.ratings >= min_rating)
    mask = np.zeros((phase.mask.shape[0], num_movies), bool)
    client = np.broadcast_to(np.arange(len(mask))[:, None, None], chosen.shape)
    mask[client[chosen], phase.items[chosen]] = True
    return mask


def _packed_mask(clients: PackedClients, client_ids, num_movies: int) -> np.ndarray:
    """``[len(client_ids), movies]``: the movies each of ``client_ids`` rated in ``clients``."""
    rows = clients.rows(client_ids)
    mask = np.zeros((len(rows), num_movies), bool)
    valid = np.arange(clients.items.shape[1])[None, :] < clients.counts[rows, None]
    user = np.broadcast_to(np.arange(len(rows))[:, None], valid.shape)
    mask[user[valid], clients.items[rows][valid]] = True
    return mask


def compare_recommendations(
    config: BeyondConfig, methods: Methods, users: ScoredUsers, seed: int
) -> pd.DataFrame:
    """Top-N lists of every method, against the most popular movies, for seen and unseen users.

    ``methods.fedrecon`` and ``methods.stateful`` are trained models (one budget). Each
    user's embedding comes from ``method_embeddings``, once per solver (:data:`SOLVERS`;
    ``solver`` is ``-`` for the most popular movies); each method then ranks every movie it
    did not see for that user (a seen user: none of their training ratings; an unseen user:
    none of the reconstruction half). **Most popular** recommends the movies with the most training
    ratings, the same list for everyone but for the movies a user has already rated.
    A hit is a movie the user rated 4 or 5 stars in the ratings set aside (seen users'
    held-out ratings, unseen users' evaluation half): ``recommend.list_accuracy``.
    ``list overlap`` is the mean Jaccard similarity of two users' lists
    (``recommend.mean_jaccard``): near 1, everyone gets the same list.
    """
    fedrecon, stateful, centralized = methods.fedrecon, methods.stateful, methods.centralized
    seen, seen_ids, unseen, unseen_ids = users.seen, users.seen_ids, users.unseen, users.unseen_ids
    split, batch_size, n = config.run.eval_split, config.run.batch_size, config.num_recommendations
    num_movies = fedrecon.num_items
    popularity = _packed_mask(seen.fit, seen.fit.client_ids, num_movies).sum(axis=0)
    user_embeddings, item_matrix = centralized
    seen_data = seen_batches(seen, seen_ids, split, batch_size, seed)
    unseen_data = unseen_batches(unseen, unseen_ids, split, batch_size, seed)
    groups = {  # users, their batches, the movies not to recommend, ALS' trained embeddings
        "seen": (
            seen_ids,
            seen_data,
            _packed_mask(seen.fit, seen_ids, num_movies),
            user_embeddings[seen.fit.rows(seen_ids)],
        ),
        "unseen": (unseen_ids, unseen_data, _movie_mask(unseen_data.recon, num_movies), None),
    }
    rows = []
    for group, (ids, data, excluded, als_users) in groups.items():
        liked = _movie_mask(data.post_recon, num_movies, recommend.LIKED) & ~excluded
        scores = {}
        for solver in SOLVERS:
            for method, model, matrix, trained in (
                (FEDRECON, fedrecon, fedrecon.item_matrix, None),
                (STATEFUL, stateful, stateful.item_matrix, None),
                (CENTRALIZED, item_matrix, item_matrix, als_users),
            ):
                users = method_embeddings(config, model, ids, data, seed, trained, solver)
                scores[method, solver] = matrix @ users.T
        scores[POPULAR, "-"] = popularity.astype(np.float64)
        for (method, solver), score in scores.items():
            top = recommend.top_n(score.T, excluded, n)
            accuracy = recommend.list_accuracy(top, liked)
            rows.append(
                {
                    "method": method,
                    "solver": solver,
                    "users": group,
                    "users with a liked movie": accuracy["users"],
                    "hit rate": accuracy["hit rate"],
                    "precision": accuracy["precision"],
                    "list overlap": recommend.mean_jaccard(top, num_movies),
                }
            )
    return pd.DataFrame(rows)
