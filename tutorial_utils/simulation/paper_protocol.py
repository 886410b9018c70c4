"""The paper's MovieLens protocol, with the data choices of the paper's own code.

Source: the code published with Singhal et al. 2021 ("Federated Reconstruction: Partially
Local Federated Learning", https://arxiv.org/abs/2102.03448), in the ``reconstruction/``
folder of https://github.com/google-research/federated. Its README gives the command of
the MovieLens baseline: SGD everywhere (client rate 0.5, server rate 1.0, reconstruction
rate 0.1), batches of 5, 100 clients a round, 500 rounds, reconstruction for 5 epochs capped
at 50 steps, post-reconstruction capped at 50 steps, split data (even batches reconstruct,
odd batches train). Its MovieLens flags add 50 latent factors, at most 300 ratings a user,
ratings not normalized, no biases and no regularization, and a split by user (80% train,
10% validation, 10% test). ``config.PAPER_RUN`` holds these numbers.

The same code makes the clients' data in a way the tutorial's pipelines do not:

1. each user's ratings are shuffled once with NumPy's legacy generator seeded with 42
   (re-seeded for every user), and the first 300 of that order are kept
   (``movielens_dataset.get_user_examples``); the tutorial keeps the first 300 in file order;
2. the client datasets are never shuffled again: every pass, in every round, reads the
   same order. Its ``split_dataset`` flag requires this ("multiple iterations through the
   dataset yield the same ordering"), or the two halves share ratings. The tutorial's
   pipelines draw a new order on every pass;
3. after training, the test score is one evaluation of 100 test clients sampled at random
   (``federated_movielens.run_federated``), not of every test user.

The users are split with the permutation of NumPy's legacy generator seeded with 42 over
the list of users, which is the one ``clients.split_clients`` uses. This module makes the
clients that way (:func:`paper_clients`), samples the test clients (:func:`test_sample`),
trains (:func:`train`) and scores (:func:`test_scores`); notebook 05 and
``benchmarks/benchmark_simulation.py`` both call it, so that they report one test score.
:func:`deviations` measures what each of the tutorial's own choices changes.

One thing is not copied: the paper's code draws every round's clients, its samples of
validation users and its 100 test users from NumPy's one global random stream, so there
each validation sample changes which clients train in later rounds. Here the training
clients (``clients.ClientSampler``), the validation evaluations and the test sample
(:func:`test_sample`) each have their own seed: evaluating does not change training, and
the 100 test users scored are not the ones the paper's code would score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tutorial_utils import clients as clients_module
from tutorial_utils.config import SimulationConfig
from tutorial_utils.simulation import simulator as simulator_module
from tutorial_utils.simulation.batches import PackedClients

SHUFFLE_SEED = 42  # ``movielens_dataset.NP_RANDOM_SEED``
SAMPLED_TEST_CLIENTS = 100  # the ``clients_per_round`` of the final test evaluation


class FixedOrderClients(PackedClients):
    """Clients whose every pass reads their ratings in the stored order.

    ``pass_keys`` returns increasing keys instead of random ones, so every pass of
    every round sorts them into the stored order, as the paper's datasets (never
    shuffled after the first, seeded shuffle) are read. It draws nothing from ``rng``.
    """

    def pass_keys(self, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
        width = shape[-1]
        keys = np.arange(width, dtype=np.float64) / width
        return np.array(np.broadcast_to(keys, shape))


def seeded_order(num_ratings: int, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """The order the paper's code gives a user's ``num_ratings`` ratings:
    ``np.random.seed(seed); np.random.shuffle(examples)`` on the ratings in file order."""
    order = np.arange(num_ratings)
    np.random.RandomState(seed).shuffle(order)
    return order


def user_arrays(ratings_df: pd.DataFrame) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Every user's movie ids and ratings in file order, users in id order."""
    users = ratings_df["UserID"].to_numpy()
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    items = ratings_df["MovieID"].to_numpy()[order].astype(np.int64)
    ratings = ratings_df["Rating"].to_numpy()[order].astype(np.float32)
    ids = [int(u) for u in np.flatnonzero(counts)]
    return (
        ids,
        [items[bounds[u] : bounds[u + 1]] for u in ids],
        [ratings[bounds[u] : bounds[u + 1]] for u in ids],
    )


def paper_clients(
    ratings_df: pd.DataFrame,
    max_examples_per_user: int = 300,
    *,
    seeded_shuffle: bool = True,
    fixed_order: bool = True,
    seed: int = SHUFFLE_SEED,
) -> PackedClients:
    """One client per user, holding ``max_examples_per_user`` of its ratings.

    The paper's code: ``seeded_shuffle`` (the user's ratings in :func:`seeded_order`, then
    the first ones kept) and ``fixed_order`` (a :class:`FixedOrderClients`). With both
    False, the tutorial's clients: the first ratings in file order, which the simulator
    shuffles anew (``PackedClients``).
    """
    ids, items, ratings = user_arrays(ratings_df)
    if seeded_shuffle:
        orders = [seeded_order(len(i), seed) for i in items]
        items = [i[o] for i, o in zip(items, orders)]
        ratings = [r[o] for r, o in zip(ratings, orders)]
    items = [i[:max_examples_per_user] for i in items]
    ratings = [r[:max_examples_per_user] for r in ratings]
    kind = FixedOrderClients if fixed_order else PackedClients
    return kind(ids, items, ratings)


def split_users(client_ids, seed: int = SHUFFLE_SEED) -> tuple[list[int], list[int], list[int]]:
    """Train, validation and test users, 80/10/10, as ``movielens_dataset.split_tf_datasets``."""
    return clients_module.split_clients(client_ids, 0.8, 0.1, seed)


def test_sample(test_ids, seed: int, size: int = SAMPLED_TEST_CLIENTS) -> list[int]:
    """``size`` test users drawn at random without replacement (all of them if fewer)."""
    size = min(size, len(test_ids))
    picks = np.random.RandomState(seed).choice(len(test_ids), size, replace=False)
    return sorted(int(test_ids[i]) for i in picks)


def new_simulator(protocol: SimulationConfig, num_items: int, fixed_order: bool = True):
    """The simulator of a run of ``protocol``, seeded with ``protocol.seed``.

    With ``fixed_order`` the clients' own order is read on every pass (the clients are
    :class:`FixedOrderClients`); without, the simulator draws a new order every pass, as
    the tutorial's pipelines do.
    """
    return simulator_module.FedReconSimulator(
        protocol.run, num_items, seed=protocol.seed, reshuffle_each_pass=not fixed_order
    )


def train(
    protocol: SimulationConfig,
    fedrecon,
    clients: PackedClients,
    train_ids,
    *,
    val_ids=None,
    progress: bool = False,
) -> pd.DataFrame:
    """``protocol.run.num_rounds`` rounds of ``fedrecon``, ``clients_per_round`` training
    users a round drawn with ``protocol.seed``; ``val_ids`` are evaluated every
    ``protocol.eval_every`` rounds (with their own seed: the rounds do not change)."""
    sampler = clients_module.ClientSampler(
        train_ids, protocol.run.clients_per_round, seed=protocol.seed
    )
    return simulator_module.train(
        fedrecon,
        clients,
        sampler,
        protocol.run.num_rounds,
        eval_client_ids=val_ids,
        eval_every=protocol.eval_every if val_ids is not None else 0,
        progress=progress,
        reshuffle_each_pass=False,
        seed=protocol.seed,
    )


def test_scores(fedrecon, clients: PackedClients, test_ids, seed: int) -> pd.DataFrame:
    """The test users' scores, two ways: the paper's (:func:`test_sample`: 100 sampled test
    users) and every test user. One row each: ``users``, ``loss``, ``rmse``,
    ``rating_accuracy``.

    Reconstruction and evaluation use the two halves of one order (disjoint), and the
    initial user embeddings come from ``seed``.
    """
    groups = {
        f"{min(SAMPLED_TEST_CLIENTS, len(test_ids))} sampled test users (the paper's)": (
            test_sample(test_ids, seed)
        ),
        f"all {len(test_ids)} test users": list(test_ids),
    }
    rows = {}
    for name, ids in groups.items():
        metrics = fedrecon.evaluate(clients, ids, reshuffle_each_pass=False, seed=seed)
        rows[name] = {
            "users": len(ids),
            "rmse": metrics["rmse"],
            "rating_accuracy": metrics["rating_accuracy"],
        }
    return pd.DataFrame(rows).T.astype({"users": int})


# Each of the tutorial's choices, one at a time, then both: (seeded shuffle, fixed order).
VARIANTS = {
    "the paper's: seeded shuffle, keep 300, one fixed order": (True, True),
    "first 300 in file order, one fixed order": (False, True),
    "seeded shuffle, keep 300, a new order every pass": (True, False),
    "first 300 in file order, a new order every pass": (False, False),
}


def deviations(
    protocol: SimulationConfig, ratings_df: pd.DataFrame, num_items: int, seed: int
) -> pd.DataFrame:
    """The protocol trained and scored once per data variant (:data:`VARIANTS`).

    Every run uses the same users, seeds, sampled clients and initial item matrix; only the
    ratings a client keeps and the order it reads them in change. Columns: the RMSE and
    rating accuracy of the 100 sampled test users and of every test user.
    """
    rows = {}
    for name, (seeded_shuffle, fixed_order) in VARIANTS.items():
        clients = paper_clients(
            ratings_df,
            protocol.max_examples_per_user,
            seeded_shuffle=seeded_shuffle,
            fixed_order=fixed_order,
        )
        train_ids, _, test_ids = split_users(clients.client_ids, protocol.seed)
        fedrecon = new_simulator(protocol, num_items, fixed_order)
        train(protocol, fedrecon, clients, train_ids)
        scores = test_scores(fedrecon, clients, test_ids, seed)
        sample, every = scores.index
        rows[name] = {
            "sampled rmse": scores.loc[sample, "rmse"],
            "sampled accuracy": scores.loc[sample, "rating_accuracy"],
            "all rmse": scores.loc[every, "rmse"],
            "all accuracy": scores.loc[every, "rating_accuracy"],
        }
    return pd.DataFrame(rows).T


def sample_spread(fedrecon, clients: PackedClients, test_ids, seeds) -> pd.DataFrame:
    """The RMSE and rating accuracy of one :func:`test_sample` per seed (each sample's
    embeddings drawn with its own seed): how much the paper's 100-user score moves with
    the sample alone. One row per seed."""
    rows = {}
    for seed in seeds:
        ids = test_sample(test_ids, seed)
        metrics = fedrecon.evaluate(clients, ids, reshuffle_each_pass=False, seed=seed)
        rows[seed] = {"rmse": metrics["rmse"], "rating_accuracy": metrics["rating_accuracy"]}
    table = pd.DataFrame(rows).T
    table.index.name = "sample seed"
    return table
