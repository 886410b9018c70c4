"""A vectorized Federated Reconstruction simulator for matrix factorization.

TFF runs FedRecon one client at a time, through a serialized computation and a C++
worker: seconds a round of 50 clients, for well under a millisecond of arithmetic. This
module runs the same algorithm as ``build_fed_recon`` and ``build_fed_recon_eval`` in plain
TensorFlow, every client of a round at once, without TFF. Its batches come from
``tutorial_utils.batches``; it trains through :func:`rounds.run_rounds` (:func:`train`).

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

How it is vectorized
--------------------
A client only touches the item rows it rated, so its local copy of ``V`` is just those
rows. The local copies of all clients in a round are stacked into one table with one
row per (client, item) pair; every rating points at its row. Batches are padded to
``[clients, steps, batch_size]`` with a mask, so step ``t`` of every client runs at
once: gather the rows, predict, take the gradient of the masked mean squared error,
and update (``u`` for reconstruction; the table rows, by scatter-add, for training).
Padded examples have zero gradient and point at one scratch row, so a client that has
run out of batches is left as it is. At the end the deltas of the table rows are
weighted and summed into the item rows they came from (``unsorted_segment_sum``).

Host-side bookkeeping (choosing batches, numbering the table rows) is NumPy; the
arithmetic is one ``tf.function`` per round, compiled with XLA (one program per input
shape, so shapes are rounded up to a few sizes, ``program_inputs.bucket``).
``tutorial_utils.many_rounds`` runs many rounds in one program, with the same results;
:func:`train` uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import metrics, rounds
from tutorial_utils.batches import PackedClients, RoundBatches
from tutorial_utils.config import FedReconRun
from tutorial_utils.program_inputs import RoundInputs, round_inputs
from tutorial_utils.splits import DatasetSplit

# The per-client sums that the TensorFlow part returns, one column each.
_LOSS_SUM, _NUM_BATCHES, _NUM_CORRECT, _NUM_EXAMPLES, _SQUARED_ERROR = range(5)
NUM_SUMS = 5


# ---------------------------------------------------------------------------------------
# The arithmetic, in TensorFlow: every client at once
# ---------------------------------------------------------------------------------------


def _predict(table, user, rows):
    """Item vectors ``[C, ..., B, k]`` of ``rows`` and predictions ``u . v``."""
    vectors = tf.gather(table, rows)
    return vectors, tf.einsum("c...k,ck->c...", vectors, user)


def _loss_gradient(predictions, ratings, mask):
    """d(batch loss)/d(prediction) for the masked mean squared error: ``2 (p - y) / n``.

    Padded examples get exactly 0 (``tf.where``, not a product with the mask, so that a
    diverged client's NaN in the shared scratch row cannot leak into other clients).
    """
    count = tf.reduce_sum(mask, axis=-1, keepdims=True)
    return tf.where(mask > 0, 2.0 * (predictions - ratings) / tf.maximum(count, 1.0), 0.0)


def _metric_sums(predictions, ratings, mask):
    """Per client ``[C, 5]``: sum of batch losses, batches, correct, examples, squared error.

    Works on one step (``[C, B]``) or on all steps (``[C, S, B]``).
    """
    real = mask > 0
    squared_error = tf.where(real, tf.square(predictions - ratings), 0.0)
    count = tf.reduce_sum(mask, axis=-1)
    correct = tf.cast(real & metrics.is_correct(ratings, predictions), tf.float32)
    per_batch = tf.stack(
        [
            tf.math.divide_no_nan(tf.reduce_sum(squared_error, axis=-1), count),
            tf.cast(count > 0, tf.float32),
            tf.reduce_sum(correct, axis=-1),
            count,
            tf.reduce_sum(squared_error, axis=-1),
        ],
        axis=-1,
    )
    return tf.reduce_sum(tf.reshape(per_batch, [tf.shape(mask)[0], -1, NUM_SUMS]), axis=1)


def _reconstruct(table, user, rows, ratings, mask, learning_rate):
    """SGD on the user embeddings, one step per reconstruction batch, items frozen."""
    for t in tf.range(tf.shape(rows)[1]):
        vectors, predictions = _predict(table, user, rows[:, t])
        gradient = tf.einsum(
            "cb,cbk->ck", _loss_gradient(predictions, ratings[:, t], mask[:, t]), vectors
        )
        user = user - learning_rate * gradient
    return user


def _train_items(table, user, rows, ratings, mask, learning_rate):
    """SGD on the local item rows, one step per post-reconstruction batch, users frozen.

    Returns the trained table and the per-client metric sums, measured before each step.
    """
    sums = tf.zeros([tf.shape(user)[0], NUM_SUMS])
    for t in tf.range(tf.shape(rows)[1]):
        vectors, predictions = _predict(table, user, rows[:, t])
        sums += _metric_sums(predictions, ratings[:, t], mask[:, t])
        d_predictions = _loss_gradient(predictions, ratings[:, t], mask[:, t])
        gradient = d_predictions[..., None] * user[:, None, :]  # d loss / d item row
        table = tf.tensor_scatter_nd_add(table, rows[:, t, :, None], -learning_rate * gradient)
    return table, sums


def _local_table(item_matrix, table_items):
    """The clients' local item rows, plus one scratch row for padded examples."""
    return tf.concat(
        [tf.gather(item_matrix, table_items), tf.zeros([1, tf.shape(item_matrix)[1]])], axis=0
    )


# One stage's examples, ``[clients, steps, batch]`` each: table rows, ratings, mask.
_PHASE_SPEC = (
    tf.TensorSpec([None, None, None], tf.int32),
    tf.TensorSpec([None, None, None], tf.float32),
    tf.TensorSpec([None, None, None], tf.float32),
)
ROUND_SPECS = [
    tf.TensorSpec([None, None], tf.float32),  # item matrix
    tf.TensorSpec([None], tf.int32),  # item of each table row
    tf.TensorSpec([None, None], tf.float32),  # initial user embeddings
    _PHASE_SPEC,  # reconstruction
    _PHASE_SPEC,  # post-reconstruction
    tf.TensorSpec([], tf.float32),  # reconstruction learning rate
]


def local_training(item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr):
    """What the clients of a round do: reconstruct, then train their item rows.

    Returns the deltas of the table rows, the reconstructed users and the metric sums.
    """
    table = _local_table(item_matrix, table_items)
    user = _reconstruct(table, user, *recon, reconstruction_lr)
    trained, sums = _train_items(table, user, *post, client_lr)
    return (trained - table)[:-1], user, sums


TRAINING_SPECS = [
    *ROUND_SPECS,
    tf.TensorSpec([None], tf.int32),  # client of each table row
    tf.TensorSpec([], tf.float32),  # client learning rate
    tf.TensorSpec([], tf.float32),  # server learning rate
    (tf.TensorSpec([]), tf.TensorSpec([None, None]), tf.TensorSpec([])),  # DP (float32)
]


def training_round(
    item_matrix,
    table_items,
    user,
    recon,
    post,
    reconstruction_lr,
    table_clients,
    client_lr,
    server_lr,
    dp_arguments,
):
    """One FedRecon round: local reconstruction and training, then the server update.

    ``recon`` and ``post`` are a stage's ``(rows, ratings, mask)``.
    """
    delta, user, sums = local_training(
        item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr
    )
    num_clients = tf.shape(user)[0]
    # A client whose update is not finite is dropped (zero delta, zero weight).
    row_finite = tf.cast(tf.reduce_all(tf.math.is_finite(delta), axis=1), tf.int32)
    client_finite = tf.math.unsorted_segment_min(row_finite, table_clients, num_clients) > 0
    clip, noise, denominator = dp_arguments  # clip inf: no DP, noise 0
    dp = tf.math.is_finite(clip)  # DP: weights 1, clipped deltas, noise, fixed denominator
    weights = tf.where(client_finite, tf.where(dp, 1.0, sums[:, _NUM_EXAMPLES]), 0.0)
    row_weights = tf.gather(weights, table_clients)[:, None]
    delta = tf.where(row_weights > 0, delta, 0.0)

    def clipped_row_weights():  # each client's delta clipped to norm ``clip``, as TF clips
        squares = tf.math.unsorted_segment_sum(
            tf.reduce_sum(delta**2, 1), table_clients, num_clients
        )
        scale = clip * tf.minimum(tf.math.rsqrt(squares), 1 / clip)
        return row_weights * tf.gather(scale, table_clients)[:, None]

    # Without DP the program skips the clipping and the noise (XLA runs one branch).
    row_weights = tf.cond(dp, clipped_row_weights, lambda: row_weights)
    weighted_sum = tf.math.unsorted_segment_sum(
        delta * row_weights, table_items, tf.shape(item_matrix)[0]
    )
    weighted_sum = tf.cond(dp, lambda: weighted_sum + noise, lambda: weighted_sum)
    mean_delta = weighted_sum / tf.where(dp, denominator, tf.reduce_sum(weights))
    # Server SGD with -mean_delta as the gradient; a non-finite mean is rejected.
    accept = tf.reduce_all(tf.math.is_finite(mean_delta))
    return tf.where(accept, item_matrix + server_lr * mean_delta, item_matrix), sums


_training_round = tf.function(training_round, input_signature=TRAINING_SPECS, jit_compile=True)


@tf.function(input_signature=ROUND_SPECS, jit_compile=True)
def _evaluation(item_matrix, table_items, user, recon, post, reconstruction_lr):
    """Reconstruction, then the metric sums of the post-reconstruction batches."""
    table = _local_table(item_matrix, table_items)
    user = _reconstruct(table, user, *recon, reconstruction_lr)
    post_rows, post_ratings, post_mask = post
    _, predictions = _predict(table, user, post_rows)
    return _metric_sums(predictions, post_ratings, post_mask)


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
    (``tutorial_utils.batches``); ``dp_clip``, ``dp_noise_multiplier``: the DP server update.
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
        """The round's inputs, and the arguments that both TensorFlow functions take, with
        user embeddings drawn from ``rng`` (default: the simulator's generator)."""
        inputs = round_inputs(batches, self.num_items)
        return inputs, self._arguments(inputs, batches.num_clients, rng or self.rng)

    def _arguments(self, inputs: RoundInputs, num_clients: int, rng) -> list:
        k = self.run.num_latent_factors
        users = np.zeros((len(inputs.recon_rows), k), np.float32)
        users[:num_clients] = rng.uniform(*self.user_init_range, size=(num_clients, k))
        return [
            self._item_matrix,
            inputs.table_items,
            users,
            (inputs.recon_rows, inputs.recon_ratings, inputs.recon_mask),
            (inputs.post_recon_rows, inputs.post_recon_ratings, inputs.post_recon_mask),
            self.run.reconstruction_lr,
        ]

    def run_round_batches(self, batches: RoundBatches) -> dict[str, float]:
        """One training round on explicit batches; updates :attr:`item_matrix`.

        Returns TFF's round metrics ``loss`` and ``rating_accuracy``, and
        ``num_examples``: the post-reconstruction examples, which weigh the clients.
        """
        inputs, arguments = self.round_arguments(batches)
        return self._train(inputs, arguments)

    def _train(self, inputs: RoundInputs, arguments: list) -> dict[str, float]:
        clip, shape = self.dp_clip or np.inf, self._item_matrix.shape
        noise = np.zeros(shape, np.float32)
        if self.dp_noise_multiplier:
            noise += self.rng.normal(0, self.dp_noise_multiplier * clip, shape)
        dp_arguments = (clip, noise, self.run.clients_per_round)
        self._item_matrix, sums = _training_round(
            *arguments, inputs.table_clients, self.run.client_lr, self.run.server_lr, dp_arguments
        )
        return round_metrics(sums.numpy())

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
        return self._train(inputs, self._arguments(inputs, len(rows), self.rng))

    def evaluate_batches(
        self, batches: RoundBatches, rng: np.random.Generator | None = None
    ) -> dict[str, float]:
        """Reconstructs and evaluates on explicit batches, as ``build_fed_recon_eval``.

        Returns ``loss``, ``rating_accuracy``, ``rmse`` and ``num_examples``. The initial
        user embeddings come from ``rng`` (default: the simulator's generator).
        """
        _, arguments = self.round_arguments(batches, rng)
        sums = _evaluation(*arguments).numpy()
        result = round_metrics(sums)
        totals = sums.astype(np.float64).sum(axis=0)
        result["rmse"] = metrics.rmse(totals[_SQUARED_ERROR], totals[_NUM_EXAMPLES])
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


def round_metrics(sums: np.ndarray) -> dict[str, float]:
    """Sums the clients' metric sums, then divides (TFF's ``sum_then_finalize``; a ratio
    with a denominator of 0 is 0, as Keras' ``divide_no_nan``)."""
    total = sums.astype(np.float64).sum(axis=0)
    loss, batches, correct, examples = total[[_LOSS_SUM, _NUM_BATCHES, _NUM_CORRECT, _NUM_EXAMPLES]]
    return {
        "loss": float(loss / batches) if batches else 0.0,
        "rating_accuracy": float(correct / examples) if examples else 0.0,
        "num_examples": int(examples),
    }


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
        from tutorial_utils import many_rounds  # (it builds on this module)

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
