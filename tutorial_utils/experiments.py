"""Notebook 06's experiments: parameters, data for seen and unseen users, runs, tables, figures.

Users are split as in the rest of the tutorial (train / validation / test by user). The
training users' ratings are further split, each user keeping a random ``held_out_fraction``
aside: training uses the rest, and those held-out ratings measure *seen* users (people who
took part in training). The test users are the *unseen* users: their data are split into a
reconstruction half and an evaluation half, as FedRecon's evaluation does. Every method is
measured on exactly the same ratings.

Tables are saved as CSV and figures as PNG in ``settings.output_dir()``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tutorial_utils import baselines, plotting, settings, simulation


@dataclasses.dataclass(frozen=True)
class BeyondConfig:
    """Parameters of notebook 06 (``FEDRECON_CONFIG`` picks ``FULL`` or ``SMOKE``)."""

    name: str
    max_clients: int | None  # users loaded (None: all)
    num_latent_factors: int
    clients_per_round: int
    budgets: tuple[int, ...]  # rounds after which the models are compared (one run each)
    reconstruction_steps: tuple[int, ...]  # unseen users: SGD steps before evaluation
    als_iterations: int  # centralized ALS sweeps
    batch_size: int = 5
    max_examples_per_user: int = 300
    held_out_fraction: float = 0.2  # of each training user's ratings, for measuring seen users
    als_regularization: float = 0.1  # chosen on validation users among 0.03, 0.05, 0.1, 0.2
    num_recommendations: int = 10
    seed: int = 42

    @property
    def train_split(self) -> simulation.DatasetSplit:
        """The paper's protocol: up to 5 reconstruction epochs capped at 50 steps, then up to
        50 steps of training, on alternate batches."""
        return simulation.DatasetSplit(recon_epochs=5, recon_steps_max=50, post_recon_steps_max=50)

    @property
    def eval_split(self) -> simulation.DatasetSplit:
        """Unseen users: the same reconstruction, then every other batch is evaluated."""
        return simulation.DatasetSplit(recon_epochs=5, recon_steps_max=50)

    def fedrecon_config(self, num_items: int) -> simulation.FedReconConfig:
        """The simulator's settings: the tutorial's learning rates and this config's splits."""
        return simulation.FedReconConfig(
            num_items=num_items,
            num_latent_factors=self.num_latent_factors,
            batch_size=self.batch_size,
            train_split=self.train_split,
            eval_split=self.eval_split,
            reshuffle_each_pass=False,
        )


FULL = BeyondConfig(
    name="full",
    max_clients=None,
    num_latent_factors=50,
    clients_per_round=100,
    budgets=(5, 25, 100, 500),
    reconstruction_steps=(0, 1, 2, 5, 10, 20, 50),
    als_iterations=10,
)
SMOKE = BeyondConfig(
    name="smoke",
    max_clients=None,
    num_latent_factors=8,
    clients_per_round=10,
    budgets=(2, 5),
    reconstruction_steps=(0, 1, 5),
    als_iterations=2,
)


def current() -> BeyondConfig:
    """The configuration chosen by ``FEDRECON_CONFIG`` (``full`` unless set)."""
    return {"full": FULL, "smoke": SMOKE}[settings.run_config()]


# ---------------------------------------------------------------------------------------
# Data: seen users' held-out ratings, unseen users' halves
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class SeenUsers:
    """The training users' ratings, split into what training uses and what is held out."""

    fit: simulation.PackedClients  # every training user, without the held-out ratings
    held_out: simulation.PackedClients  # the held-out ratings of the same users


def hold_out_ratings(
    clients: simulation.PackedClients, client_ids, fraction: float, seed: int
) -> SeenUsers:
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
        simulation.PackedClients(ids, fit_items, fit_ratings),
        simulation.PackedClients(ids, held_items, held_ratings),
    )


def seen_batches(
    seen: SeenUsers, client_ids, recon_split: simulation.DatasetSplit, batch_size: int, seed: int
) -> simulation.RoundBatches:
    """Seen users: reconstruct on the ratings used in training, evaluate on the held-out ones.

    ``recon_split``'s reconstruction options apply to all of the user's training ratings.
    """
    rng = np.random.default_rng(seed)
    recon_split = dataclasses.replace(recon_split, split_dataset=False)
    recon = seen.fit.round_batches(client_ids, recon_split, batch_size, rng, False).recon
    one_pass = simulation.DatasetSplit(split_dataset=False)
    held = seen.held_out.round_batches(client_ids, one_pass, batch_size, rng, False).post_recon
    return simulation.RoundBatches(recon, held)


def unseen_batches(
    clients: simulation.PackedClients,
    client_ids,
    split: simulation.DatasetSplit,
    batch_size: int,
    seed: int,
) -> simulation.RoundBatches:
    """Unseen users: one shuffled order, alternate batches to reconstruct and to evaluate."""
    return clients.round_batches(
        client_ids, split, batch_size, np.random.default_rng(seed), reshuffle_each_pass=False
    )


def with_reconstruction_steps(
    batches_of, steps: int, batch_size: int, seed: int
) -> simulation.RoundBatches:
    """``unseen_batches`` with exactly ``steps`` reconstruction steps (0 allowed).

    ``batches_of(split)`` makes the batches for a split. Passes over the reconstruction
    half repeat as often as needed, so every user takes ``steps`` steps; the evaluation half
    is the same for every ``steps``.
    """
    split = simulation.DatasetSplit(recon_epochs=max(steps, 1), recon_steps_max=max(steps, 1))
    batches = batches_of(split)
    if steps == 0:
        recon = simulation.PhaseBatches(*(array[:, :0] for array in batches.recon))
        batches = simulation.RoundBatches(recon, batches.post_recon)
    return batches


# ---------------------------------------------------------------------------------------
# Training with checkpoints
# ---------------------------------------------------------------------------------------


def snapshot(simulator):
    """A copy of a FedRecon or stateful simulator's model, unaffected by further training."""
    if isinstance(simulator, simulation.FedReconSimulator):
        return simulation.FedReconSimulator(simulator.config, item_matrix=simulator.item_matrix)
    return copy.deepcopy(simulator)


def train_with_checkpoints(
    simulator, clients: simulation.PackedClients, sampler, budgets: tuple[int, ...], label: str
) -> dict:
    """Trains ``simulator`` for ``max(budgets)`` rounds, keeping a :func:`snapshot` at each budget.

    Returns ``{rounds: snapshot}``; prints one line per budget with the last round's
    training loss and accuracy.
    """
    snapshots, done = {}, 0
    for budget in sorted(budgets):
        history = simulation.train(simulator, clients, sampler, budget - done, progress=False)
        done = budget
        last = history.iloc[-1]
        print(
            f"{label}, {budget:4d} rounds: training loss {last['loss']:.3f}, "
            f"accuracy {last['rating_accuracy']:.3f}"
        )
        snapshots[budget] = snapshot(simulator)
    return snapshots


# ---------------------------------------------------------------------------------------
# Part 2: unseen users against reconstruction steps
# ---------------------------------------------------------------------------------------


def by_reconstruction_steps(
    config: BeyondConfig, snapshots: dict, clients: simulation.PackedClients, client_ids, seed: int
) -> pd.DataFrame:
    """Unseen users' RMSE and rating accuracy after each number of reconstruction steps.

    One row per (training budget, steps). Every row uses the same evaluation half and the
    same initial user embeddings.
    """
    rows = []
    for budget, simulator in sorted(snapshots.items()):
        for steps in config.reconstruction_steps:
            batches = with_reconstruction_steps(
                lambda split: unseen_batches(clients, client_ids, split, config.batch_size, seed),
                steps,
                config.batch_size,
                seed,
            )
            metrics = simulator.evaluate_batches(batches, np.random.default_rng(seed))
            rows.append(
                {
                    "rounds": budget,
                    "steps": steps,
                    "rmse": metrics["rmse"],
                    "rating_accuracy": metrics["rating_accuracy"],
                }
            )
    return pd.DataFrame(rows)


def plot_reconstruction_steps(table: pd.DataFrame, name: str = "06_reconstruction_steps") -> Figure:
    """RMSE and rating accuracy of unseen users against steps, one line per budget."""
    fig = plt.figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    steps = sorted(table["steps"].unique())
    position = {s: i for i, s in enumerate(steps)}
    for budget, group in table.groupby("rounds"):
        x = group["steps"].map(position)
        for ax, column in zip(axes, ("rmse", "rating_accuracy")):
            ax.plot(x, group[column], marker="o", label=f"{budget} rounds")
    for ax, label in zip(axes, ("RMSE", "Rating accuracy")):
        ax.set(
            xticks=range(len(steps)),
            xticklabels=steps,
            xlabel="Reconstruction steps",
            ylabel=label,
            title=f"Unseen users: {label if label == 'RMSE' else label.lower()}",
        )
        ax.grid(alpha=0.3)
        ax.legend(title="Trained for")
    fig.set_layout_engine("tight")
    plotting.save(fig, name)
    return fig


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
    unseen: simulation.PackedClients,
    unseen_ids,
    seed: int,
) -> pd.DataFrame:
    """Seen and unseen users' RMSE and accuracy for every method and budget.

    - FedRecon: each user reconstructs its embedding on the device (``eval_split``).
    - Stateful: each user's stored embedding; a user never sampled, and every unseen user,
      has only the initializer's.
    - Centralized (ALS): the embeddings from training; an unseen user's is solved from its
      reconstruction half with the item matrix fixed (``baselines.fold_in``).

    ``trained embedding`` columns give the share of users whose embedding was fitted to
    their own ratings.
    """
    seen_data = seen_batches(seen, seen_ids, config.eval_split, config.batch_size, seed)
    unseen_data = unseen_batches(unseen, unseen_ids, config.eval_split, config.batch_size, seed)
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

    for budget, simulator in sorted(fedrecon.items()):
        add(
            "FedRecon (stateless)",
            budget,
            simulator.evaluate_batches(seen_data, np.random.default_rng(seed)),
            simulator.evaluate_batches(unseen_data, np.random.default_rng(seed)),
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


def plot_comparison(table: pd.DataFrame, name: str = "06_stateless_vs_stateful") -> Figure:
    """RMSE and accuracy against training rounds, seen and unseen users in separate panels.

    The centralized reference (no rounds) is a dashed horizontal line; the stateful points
    of seen users are labelled with the share of them that have a stored embedding.
    """
    fig = plt.figure(figsize=(11, 7))
    axes = fig.subplots(2, 2)
    federated = table[table["rounds"].notna()]
    reference = table[table["rounds"].isna()]
    for col, group in enumerate(("seen", "unseen")):
        for row, (metric, label) in enumerate((("rmse", "RMSE"), ("accuracy", "rating accuracy"))):
            ax = axes[row, col]
            column = f"{group} {metric}"
            for method, runs in federated.groupby("method", sort=False):
                rounds = runs["rounds"].astype(int)
                ax.plot(rounds, runs[column], marker="o", label=method)
                if method == "Stateful" and group == "seen":
                    for x, y, share in zip(
                        rounds, runs[column], runs[f"{group} with trained embedding"]
                    ):
                        ax.annotate(
                            f"{share:.0%}",
                            (x, y),
                            textcoords="offset points",
                            xytext=(0, 6),
                            ha="center",
                            fontsize=8,
                            color="tab:orange",
                        )
            for _, ref in reference.iterrows():
                ax.axhline(ref[column], color="black", linestyle="--", label=ref["method"])
            ax.set(
                xscale="log",
                xlabel="Training rounds",
                ylabel=label[0].upper() + label[1:],
                title=f"{group.capitalize()} users: {label}",
            )
            ax.margins(y=0.12)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=9)
    fig.suptitle(
        "Orange labels: share of seen users with a stored embedding (stateful)", fontsize=10
    )
    fig.set_layout_engine("tight")
    plotting.save(fig, name)
    return fig


# ---------------------------------------------------------------------------------------
# Saving tables
# ---------------------------------------------------------------------------------------


def save_table(table: pd.DataFrame, name: str) -> Path:
    """Saves ``table`` as ``<output dir>/<name>.csv`` and returns the path."""
    directory = settings.output_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.csv"
    table.to_csv(path)
    return path
