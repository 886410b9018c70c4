"""Train, then score: one FedRecon run on MovieLens, by TFF or by the simulator.

:func:`train_and_score` is the one pipeline every notebook, script and command line uses
to compare runs: the same users (``config.TutorialConfig``: how many, their split by user),
the same training (:class:`config.FedReconRun`) and the same scoring. Validation and test
users are scored with ``run.eval_split`` on one fixed order per user, so reconstruction
and scoring never share a rating.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, config
from tutorial_utils.config import FedReconRun
from tutorial_utils.simulation import simulator as fedrecon_simulator
from tutorial_utils.simulation.batches import PackedClients

ENGINES = ("TFF", "simulator")


class MovieLensData(NamedTuple):
    """What runs train on: ``data.find_movielens()``'s source (it tells real from synthetic
    data) and the two tables ``data.load_movielens(source)`` returned."""

    source: object
    ratings: pd.DataFrame
    movies: pd.DataFrame


@dataclasses.dataclass
class RunResult:
    """What one run of :func:`train_and_score` produced."""

    run: FedReconRun
    config_name: str  # "full" or "smoke": the base configuration (users, seed)
    data_kind: str  # "movielens" or "synthetic"
    validation: dict
    test: dict
    history: pd.DataFrame
    seconds: float
    engine: str = "TFF"  # what trained it: "TFF" or "simulator"
    seed: int | None = None  # what drew the initial values, the clients and the batch orders

    def summary(self) -> dict:
        """One row for a table: the run's parameters, scores and time."""
        return {
            **dataclasses.asdict(self.run),
            "val_loss": self.validation["loss"],
            "val_accuracy": self.validation["rating_accuracy"],
            "test_loss": self.test["loss"],
            "test_accuracy": self.test["rating_accuracy"],
            "minutes": self.seconds / 60,
        }


def train_and_score(
    run: FedReconRun,
    movielens: MovieLensData,
    *,
    engine: str = "TFF",
    base: config.TutorialConfig | None = None,
    seed: int | None = None,
    split_fn: Callable | None = None,
    eval_every: int = 0,
    progress: bool = True,
) -> RunResult:
    """Trains matrix factorization with FedRecon as ``run`` says, then scores it.

    ``movielens`` holds the data (:class:`MovieLensData`). ``base`` (default
    ``config.current()``) gives the users and their split by user, always drawn with
    ``base.seed``. ``seed`` (default ``base.seed``) draws everything else:
    initial weights, the clients of each round, the simulator's batch orders.

    ``engine`` is ``"TFF"`` (``build_fed_recon``; seeds are set first, so a run repeats
    exactly) or ``"simulator"`` (the vectorized simulator of notebook 05: seconds instead of
    minutes; it draws its own random numbers, so its scores agree with TFF's within their
    spread over seeds, not digit for digit). With TFF only, ``split_fn`` replaces the
    training split built from ``run`` (exercise 2). A run that diverged has NaN losses
    and zero accuracy.

    With ``eval_every`` (a number of rounds), the validation users are also scored every
    ``eval_every`` rounds and after the last one, on the same disjoint halves: the history
    then has ``val_loss`` and ``val_rating_accuracy`` columns (NaN between evaluations),
    which ``plotting.learning_curves`` draws as points. The simulator's evaluations use
    their own random numbers, so they do not change its training rounds.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if not isinstance(eval_every, int) or isinstance(eval_every, bool) or eval_every < 0:
        raise ValueError(
            f"eval_every must be a whole number of rounds (0: no validation during "
            f"training), got {eval_every!r}."
        )
    if engine == "simulator" and split_fn is not None:
        raise ValueError("split_fn needs engine='TFF': the simulator has its own splits.")
    source, ratings_df, movies_df = movielens
    base = base or config.current()
    seed = base.seed if seed is None else seed
    start = time.monotonic()
    users = clients.user_split(
        ratings_df,
        batch_size=run.batch_size,
        max_examples_per_user=base.max_examples_per_user,
        max_clients=base.max_clients,
        seed=base.seed,
    )
    sampler = clients.ClientSampler(
        users.train_ids, min(run.clients_per_round, len(users.train_ids)), seed=seed
    )
    score = _train_tff if engine == "TFF" else _train_simulator
    history, scores = score(
        run, users, len(movies_df), sampler, seed, split_fn, eval_every, progress
    )
    return RunResult(
        run=run,
        config_name=base.name,
        data_kind=source.kind,
        validation=scores["validation"],
        test=scores["test"],
        history=history,
        seconds=time.monotonic() - start,
        engine=engine,
        seed=seed,
    )


def _train_tff(run, users, num_items, sampler, seed, split_fn, eval_every, progress):
    # Imported here: the simulator's runs need neither the Keras model nor TFF.
    from tutorial_utils import model, training

    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    model_fn = model.reconstruction_model_fn(num_items, run.num_latent_factors)

    process = training.build_training_process(
        model_fn, run, split_fn or clients.tff_split_fn(run.train_split)
    )
    evaluation = training.build_evaluation_process(
        model_fn, run, clients.tff_split_fn(run.eval_split)
    )

    def score(state, ids):
        datasets = users.clients.create_tf_datasets(ids, reshuffle_each_pass=False)
        return training.evaluate(evaluation, process.get_model_weights(state), datasets)

    state, history = training.train(
        process,
        users.clients,
        sampler,
        run.num_rounds,
        evaluate=lambda state: score(state, users.val_ids),
        eval_every=eval_every,
        progress=progress,
    )
    scores = {
        name: score(state, ids)
        for name, ids in (("validation", users.val_ids), ("test", users.test_ids))
    }
    return history, scores


def _train_simulator(run, users, num_items, sampler, seed, split_fn, eval_every, progress):
    packed = PackedClients.from_rating_clients(users.clients)
    simulator = fedrecon_simulator.FedReconSimulator(run, num_items, seed=seed)
    history = fedrecon_simulator.train(
        simulator,
        packed,
        sampler,
        run.num_rounds,
        eval_client_ids=users.val_ids,
        eval_every=eval_every,
        progress=progress,
        reshuffle_each_pass=False,
        seed=seed,
    )
    scores = {
        name: simulator.evaluate(packed, ids, reshuffle_each_pass=False, seed=seed)
        for name, ids in (("validation", users.val_ids), ("test", users.test_ids))
    }
    return history, scores
