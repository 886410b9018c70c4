"""A vectorized Federated Reconstruction simulator for matrix factorization.

TFF runs FedRecon one client at a time, through a serialized computation and a C++
worker: seconds a round of 50 clients, for well under a millisecond of arithmetic. This
module runs the same algorithm as ``build_fed_recon`` and ``build_fed_recon_eval`` in plain
TensorFlow, every client of a round at once, without TFF. Its batches come from
``tutorial_utils.simulation.batches``; it trains through :func:`rounds.run_rounds` (:func:`train`).

The algorithm (one round)
-------------------------
The model predicts a rating as ``user_embedding . item_embedding``. The item matrix
``V`` (``[num_items, k]``) is global; each user's embedding ``u`` (``[k]``) is local and
never leaves the device. Every sampled client:

1. receives the global item matrix;
2. splits its batches into a reconstruction part and a post-reconstruction part
   (:class:`DatasetSplit`, as ``ReconstructionModel.build_dataset_split_fn``);
3. **reconstructs** ``u``: starts from the initializer (a fresh draw each round, since
   clients keep no state), and takes one SGD step per reconstruction batch, with ``V``
   frozen, at the reconstruction learning rate;
4. **trains** ``V``: one SGD step per post-reconstruction batch, with ``u`` frozen, at
   the client learning rate; the loss and accuracy of those batches, computed before
   each step, are the round's metrics;
5. sends back ``delta = V_trained - V`` and a weight: its number of
   post-reconstruction examples (TFF's default ``ClientWeighting.NUM_EXAMPLES``; a
   client without post-reconstruction batches has weight 0; a client whose delta is
   not finite is dropped, weight 0, though its metrics still count).

The server adds the example-weighted mean of the deltas, scaled by the server
learning rate: ``V += server_lr * sum(w_c * delta_c) / sum(w_c)`` (TFF's SGD applied
to ``-mean_delta`` as the gradient). If that mean is not finite (e.g. every weight was
0) the round leaves ``V`` unchanged, as TFF's finalizer does. With ``dp_clip`` (default
off) the mean is TFF's ``gaussian_fixed`` DP mean: every finite client weighs 1, its delta
clipped to norm ``dp_clip``; the sum plus N(0, (dp_noise_multiplier * dp_clip)^2) noise is
divided by ``clients_per_round``.

The loss of a batch is Keras' mean squared error over the batch. The reported
``loss`` is what TFF reports: the *mean over batches* of those batch losses (Keras'
``MeanMetricWrapper`` counts one value per batch), summed over clients before the
division. ``rating_accuracy`` (``|y - prediction| <= 0.5``) is a mean over examples.
Both use post-reconstruction batches only. Evaluation reconstructs ``u`` the same way
and then measures the post-reconstruction batches without training; it also reports
``rmse``, the square root of the mean squared error over examples.

How it runs
-----------
The clients of a round run at once, in one compiled XLA program
(``tutorial_utils.simulation.round_math``, which says how it is vectorized).

Host-side bookkeeping (choosing batches, numbering the table rows) is NumPy. XLA compiles
one program per input shape, so shapes are rounded up to a few sizes
(``program_inputs.bucket``).
``tutorial_utils.simulation.many_rounds`` runs many rounds in one program, with the same results;
:func:`train` uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import metrics
from tutorial_utils.clients import DatasetSplit
from tutorial_utils.config import FedReconRun
from tutorial_utils.plumbing import rounds
from tutorial_utils.simulation import many_rounds, round_math
from tutorial_utils.simulation.batches import PackedClients, RoundBatches
from tutorial_utils.simulation.program_inputs import RoundInputs, round_inputs, trains_rows_once

# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------


# Keras' "uniform" initializer: the bounds TFF's clients draw embeddings from.
UNIFORM_INIT_RANGE = (-0.05, 0.05)


def initial_item_matrix(
    run: FedReconRun, num_items: int, rng: np.random.Generator, init_range: tuple[float, float]
) -> np.ndarray:
    """A uniform draw of the item matrix ``[num_items, run.num_latent_factors]``, float32."""
    if num_items < 1:
        raise ValueError(f"num_items must be at least 1, got {num_items}.")
    shape = (num_items, run.num_latent_factors)
    return rng.uniform(*init_range, size=shape).astype(np.float32)


class FedReconSimulator:
    """Runs FedRecon rounds and evaluations on every client of a round at once.

    ``run`` gives the model size, the learning rates, the batch size and the splits of
    training (``run.train_split``) and evaluation (``run.eval_split``). ``seed`` fixes
    everything random: the initial item matrix (unless ``item_matrix`` is given), each
    round's user embeddings (drawn afresh for every client, as TFF's clients do) and the
    shuffling of :class:`PackedClients`. Two simulators with the same arguments and calls
    give the same results.

    ``user_init_range``, ``item_init_range``: bounds of uniform initializers (``(c, c)``
    is the constant ``c``); ``reshuffle_each_pass``: how the clients' data are shuffled
    (``tutorial_utils.simulation.batches``); ``dp_clip``, ``dp_noise_multiplier``: the DP
    server update.
    """

    def __init__(
        self,
        run: FedReconRun,
        num_items: int,
        seed: int = 0,
        *,
        item_matrix: np.ndarray | None = None,
        user_init_range: tuple[float, float] = UNIFORM_INIT_RANGE,
        item_init_range: tuple[float, float] = UNIFORM_INIT_RANGE,
        reshuffle_each_pass: bool = True,
        dp_clip: float | None = None,
        dp_noise_multiplier: float = 0.0,
    ):
        if dp_clip is not None and not dp_clip > 0:
            raise ValueError(f"dp_clip must be positive, got {dp_clip}.")
        if not dp_noise_multiplier >= 0 or (dp_noise_multiplier and dp_clip is None):
            raise ValueError(f"dp_noise_multiplier {dp_noise_multiplier} must be >= 0 with dp_clip")
        self.dp_clip, self.dp_noise_multiplier = dp_clip, dp_noise_multiplier
        self.run, self.num_items = run, num_items
        self.user_init_range, self.item_init_range = user_init_range, item_init_range
        self.reshuffle_each_pass = reshuffle_each_pass
        self.rng = np.random.default_rng(seed)
        if item_matrix is None:
            item_matrix = initial_item_matrix(run, num_items, self.rng, item_init_range)
        self.item_matrix = item_matrix

    def snapshot(self) -> FedReconSimulator:
        """A copy of this model (same run and item matrix), unaffected by further training."""
        return FedReconSimulator(
            self.run,
            self.num_items,
            item_matrix=self.item_matrix,
            user_init_range=self.user_init_range,
            item_init_range=self.item_init_range,
            reshuffle_each_pass=self.reshuffle_each_pass,
        )

    @property
    def item_matrix(self) -> np.ndarray:
        """The global item matrix ``[num_items, num_latent_factors]``."""
        return self._item_matrix.numpy()

    @item_matrix.setter
    def item_matrix(self, value: np.ndarray):
        value = np.asarray(value, np.float32)
        expected = (self.num_items, self.run.num_latent_factors)
        if value.shape != expected:
            raise ValueError(f"item_matrix must have shape {expected}, got {value.shape}.")
        self._item_matrix = tf.constant(value)

    def round_arguments(
        self, batches: RoundBatches, rng: np.random.Generator | None = None
    ) -> tuple[RoundInputs, list]:
        """The round's inputs, and the arguments that both compiled programs take, with
        user embeddings drawn from ``rng`` (default: the simulator's generator)."""
        inputs = round_inputs(batches, self.num_items)
        return inputs, self._arguments(inputs, self.draw_users(batches.num_clients, rng))

    def draw_users(self, num_clients: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Initial user embeddings ``[num_clients, k]`` from ``rng`` (default: the
        simulator's generator), as TFF's clients draw them afresh every round."""
        k = self.run.num_latent_factors
        return (rng or self.rng).uniform(*self.user_init_range, size=(num_clients, k))

    def _arguments(self, inputs: RoundInputs, users: np.ndarray) -> list:
        padded = np.zeros((len(inputs.recon_rows), self.run.num_latent_factors), np.float32)
        padded[: len(users)] = users
        return [
            self._item_matrix,
            inputs.table_items,
            padded,
            (inputs.recon_rows, inputs.recon_ratings, inputs.recon_mask),
            (inputs.post_recon_rows, inputs.post_recon_ratings, inputs.post_recon_mask),
            self.run.reconstruction_lr,
        ]

    def training_arguments(self, inputs: RoundInputs, users: np.ndarray) -> list:
        """The arguments of ``round_math.compiled_training_round`` for a round on ``inputs``
        from initial embeddings ``users``, as tensors. With DP noise, the round's noise
        is drawn here, from the simulator's generator."""
        clip, shape = self.dp_clip or np.inf, self._item_matrix.shape
        noise = np.zeros(shape, np.float32)
        if self.dp_noise_multiplier:
            noise += self.rng.normal(0, self.dp_noise_multiplier * clip, shape)
        arguments = [
            *self._arguments(inputs, users),
            inputs.table_clients,
            self.run.client_lr,
            self.run.server_lr,
            (clip, noise, self.run.clients_per_round),
            trains_rows_once(inputs),
        ]
        return tf.nest.map_structure(
            lambda a, s: tf.convert_to_tensor(a, s.dtype), arguments, round_math.TRAINING_SPECS
        )

    def run_round_batches(self, batches: RoundBatches) -> dict[str, float]:
        """One training round on explicit batches; updates :attr:`item_matrix`.

        Returns TFF's round metrics ``loss`` and ``rating_accuracy``, and
        ``num_examples``: the post-reconstruction examples, which weigh the clients.
        """
        inputs = round_inputs(batches, self.num_items)
        return self._train(inputs, self.draw_users(batches.num_clients))

    def _train(self, inputs: RoundInputs, users: np.ndarray) -> dict[str, float]:
        arguments = self.training_arguments(inputs, users)
        self._item_matrix, sums = round_math.compiled_training_round(*arguments)
        return round_math.round_metrics(sums.numpy())

    def run_round(self, clients: PackedClients, client_ids: Sequence[int]) -> dict[str, float]:
        """One training round on ``client_ids``, shuffled with the simulator's generator:
        ``run_round_batches(clients.round_batches(...))``, from the same draws, but faster."""
        rows, run, reshuffle = clients.rows(client_ids), self.run, self.reshuffle_each_pass
        keys = clients.shuffle_keys(len(rows), run.train_split, self.rng, reshuffle)
        stacked = clients.training_inputs(
            [rows],
            [keys],
            run.train_split,
            run.batch_size,
            self.num_items,
            reshuffle_each_pass=reshuffle,
        )
        inputs = RoundInputs(*(array[0] for array in stacked))
        return self._train(inputs, self.draw_users(len(rows)))

    def evaluate_batches(
        self, batches: RoundBatches, rng: np.random.Generator | None = None
    ) -> dict[str, float]:
        """Reconstructs and evaluates on explicit batches, as ``build_fed_recon_eval``.

        Returns ``loss``, ``rating_accuracy``, ``rmse`` and ``num_examples``. The initial
        user embeddings come from ``rng`` (default: the simulator's generator).
        """
        _, arguments = self.round_arguments(batches, rng)
        sums = round_math.compiled_evaluation(*arguments).numpy()
        result = round_math.round_metrics(sums)
        totals = sums.astype(np.float64).sum(axis=0)
        squared_error, examples = totals[[round_math.SQUARED_ERROR, round_math.NUM_EXAMPLES]]
        result["rmse"] = metrics.rmse(squared_error, examples)
        return result

    def evaluate(
        self,
        clients: PackedClients,
        client_ids: Sequence[int],
        split: DatasetSplit | None = None,
        *,
        reshuffle_each_pass: bool | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """Evaluates on ``client_ids`` with ``split`` (default: ``run.eval_split``).

        ``reshuffle_each_pass`` (default: the simulator's) chooses how the clients' data are
        shuffled (:meth:`PackedClients.round_batches`); pass False to keep the
        reconstruction and evaluation halves disjoint. With a ``seed``, the shuffling and
        the initial user embeddings come from a new generator with that seed: the
        simulator's own generator is left untouched, so evaluating in the middle of
        training does not change the rounds that follow, and two evaluations with the same
        seed use the same batches.
        """
        rng = self.rng if seed is None else np.random.default_rng(seed)
        reshuffle = self.reshuffle_each_pass if reshuffle_each_pass is None else reshuffle_each_pass
        split = split or self.run.eval_split
        batches = clients.round_batches(client_ids, split, self.run.batch_size, rng, reshuffle)
        return self.evaluate_batches(batches, rng)


# ---------------------------------------------------------------------------------------
# Training and evaluating, for the notebooks
# ---------------------------------------------------------------------------------------


def train(
    simulator,
    clients: PackedClients,
    sampler,
    num_rounds: int,
    *,
    eval_client_ids: Sequence[int] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "Training",
    **evaluate_options,
) -> pd.DataFrame:
    """Runs ``num_rounds`` rounds of ``simulator`` (a :class:`FedReconSimulator`, whose
    rounds between evaluations run many to a program, or any object with its ``run_round``
    and ``evaluate``) through :func:`rounds.run_rounds`.

    Returns a table indexed by round (1 to ``num_rounds``) with the round's ``loss``,
    ``rating_accuracy`` and ``num_examples``. With ``eval_client_ids`` and ``eval_every``,
    those users are evaluated after every ``eval_every``-th round and after the last one:
    columns ``val_loss``, ``val_rmse`` and ``val_rating_accuracy`` (NaN in other rows).
    ``evaluate_options`` go to :meth:`FedReconSimulator.evaluate`; give a ``seed`` so
    that evaluating does not change the training rounds.
    """
    evaluate = next_rounds = None
    if eval_client_ids is not None:

        def evaluate():
            return simulator.evaluate(clients, eval_client_ids, **evaluate_options)

    if isinstance(simulator, FedReconSimulator):  # the same rounds, many a program
        block = eval_every if evaluate is not None and eval_every > 0 else num_rounds
        sampler, next_rounds = many_rounds.blocks(simulator, clients, sampler, num_rounds, block)
    return rounds.run_rounds(
        lambda client_ids: simulator.run_round(clients, client_ids),
        sampler,
        num_rounds,
        evaluate=evaluate,
        eval_every=eval_every,
        progress=progress,
        desc=desc,
        next_rounds=next_rounds,
    )


def evaluation_table(
    simulator,
    clients,
    groups: dict[str, Sequence[int]],
    **evaluate_options,
) -> pd.DataFrame:
    """A simulator's evaluation of each group of users, one row per group (e.g.
    ``{"validation": ids, "test": ids}``), from ``simulator.evaluate(clients, ids, ...)``.

    Columns: ``users``, ``loss``, ``rmse``, ``rating_accuracy`` and ``num_examples``
    (the evaluated ratings). ``evaluate_options`` go to :meth:`FedReconSimulator.evaluate`.
    """
    rows = {}
    for name, client_ids in groups.items():
        metrics = simulator.evaluate(clients, client_ids, **evaluate_options)
        rows[name] = {"users": len(client_ids), **metrics}
    columns = ["users", "loss", "rmse", "rating_accuracy", "num_examples"]
    table = pd.DataFrame.from_dict(rows, orient="index")[columns]
    return table.astype({"users": int, "num_examples": int})
