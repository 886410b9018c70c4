"""Every parameter of the tutorial: one run description, and each notebook's settings.

:class:`FedReconRun` describes one FedRecon training run, whatever trains it (TFF or the
simulator): model size, the three learning rates, batches, how each client's data is split,
clients per round and rounds. Its defaults are the walkthrough's. The notebooks' settings
hold a run plus what else their notebook needs (users, budgets, ...), in two versions:
``full`` (the real parameters) and ``smoke`` (tiny: it only proves a notebook runs), chosen
by ``FEDRECON_CONFIG``. Notebooks read their settings once and print them, so a reader always
sees which parameters produced the outputs below.
"""

from __future__ import annotations

import dataclasses

from tutorial_utils.clients import DatasetSplit
from tutorial_utils.plumbing import settings


@dataclasses.dataclass(frozen=True)
class FedReconRun:
    """One FedRecon training run of matrix factorization.

    The split fields are the arguments of
    ``tff.learning.models.ReconstructionModel.build_dataset_split_fn`` for training, which
    gives reconstruction the even batches of a client and training the odd ones
    (:attr:`train_split`). The halves are disjoint only if every pass over the client reads
    the same order: the tutorial's training clients reshuffle on every pass, so there the
    two stages share part of their ratings. Evaluation reads each user in one fixed order,
    reconstructs as training does and then scores one uncapped pass over the other,
    disjoint half (:attr:`eval_split`). The defaults are the
    walkthrough's: one pass over each half, no cap, SGD at 1.0 (server), 0.5 (client) and
    0.1 (reconstruction), 20 rounds of 50 clients, 50 latent factors.
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
    num_latent_factors: int = 50

    def __post_init__(self):
        for name in ("batch_size", "clients_per_round", "num_rounds", "num_latent_factors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        DatasetSplit(*dataclasses.astuple(self)[:4])  # checks the split fields

    @property
    def train_split(self) -> DatasetSplit:
        """How training splits a client's batches: the run's epochs and caps, disjoint halves."""
        return DatasetSplit(
            self.recon_epochs,
            self.recon_steps_max,
            self.post_recon_epochs,
            self.post_recon_steps_max,
        )

    @property
    def eval_split(self) -> DatasetSplit:
        """How a user is scored: reconstruct as in training, then one uncapped pass over the
        other half, so that every run is scored on the same share of each user's ratings."""
        return DatasetSplit(self.recon_epochs, self.recon_steps_max)


# The walkthrough's run: every default.
WALKTHROUGH_RUN = FedReconRun()

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
    "num_latent_factors": "latent factors",
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


def _chosen(full, smoke):
    """``full`` or ``smoke``, as ``FEDRECON_CONFIG`` says (``full`` unless set)."""
    return {"full": full, "smoke": smoke}[settings.run_config()]


# --------------------------------------------------------------------------------------
# Notebooks 01-03: the walkthrough
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TutorialConfig:
    """The walkthrough's users and run (notebooks 01 to 03)."""

    name: str
    max_clients: int | None  # users loaded as clients, the first ones (the walkthrough: 2000)
    max_examples_per_user: int
    run: FedReconRun
    seed: int = 42


FULL = TutorialConfig(name="full", max_clients=2000, max_examples_per_user=300, run=WALKTHROUGH_RUN)
SMOKE = TutorialConfig(
    name="smoke",
    max_clients=60,
    max_examples_per_user=300,
    run=FedReconRun(num_latent_factors=8, clients_per_round=5, num_rounds=2),
)


def current() -> TutorialConfig:
    """The walkthrough's settings for ``FEDRECON_CONFIG``."""
    return _chosen(FULL, SMOKE)


# --------------------------------------------------------------------------------------
# Notebook 04: the exercises
# --------------------------------------------------------------------------------------

# Exercise 1's split: 3 epochs of reconstruction capped at 50 steps, 1 epoch of
# post-reconstruction training capped at 50 steps; 100 rounds of 50 clients.
SPLIT_ALONE = FedReconRun(
    recon_epochs=3, recon_steps_max=50, post_recon_epochs=1, post_recon_steps_max=50, num_rounds=100
)


@dataclasses.dataclass(frozen=True)
class ExerciseConfig:
    """Parameters of notebook 04 (the matrix factorization part also uses ``current()``)."""

    name: str
    tuned: FedReconRun  # exercise 1: the configuration the solution recommends
    comparison_rounds: int  # exercise 2: rounds of each run compared
    # Exercise 4: EMNIST with a personal user embedding, against FedAvg. The run's latent
    # factors are the size of the embedding, its batches hold images.
    emnist_run: FedReconRun
    emnist_train_clients: int  # synthetic data: writers used for training
    emnist_test_clients: int  # writers evaluated (new writers for synthetic data)
    emnist_examples_per_client: int  # synthetic data only
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
    # Three reconstruction passes at 0.5: a new writer's embedding is fitted to 20 images.
    emnist_run=FedReconRun(
        recon_epochs=3,
        client_lr=0.05,
        reconstruction_lr=0.5,
        batch_size=10,
        clients_per_round=10,
        num_rounds=30,
        num_latent_factors=8,
    ),
    emnist_train_clients=100,
    emnist_test_clients=50,
    emnist_examples_per_client=40,
)

EXERCISES_SMOKE = ExerciseConfig(
    name="smoke",
    tuned=dataclasses.replace(EXERCISES_FULL.tuned, num_rounds=2, clients_per_round=5),
    comparison_rounds=2,
    emnist_run=dataclasses.replace(
        EXERCISES_FULL.emnist_run, clients_per_round=3, num_rounds=2, num_latent_factors=4
    ),
    emnist_train_clients=6,
    emnist_test_clients=4,
    emnist_examples_per_client=20,
)


def exercises() -> ExerciseConfig:
    """Notebook 04's settings for ``FEDRECON_CONFIG``."""
    return _chosen(EXERCISES_FULL, EXERCISES_SMOKE)


# --------------------------------------------------------------------------------------
# Notebook 05: the paper's protocol with the simulator
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """A simulated training run on all of MovieLens 1M (notebook 05).

    Every training user takes part; each round samples ``run.clients_per_round`` of them,
    and the validation users are evaluated every ``eval_every`` rounds.
    """

    name: str
    run: FedReconRun
    eval_every: int
    max_examples_per_user: int = 300
    seed: int = 42


# The paper's protocol (Singhal et al. 2021, MovieLens): 100 clients a round for 500
# rounds; reconstruction for up to 5 epochs capped at 50 steps, then post-reconstruction
# for one epoch capped at 50 steps, on the two halves of the split data.
PAPER_RUN = FedReconRun(
    recon_epochs=5,
    recon_steps_max=50,
    post_recon_steps_max=50,
    clients_per_round=100,
    num_rounds=500,
)
PAPER_PROTOCOL = SimulationConfig(name="full", run=PAPER_RUN, eval_every=25)
SMOKE_PROTOCOL = SimulationConfig(
    name="smoke",
    run=dataclasses.replace(PAPER_RUN, clients_per_round=10, num_rounds=20),
    eval_every=5,
)


def simulation() -> SimulationConfig:
    """Notebook 05's settings for ``FEDRECON_CONFIG``: the paper's protocol, or a tiny one."""
    return _chosen(PAPER_PROTOCOL, SMOKE_PROTOCOL)


# --------------------------------------------------------------------------------------
# Notebook 06: beyond the tutorial
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BeyondConfig:
    """Parameters of notebook 06: the paper's run, compared after several budgets."""

    name: str
    max_clients: int | None  # users loaded (None: all)
    run: FedReconRun  # its num_rounds is the largest budget
    budgets: tuple[int, ...]  # rounds after which the models are compared (one run each)
    reconstruction_steps: tuple[int, ...]  # unseen users: SGD steps before evaluation
    als_iterations: int  # centralized ALS sweeps
    max_examples_per_user: int = 300
    held_out_fraction: float = 0.2  # of each training user's ratings, for measuring seen users
    als_regularization: float = 0.1  # chosen on validation users among 0.03, 0.05, 0.1, 0.2
    num_recommendations: int = 10
    seed: int = 42


BEYOND_FULL = BeyondConfig(
    name="full",
    max_clients=None,
    run=PAPER_RUN,
    budgets=(5, 25, 100, 500),
    reconstruction_steps=(0, 1, 2, 5, 10, 20, 50),
    als_iterations=10,
)
BEYOND_SMOKE = BeyondConfig(
    name="smoke",
    max_clients=None,
    run=dataclasses.replace(PAPER_RUN, num_latent_factors=8, clients_per_round=10, num_rounds=5),
    budgets=(2, 5),
    reconstruction_steps=(0, 1, 5),
    als_iterations=2,
)


def beyond() -> BeyondConfig:
    """Notebook 06's settings for ``FEDRECON_CONFIG``."""
    return _chosen(BEYOND_FULL, BEYOND_SMOKE)


# --------------------------------------------------------------------------------------
# Notebook 07: privacy
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
    """Parameters of notebook 07: what an update reveals, and FedRecon with user-level DP.

    ``run`` is the simulated protocol of the trade-off; the TFF parts run one round on
    about ``tff_clients_per_round`` clients, with the noise that would reach
    ``tff_target_epsilon`` over ``run.num_rounds`` such rounds.
    """

    name: str
    run: FedReconRun
    clip: float  # L2 norm every client's item update is clipped to
    target_epsilons: tuple[float, ...]  # the trade-off's budgets, at ``delta``
    inspected_clients: int  # clients whose single updates are inspected
    tff_clients_per_round: int
    tff_target_epsilon: float  # the budget TFF's DP round is a step of
    delta: float = 1e-6  # well below 1 / users (dp_training.DELTA)
    max_examples_per_user: int = 300
    seed: int = 42


PRIVACY_FULL = PrivacyConfig(
    name="full",
    run=PAPER_RUN,
    clip=1.0,
    target_epsilons=(16.0, 8.0, 4.0, 2.0, 1.0),
    inspected_clients=500,
    tff_clients_per_round=20,
    tff_target_epsilon=1.0,
)
PRIVACY_SMOKE = PrivacyConfig(
    name="smoke",
    run=dataclasses.replace(PAPER_RUN, num_latent_factors=8, clients_per_round=10, num_rounds=5),
    clip=1.0,
    target_epsilons=(8.0, 1.0),
    inspected_clients=20,
    tff_clients_per_round=5,
    tff_target_epsilon=1.0,
)


def privacy() -> PrivacyConfig:
    """Notebook 07's settings for ``FEDRECON_CONFIG``."""
    return _chosen(PRIVACY_FULL, PRIVACY_SMOKE)


# --------------------------------------------------------------------------------------
# Notebook 08: live exploration
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    """Parameters of notebook 08: the run the widget panel starts from, on every user.

    Every change of a widget trains a new run from scratch with the simulator; the
    validation users are evaluated every ``eval_every`` rounds, the test users at the end.
    """

    name: str
    run: FedReconRun
    eval_every: int
    max_examples_per_user: int = 300
    seed: int = 42


# The paper's protocol cut to 100 rounds, so that the simulator trains a run in seconds.
LIVE_FULL = LiveConfig(
    name="full", run=dataclasses.replace(PAPER_RUN, num_rounds=100), eval_every=10
)
LIVE_SMOKE = LiveConfig(
    name="smoke",
    run=dataclasses.replace(PAPER_RUN, num_latent_factors=8, clients_per_round=10, num_rounds=10),
    eval_every=5,
)


def live() -> LiveConfig:
    """Notebook 08's settings for ``FEDRECON_CONFIG``."""
    return _chosen(LIVE_FULL, LIVE_SMOKE)
