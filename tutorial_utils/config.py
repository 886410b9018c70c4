"""The tutorial's parameters: the walkthrough's (``full``) and a tiny ``smoke`` set.

``FEDRECON_CONFIG=smoke`` shrinks every notebook so that it only proves it runs (used by
the tests when the real data is not available). Notebooks read :func:`current` once and
print it, so a reader always sees which parameters produced the outputs below.
"""

from __future__ import annotations

import dataclasses

from tutorial_utils import settings


@dataclasses.dataclass(frozen=True)
class TutorialConfig:
    """Parameters shared by the notebooks."""

    name: str
    max_clients: int | None  # users loaded as clients (the walkthrough: 2000)
    batch_size: int
    max_examples_per_user: int
    num_latent_factors: int
    clients_per_round: int
    num_rounds: int
    seed: int = 42


FULL = TutorialConfig(
    name="full",
    max_clients=2000,
    batch_size=5,
    max_examples_per_user=300,
    num_latent_factors=50,
    clients_per_round=50,
    num_rounds=20,
)

SMOKE = TutorialConfig(
    name="smoke",
    max_clients=60,
    batch_size=5,
    max_examples_per_user=300,
    num_latent_factors=8,
    clients_per_round=5,
    num_rounds=2,
)


def current() -> TutorialConfig:
    """The configuration chosen by ``FEDRECON_CONFIG`` (``full`` unless set)."""
    return {"full": FULL, "smoke": SMOKE}[settings.run_config()]


# --------------------------------------------------------------------------------------
# Notebook 04: the exercises
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FedReconRun:
    """One FedRecon training run of matrix factorization (exercise 1).

    The split fields are the arguments of
    ``tff.learning.models.ReconstructionModel.build_dataset_split_fn``; the defaults are
    the walkthrough's (one pass over each half, no cap, 20 rounds of 50 clients).
    """

    recon_epochs: int = 1
    recon_steps_max: int | None = None
    post_recon_epochs: int = 1
    post_recon_steps_max: int | None = None
    server_lr: float = 1.0
    client_lr: float = 0.5
    reconstruction_lr: float = 0.1
    batch_size: int = 5
    clients_per_round: int = 50
    num_rounds: int = 20


_SHORT_NAMES = {
    "recon_epochs": "recon epochs",
    "recon_steps_max": "recon steps max",
    "post_recon_epochs": "post-recon epochs",
    "post_recon_steps_max": "post-recon steps max",
    "server_lr": "server lr",
    "client_lr": "client lr",
    "reconstruction_lr": "recon lr",
    "batch_size": "batch size",
    "clients_per_round": "clients/round",
    "num_rounds": "rounds",
}


def changes_from(run: FedReconRun, reference: FedReconRun) -> str:
    """What ``run`` changes from ``reference``, e.g. ``recon lr 0.5, rounds 200``."""
    return (
        ", ".join(
            f"{_SHORT_NAMES[field.name]} {getattr(run, field.name)}"
            for field in dataclasses.fields(run)
            if getattr(run, field.name) != getattr(reference, field.name)
        )
        or "(nothing)"
    )


# Exercise 1's split: 3 epochs of reconstruction capped at 50 steps, 1 epoch of
# post-reconstruction training capped at 50 steps; 100 rounds of 50 clients.
SPLIT_ALONE = FedReconRun(
    recon_epochs=3,
    recon_steps_max=50,
    post_recon_epochs=1,
    post_recon_steps_max=50,
    num_rounds=100,
)


@dataclasses.dataclass(frozen=True)
class ExerciseConfig:
    """Parameters of notebook 04 (the matrix factorization part also uses ``current()``)."""

    name: str
    tuned: FedReconRun  # exercise 1: the configuration the solution recommends
    comparison_rounds: int  # exercises 2 and 3: rounds of each run compared
    # Exercise 4: EMNIST with a personal user embedding, against FedAvg.
    emnist_train_clients: int  # synthetic data: writers used for training
    emnist_test_clients: int  # writers evaluated (new writers for synthetic data)
    emnist_examples_per_client: int  # synthetic data only
    emnist_batch_size: int
    emnist_clients_per_round: int
    emnist_rounds: int
    emnist_embedding_dim: int
    emnist_client_lr: float
    emnist_server_lr: float
    emnist_reconstruction_lr: float
    seed: int = 42


EXERCISES_FULL = ExerciseConfig(
    name="full",
    # The best validation accuracy of scripts/tune_exercise1.py (its table is in the
    # solutions notebook): five reconstruction epochs, three times the walkthrough's
    # reconstruction rate, 300 clients a round for 150 rounds.
    tuned=dataclasses.replace(
        SPLIT_ALONE, recon_epochs=5, reconstruction_lr=0.3, clients_per_round=300, num_rounds=150
    ),
    comparison_rounds=20,
    emnist_train_clients=100,
    emnist_test_clients=50,
    emnist_examples_per_client=40,
    emnist_batch_size=10,
    emnist_clients_per_round=10,
    emnist_rounds=30,
    emnist_embedding_dim=8,
    emnist_client_lr=0.05,
    emnist_server_lr=1.0,
    emnist_reconstruction_lr=0.1,
)

EXERCISES_SMOKE = ExerciseConfig(
    name="smoke",
    tuned=dataclasses.replace(EXERCISES_FULL.tuned, num_rounds=2, clients_per_round=5),
    comparison_rounds=2,
    emnist_train_clients=6,
    emnist_test_clients=4,
    emnist_examples_per_client=20,
    emnist_batch_size=10,
    emnist_clients_per_round=3,
    emnist_rounds=2,
    emnist_embedding_dim=4,
    emnist_client_lr=0.05,
    emnist_server_lr=1.0,
    emnist_reconstruction_lr=0.1,
)


def exercises() -> ExerciseConfig:
    """Notebook 04's parameters for ``FEDRECON_CONFIG`` (``full`` unless set)."""
    return {"full": EXERCISES_FULL, "smoke": EXERCISES_SMOKE}[settings.run_config()]
