"""A vectorized Federated Reconstruction simulator for matrix factorization.

TensorFlow Federated runs FedRecon one client at a time, through a serialized
computation and a C++ worker: on two cores a round of 50 clients takes seconds, while
its arithmetic takes well under a millisecond. This module runs the same algorithm as
``tff.learning.algorithms.build_fed_recon`` and ``build_fed_recon_eval`` with plain
TensorFlow ops, every client of a round at once, and needs no TFF.

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
0) the round leaves ``V`` unchanged, as TFF's finalizer does.

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

Host-side bookkeeping (choosing batches, numbering the table rows) is done with numpy;
the arithmetic is one ``tf.function`` per round, compiled with XLA
(``jit_compile=True``), which fuses each step's few small ops: the steps are sequential,
and without XLA the per-op overhead of TensorFlow's executor dominates. XLA compiles a
program per input shape, so shapes are rounded up to a few sizes (:func:`_bucket`); the
first rounds of each new size take about a second to compile.

Where the data come from
------------------------
:meth:`FedReconSimulator.run_round_batches` and :meth:`~FedReconSimulator.evaluate_batches`
take explicit batches (:class:`RoundBatches`). There are two ways to make them:

- :func:`batches_from_datasets` iterates the clients' ``tf.data`` pipelines exactly as
  TFF does, so the simulator sees the same batches in the same order as TFF: use it
  to compare with TFF (tests/test_simulation.py does, to 1e-7).
- :meth:`PackedClients.round_batches`, which :meth:`FedReconSimulator.run_round` and
  :meth:`~FedReconSimulator.evaluate` use, shuffles with the simulator's own seeded
  numpy generator: fast, and the same in distribution, but not the same orders as
  ``tf.data``'s shuffle. Only the data order differs, not the algorithm. (One more
  difference: ``RatingClients`` shuffles with a fixed seed and its datasets are made
  afresh each round, so a client sees the same orders every round it is sampled; the
  simulator draws new ones.)

Likewise the user embeddings: TFF's clients draw them from the Keras initializer, the
simulator from its generator (``FedReconConfig.user_init_range``); a constant
initializer makes both the same.

The tutorial's pipelines (``RatingClients``) shuffle with ``reshuffle_each_iteration``:
every pass over a client's data (each reconstruction epoch, then each
post-reconstruction epoch) sees a new order. With ``split_dataset=True`` the
"reconstruction half" (even batches) and "post-reconstruction half" (odd batches) are
therefore taken from different orders and overlap, as TFF's documentation of
``build_dataset_split_fn`` warns. :class:`PackedClients` reproduces that by default;
``reshuffle_each_pass=False`` uses one order per round instead, which makes the halves
disjoint, as the paper intends.

:data:`PAPER_PROTOCOL` holds the paper's training protocol for MovieLens, which notebook
``05_fast_simulation`` runs; :func:`protocol` chooses it or a tiny smoke version by
``FEDRECON_CONFIG``. :func:`simulate_run` trains and scores one of exercise 1's runs
(``config.FedReconRun``) as ``exercises.train_and_evaluate`` does with TFF, to screen
candidates in seconds (``scripts/screen_exercise1.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import datasets, settings

# The per-client sums that the TensorFlow part returns, one column each.
_LOSS_SUM, _NUM_BATCHES, _NUM_CORRECT, _NUM_EXAMPLES, _SQUARED_ERROR = range(5)
_NUM_SUMS = 5


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """How a client's batches are divided between reconstruction and post-reconstruction.

    The options of TFF's ``ReconstructionModel.build_dataset_split_fn``:

    - ``split_dataset``: even-indexed batches (0, 2, 4, ...) reconstruct, odd-indexed
      batches are used after reconstruction. When False, both stages use all batches.
    - ``recon_epochs`` passes over the reconstruction batches, then at most
      ``recon_steps_max`` of them (``None``: no limit); likewise for post-reconstruction.

    The default is what ``build_fed_recon`` and ``build_fed_recon_eval`` use when they are
    given no ``dataset_split_fn`` (note that ``build_dataset_split_fn`` itself defaults to
    ``split_dataset=False``).
    """

    recon_epochs: int = 1
    recon_steps_max: int | None = None
    post_recon_epochs: int = 1
    post_recon_steps_max: int | None = None
    split_dataset: bool = True

    def __post_init__(self):
        for name in ("recon_epochs", "post_recon_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("recon_steps_max", "post_recon_steps_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}.")

    def epochs_and_steps_max(self, phase: str) -> tuple[int, int | None]:
        """``(epochs, steps_max)`` of ``phase``, ``"recon"`` or ``"post_recon"``."""
        if phase == "recon":
            return self.recon_epochs, self.recon_steps_max
        if phase == "post_recon":
            return self.post_recon_epochs, self.post_recon_steps_max
        raise ValueError(f"phase must be 'recon' or 'post_recon', got {phase!r}.")


@dataclasses.dataclass(frozen=True)
class FedReconConfig:
    """Model size, learning rates, data splits and initializers of a simulation.

    The defaults are the tutorial's: 50 latent factors, SGD at 1.0 (server), 0.5
    (client) and 0.1 (reconstruction), batches of 5, TFF's default splits.

    ``user_init_range`` and ``item_init_range`` are the bounds of uniform initializers;
    ``(-0.05, 0.05)`` is Keras' ``"uniform"``, and ``(c, c)`` is the constant ``c``.
    ``reshuffle_each_pass`` only matters for :meth:`PackedClients.round_batches` (see the
    module docstring).
    """

    num_items: int
    num_latent_factors: int = 50
    server_lr: float = 1.0
    client_lr: float = 0.5
    recon_lr: float = 0.1
    batch_size: int = 5
    train_split: DatasetSplit = DatasetSplit()
    eval_split: DatasetSplit = DatasetSplit()
    user_init_range: tuple[float, float] = (-0.05, 0.05)
    item_init_range: tuple[float, float] = (-0.05, 0.05)
    reshuffle_each_pass: bool = True

    def __post_init__(self):
        if self.num_items < 1 or self.num_latent_factors < 1 or self.batch_size < 1:
            raise ValueError(
                "num_items, num_latent_factors and batch_size must be at least 1, got "
                f"{self.num_items}, {self.num_latent_factors} and {self.batch_size}."
            )


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A simulated training run on MovieLens: the parameters of notebook 05.

    Every training user takes part; each of ``num_rounds`` rounds samples
    ``clients_per_round`` of them, and the validation users are evaluated every
    ``eval_every`` rounds. ``split`` divides each client's batches in training and in
    evaluation. A client holds the user's first ``max_examples_per_user`` ratings, in
    batches of ``batch_size``, as in the walkthrough. The learning rates are the
    walkthrough's (:class:`FedReconConfig`'s defaults).
    """

    name: str
    clients_per_round: int
    num_rounds: int
    eval_every: int
    split: DatasetSplit
    num_latent_factors: int = 50
    batch_size: int = 5
    max_examples_per_user: int = 300
    seed: int = 42

    def simulator_config(self, num_items: int) -> FedReconConfig:
        """The :class:`FedReconConfig` of this run, for ``num_items`` items."""
        return FedReconConfig(
            num_items,
            self.num_latent_factors,
            batch_size=self.batch_size,
            train_split=self.split,
            eval_split=self.split,
        )


# The paper's protocol (Singhal et al. 2021, MovieLens): 100 clients a round for 500
# rounds; reconstruction for up to 5 epochs capped at 50 steps, then post-reconstruction
# for one epoch capped at 50 steps, on the two halves of the split data.
PAPER_PROTOCOL = Protocol(
    name="full",
    clients_per_round=100,
    num_rounds=500,
    eval_every=25,
    split=DatasetSplit(recon_epochs=5, recon_steps_max=50, post_recon_steps_max=50),
)

# The same protocol, shrunk so that notebook 05 only proves it runs (FEDRECON_CONFIG=smoke).
SMOKE_PROTOCOL = dataclasses.replace(
    PAPER_PROTOCOL, name="smoke", clients_per_round=10, num_rounds=20, eval_every=5
)


def protocol() -> Protocol:
    """The protocol chosen by ``FEDRECON_CONFIG``: the paper's (``full``) or ``smoke``."""
    return {"full": PAPER_PROTOCOL, "smoke": SMOKE_PROTOCOL}[settings.run_config()]


# ---------------------------------------------------------------------------------------
# The batches of a round
# ---------------------------------------------------------------------------------------


class PhaseBatches(NamedTuple):
    """The batches of one stage for every client of a round, padded.

    ``items`` (int), ``ratings`` (float32) and ``mask`` (bool) are ``[clients, steps,
    batch_size]``: ``items[c, t]`` is the batch client ``c`` uses at its step ``t``.
    ``mask`` marks real examples; a step whose mask is all False is no step at all.
    """

    items: np.ndarray
    ratings: np.ndarray
    mask: np.ndarray


class RoundBatches(NamedTuple):
    """The reconstruction and post-reconstruction batches of every client of a round."""

    recon: PhaseBatches
    post_recon: PhaseBatches

    @property
    def num_clients(self) -> int:
        return self.recon.items.shape[0]

    @classmethod
    def from_lists(
        cls,
        recon: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
        post_recon: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
        batch_size: int,
    ) -> RoundBatches:
        """Pads per-client lists of ``(item_ids, ratings)`` batches, in step order.

        ``recon[c]`` and ``post_recon[c]`` are client ``c``'s batches for each stage;
        no batch may hold more than ``batch_size`` examples.
        """
        if len(recon) != len(post_recon):
            raise ValueError("recon and post_recon must list the same clients.")
        return cls(_pad_phase(recon, batch_size), _pad_phase(post_recon, batch_size))


def _pad_phase(
    client_batches: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]], batch_size: int
) -> PhaseBatches:
    """Pads lists of ``(items, ratings)`` batches, one list per client, into arrays."""
    num_steps = max((len(batches) for batches in client_batches), default=0)
    shape = (len(client_batches), num_steps, batch_size)
    items = np.zeros(shape, np.int64)
    ratings = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    for c, batches in enumerate(client_batches):
        for t, (batch_items, batch_ratings) in enumerate(batches):
            size = len(batch_items)
            if size > batch_size:
                raise ValueError(f"A batch of {size} examples exceeds batch_size={batch_size}.")
            items[c, t, :size] = batch_items
            ratings[c, t, :size] = batch_ratings
            mask[c, t, :size] = True
    return PhaseBatches(items, ratings, mask)


def split_dataset_fn(split: DatasetSplit):
    """The ``tf.data`` split of TFF's ``build_dataset_split_fn``, without TFF.

    Returns a function from a client's batched dataset to ``(recon, post_recon)``
    datasets. The two are separate iterations of the client's dataset, so a dataset that
    reshuffles on each iteration gives them different orders.
    """

    def dataset_split(dataset: tf.data.Dataset):
        if split.split_dataset:
            recon = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, b: b)
            post = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, b: b)
        else:
            recon = post = dataset
        recon = recon.repeat(split.recon_epochs)
        if split.recon_steps_max is not None:
            recon = recon.take(split.recon_steps_max)
        post = post.repeat(split.post_recon_epochs)
        if split.post_recon_steps_max is not None:
            post = post.take(split.post_recon_steps_max)
        return recon, post

    return dataset_split


def batches_from_datasets(
    datasets: Iterable[tf.data.Dataset], split: DatasetSplit, batch_size: int
) -> RoundBatches:
    """The batches TFF would use, read from the clients' ``tf.data`` pipelines.

    Each dataset (elements ``x``: item ids ``[b, 1]``, ``y``: ratings ``[b, 1]``) is
    split with :func:`split_dataset_fn` and iterated as TFF's client update does:
    reconstruction first, then post-reconstruction. Pass freshly made datasets (e.g.
    ``RatingClients.create_tf_datasets``): a dataset's shuffle order depends on how many
    times it has been iterated. Slow (one eager pass per client); use it to compare with
    TFF, and :meth:`PackedClients.round_batches` to simulate many rounds.
    """
    dataset_split = split_dataset_fn(split)
    recon, post = [], []
    for dataset in datasets:
        recon_dataset, post_dataset = dataset_split(dataset)
        for batches, phase_dataset in ((recon, recon_dataset), (post, post_dataset)):
            batches.append(
                [
                    (batch["x"].numpy().reshape(-1), batch["y"].numpy().reshape(-1))
                    for batch in phase_dataset
                ]
            )
    return RoundBatches.from_lists(recon, post, batch_size)


class Schedule(NamedTuple):
    """Which batch each client uses at each step of a stage (arrays ``[clients, steps]``).

    ``epoch``: the pass over the client's data; ``batch``: the batch's index within that
    pass (before splitting); ``active``: False for the padding after a client's last step
    (where ``epoch`` and ``batch`` are 0).
    """

    epoch: np.ndarray
    batch: np.ndarray
    active: np.ndarray


def step_schedule(num_batches: np.ndarray, split: DatasetSplit, phase: str) -> Schedule:
    """The batches that ``split`` gives each client in ``phase``, step by step.

    ``num_batches[c]`` is how many batches one pass over client ``c``'s data makes. With
    ``split_dataset`` a pass yields the even batches for reconstruction and the odd ones
    for post-reconstruction; the passes are repeated ``epochs`` times and the result cut
    at ``steps_max``, exactly as ``repeat(epochs).take(steps_max)``.
    """
    num_batches = np.asarray(num_batches, np.int64)
    epochs, steps_max = split.epochs_and_steps_max(phase)
    if split.split_dataset:
        first, stride = (0, 2) if phase == "recon" else (1, 2)
        per_pass = (num_batches - first + 1) // 2
    else:
        first, stride = 0, 1
        per_pass = num_batches
    num_steps = per_pass * epochs
    if steps_max is not None:
        num_steps = np.minimum(num_steps, steps_max)
    step = np.arange(num_steps.max(initial=0))[None, :]
    active = step < num_steps[:, None]
    per_pass = np.maximum(per_pass, 1)[:, None]  # clients without batches take no step
    return Schedule(
        epoch=np.where(active, step // per_pass, 0),
        batch=np.where(active, first + stride * (step % per_pass), 0),
        active=active,
    )


class PackedClients:
    """Every client's ratings in one padded table, so that a round's data is a gather.

    Row ``r`` holds the item ids and ratings of ``client_ids[r]``, in the client's order,
    padded to the largest client.
    """

    def __init__(
        self, client_ids: Sequence[int], items: Sequence[np.ndarray], ratings: Sequence[np.ndarray]
    ):
        if not len(client_ids) == len(items) == len(ratings):
            raise ValueError("client_ids, items and ratings must have the same length.")
        self.client_ids = [int(c) for c in client_ids]
        self._row = {c: r for r, c in enumerate(self.client_ids)}
        self.counts = np.array([len(i) for i in items], np.int64)
        if len(items) and self.counts.min() == 0:
            raise ValueError("Every client needs at least one rating.")
        valid = np.arange(self.counts.max(initial=1))[None, :] < self.counts[:, None]
        self.items = np.zeros(valid.shape, np.int64)
        self.ratings = np.zeros(valid.shape, np.float32)
        if len(items):
            self.items[valid] = np.concatenate(items)
            self.ratings[valid] = np.concatenate(ratings)

    @classmethod
    def from_rating_clients(cls, clients) -> PackedClients:
        """Packs a ``tutorial_utils.datasets.RatingClients`` (its capped, unshuffled arrays)."""
        arrays = [clients.client_arrays(c) for c in clients.client_ids]
        return cls(clients.client_ids, [a[0] for a in arrays], [a[1] for a in arrays])

    def __len__(self) -> int:
        return len(self.client_ids)

    def rows(self, client_ids: Iterable[int]) -> np.ndarray:
        """The table rows of ``client_ids``."""
        return np.array([self._row[int(c)] for c in client_ids], np.int64)

    def round_batches(
        self,
        client_ids: Sequence[int],
        split: DatasetSplit,
        batch_size: int,
        rng: np.random.Generator,
        reshuffle_each_pass: bool = True,
    ) -> RoundBatches:
        """The batches of ``client_ids`` for one round, shuffled with ``rng``.

        Like the tutorial's pipelines: each pass over a client's ratings is a uniformly
        random order (a new one per pass, unless ``reshuffle_each_pass`` is False), cut into
        batches of ``batch_size``, the last one possibly smaller; then ``split`` chooses
        the batches of each stage (:func:`step_schedule`).
        """
        rows = self.rows(client_ids)
        counts = self.counts[rows]
        num_batches = -(-counts // batch_size)
        width = self.items.shape[1]
        num_passes = split.recon_epochs + split.post_recon_epochs if reshuffle_each_pass else 1
        # A uniform permutation of each client's ratings per pass: sort random keys,
        # with the padding's keys above every real one so it stays at the end.
        keys = rng.random((len(rows), num_passes, width))
        keys = np.where(np.arange(width) < counts[:, None, None], keys, 2.0)
        orders = np.argsort(keys, axis=2)

        def phase_batches(phase: str, first_pass: int) -> PhaseBatches:
            schedule = step_schedule(num_batches, split, phase)
            passes = schedule.epoch + first_pass  # the order each step's batch comes from
            if not reshuffle_each_pass:
                passes = np.zeros_like(passes)
            position = schedule.batch[..., None] * batch_size + np.arange(batch_size)
            mask = schedule.active[..., None] & (position < counts[:, None, None])
            position = np.where(mask, position, 0)
            client = np.arange(len(rows))[:, None, None]
            example = orders[client, passes[..., None], position]
            return PhaseBatches(
                items=np.where(mask, self.items[rows[:, None, None], example], 0),
                ratings=np.where(mask, self.ratings[rows[:, None, None], example], 0),
                mask=mask,
            )

        return RoundBatches(
            recon=phase_batches("recon", 0),
            post_recon=phase_batches("post_recon", split.recon_epochs),
        )


def _bucket(size: int) -> int:
    """``size`` rounded up to 4, 5, 6 or 7 times a power of two (at least 1).

    XLA compiles one program per input shape; rounding the shapes up (by at most 25%)
    keeps the number of programs small when client counts and steps vary by round.
    """
    if size <= 4:
        return max(size, 1)
    unit = 2 ** (int(size).bit_length() - 3)  # size is in [4 * unit, 8 * unit)
    return -(-size // unit) * unit


class _RoundInputs(NamedTuple):
    """A round's batches renumbered onto the table of (client, item) rows, and padded.

    The table has one row per distinct (client, item) pair of the round: the clients'
    local copies of their item rows. ``*_rows`` give each example's table row; padded
    examples point one past the table's end, at a scratch row.
    """

    table_items: np.ndarray  # [rows] int32: the item of each table row
    table_clients: np.ndarray  # [rows] int32: the client of each table row
    recon_rows: np.ndarray  # [clients, steps, batch] int32
    recon_ratings: np.ndarray  # [clients, steps, batch] float32
    recon_mask: np.ndarray  # [clients, steps, batch] float32, 1 for real examples
    post_recon_rows: np.ndarray
    post_recon_ratings: np.ndarray
    post_recon_mask: np.ndarray


def _round_inputs(batches: RoundBatches, num_items: int) -> _RoundInputs:
    """Numbers the distinct (client, item) pairs of a round and pads every dimension.

    Clients, steps and table rows are padded to :func:`_bucket` sizes; padding clients
    and steps have no examples, padding table rows belong to no example.
    """
    phases = (batches.recon, batches.post_recon)
    for phase in phases:
        real_items = phase.items[phase.mask]
        if real_items.size and (real_items.min() < 0 or real_items.max() >= num_items):
            raise ValueError(f"Item ids must be in [0, {num_items}).")
    client = np.arange(batches.num_clients, dtype=np.int64)[:, None, None]
    keys = [(client * num_items + phase.items)[phase.mask] for phase in phases]
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    num_rows = _bucket(len(pairs))
    num_clients = _bucket(batches.num_clients)
    padded = []
    for phase, phase_inverse in zip(phases, np.split(inverse, [len(keys[0])])):
        clients, steps, batch_size = phase.mask.shape
        shape = (num_clients, _bucket(steps), batch_size)
        rows = np.full(shape, num_rows, np.int32)
        rows[:clients, :steps][phase.mask] = phase_inverse
        ratings = np.zeros(shape, np.float32)
        ratings[:clients, :steps] = phase.ratings
        mask = np.zeros(shape, np.float32)
        mask[:clients, :steps] = phase.mask
        padded += [rows, ratings, mask]
    table_items = np.zeros(num_rows, np.int32)
    table_items[: len(pairs)] = pairs % num_items
    table_clients = np.zeros(num_rows, np.int32)
    table_clients[: len(pairs)] = pairs // num_items
    return _RoundInputs(table_items, table_clients, *padded)


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
    correct = tf.cast(real & (tf.abs(ratings - predictions) <= 0.5), tf.float32)
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
    return tf.reduce_sum(tf.reshape(per_batch, [tf.shape(mask)[0], -1, _NUM_SUMS]), axis=1)


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
    sums = tf.zeros([tf.shape(user)[0], _NUM_SUMS])
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


_PHASE_SPECS = [
    tf.TensorSpec([None, None, None], tf.int32),  # table rows
    tf.TensorSpec([None, None, None], tf.float32),  # ratings
    tf.TensorSpec([None, None, None], tf.float32),  # mask
]
_COMMON_SPECS = [
    tf.TensorSpec([None, None], tf.float32),  # item matrix
    tf.TensorSpec([None], tf.int32),  # item of each table row
    tf.TensorSpec([None, None], tf.float32),  # initial user embeddings
    *_PHASE_SPECS,  # reconstruction
    *_PHASE_SPECS,  # post-reconstruction
    tf.TensorSpec([], tf.float32),  # reconstruction learning rate
]


@tf.function(
    input_signature=[
        *_COMMON_SPECS,
        tf.TensorSpec([None], tf.int32),  # client of each table row
        tf.TensorSpec([], tf.float32),  # client learning rate
        tf.TensorSpec([], tf.float32),  # server learning rate
    ],
    jit_compile=True,
)
def _training_round(
    item_matrix,
    table_items,
    user,
    recon_rows,
    recon_ratings,
    recon_mask,
    post_rows,
    post_ratings,
    post_mask,
    recon_lr,
    table_clients,
    client_lr,
    server_lr,
):
    """One FedRecon round: local reconstruction and training, then the server update."""
    table = _local_table(item_matrix, table_items)
    user = _reconstruct(table, user, recon_rows, recon_ratings, recon_mask, recon_lr)
    trained, sums = _train_items(table, user, post_rows, post_ratings, post_mask, client_lr)
    delta = (trained - table)[:-1]
    num_clients = tf.shape(user)[0]
    # A client whose update is not finite is dropped (zero delta, zero weight).
    row_finite = tf.cast(tf.reduce_all(tf.math.is_finite(delta), axis=1), tf.int32)
    client_finite = tf.math.unsorted_segment_min(row_finite, table_clients, num_clients) > 0
    weights = tf.where(client_finite, sums[:, _NUM_EXAMPLES], 0.0)
    row_weights = tf.gather(weights, table_clients)[:, None]
    delta = tf.where(row_weights > 0, delta, 0.0)
    weighted_sum = tf.math.unsorted_segment_sum(
        delta * row_weights, table_items, tf.shape(item_matrix)[0]
    )
    mean_delta = weighted_sum / tf.reduce_sum(weights)
    # Server SGD with -mean_delta as the gradient; a non-finite mean is rejected.
    accept = tf.reduce_all(tf.math.is_finite(mean_delta))
    return tf.where(accept, item_matrix + server_lr * mean_delta, item_matrix), sums


@tf.function(input_signature=_COMMON_SPECS, jit_compile=True)
def _evaluation(
    item_matrix,
    table_items,
    user,
    recon_rows,
    recon_ratings,
    recon_mask,
    post_rows,
    post_ratings,
    post_mask,
    recon_lr,
):
    """Reconstruction, then the metric sums of the post-reconstruction batches."""
    table = _local_table(item_matrix, table_items)
    user = _reconstruct(table, user, recon_rows, recon_ratings, recon_mask, recon_lr)
    _, predictions = _predict(table, user, post_rows)
    return _metric_sums(predictions, post_ratings, post_mask)


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------


class FedReconSimulator:
    """Runs FedRecon rounds and evaluations on every client of a round at once.

    ``seed`` fixes everything random: the initial item matrix (unless ``item_matrix`` is
    given), each round's user embeddings (drawn afresh for every client, as TFF's clients
    do) and the shuffling of :class:`PackedClients`. Two simulators with the same seed,
    config and calls give the same results.
    """

    def __init__(
        self, config: FedReconConfig, seed: int = 0, item_matrix: np.ndarray | None = None
    ):
        self.config = config
        self.rng = np.random.default_rng(seed)
        shape = (config.num_items, config.num_latent_factors)
        if item_matrix is None:
            item_matrix = self.rng.uniform(*config.item_init_range, size=shape)
        self.item_matrix = item_matrix

    @property
    def item_matrix(self) -> np.ndarray:
        """The global item matrix ``[num_items, num_latent_factors]``."""
        return self._item_matrix.numpy()

    @item_matrix.setter
    def item_matrix(self, value: np.ndarray):
        value = np.asarray(value, np.float32)
        expected = (self.config.num_items, self.config.num_latent_factors)
        if value.shape != expected:
            raise ValueError(f"item_matrix must have shape {expected}, got {value.shape}.")
        self._item_matrix = tf.constant(value)

    def _arguments(
        self, batches: RoundBatches, rng: np.random.Generator | None = None
    ) -> tuple[_RoundInputs, list]:
        """The round's inputs, and the arguments that both TensorFlow functions take.

        The user embeddings are drawn from ``rng`` (default: the simulator's generator).
        """
        rng = self.rng if rng is None else rng
        inputs = _round_inputs(batches, self.config.num_items)
        users = np.zeros((len(inputs.recon_rows), self.config.num_latent_factors), np.float32)
        users[: batches.num_clients] = rng.uniform(
            *self.config.user_init_range,
            size=(batches.num_clients, self.config.num_latent_factors),
        )
        arguments = [
            self._item_matrix,
            inputs.table_items,
            users,
            inputs.recon_rows,
            inputs.recon_ratings,
            inputs.recon_mask,
            inputs.post_recon_rows,
            inputs.post_recon_ratings,
            inputs.post_recon_mask,
            self.config.recon_lr,
        ]
        return inputs, arguments

    def run_round_batches(self, batches: RoundBatches) -> dict[str, float]:
        """One training round on explicit batches; updates :attr:`item_matrix`.

        Returns TFF's round metrics ``loss`` and ``rating_accuracy``, and
        ``num_examples``: the post-reconstruction examples, which weigh the clients.
        """
        inputs, arguments = self._arguments(batches)
        self._item_matrix, sums = _training_round(
            *arguments, inputs.table_clients, self.config.client_lr, self.config.server_lr
        )
        return _round_metrics(sums.numpy())

    def run_round(self, clients: PackedClients, client_ids: Sequence[int]) -> dict[str, float]:
        """One training round on ``client_ids``, shuffled with the simulator's generator."""
        batches = clients.round_batches(
            client_ids,
            self.config.train_split,
            self.config.batch_size,
            self.rng,
            self.config.reshuffle_each_pass,
        )
        return self.run_round_batches(batches)

    def evaluate_batches(
        self, batches: RoundBatches, rng: np.random.Generator | None = None
    ) -> dict[str, float]:
        """Reconstructs and evaluates on explicit batches, as ``build_fed_recon_eval``.

        Returns ``loss``, ``rating_accuracy``, ``rmse`` and ``num_examples``. The initial
        user embeddings come from ``rng`` (default: the simulator's generator).
        """
        _, arguments = self._arguments(batches, rng)
        sums = _evaluation(*arguments).numpy()
        metrics = _round_metrics(sums)
        metrics["rmse"] = float(
            np.sqrt(_ratio(sums[:, _SQUARED_ERROR].sum(), sums[:, _NUM_EXAMPLES].sum()))
        )
        return metrics

    def evaluate(
        self,
        clients: PackedClients,
        client_ids: Sequence[int],
        split: DatasetSplit | None = None,
        *,
        reshuffle_each_pass: bool | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """Evaluates on ``client_ids`` with ``split`` (default: the config's ``eval_split``).

        ``reshuffle_each_pass`` (default: the config's) chooses how the clients' data are
        shuffled (:meth:`PackedClients.round_batches`); pass False to keep the
        reconstruction and evaluation halves disjoint. With a ``seed``, the shuffling and
        the initial user embeddings come from a new generator with that seed: the
        simulator's own generator is left untouched, so evaluating in the middle of
        training does not change the rounds that follow, and two evaluations with the same
        seed use the same batches.
        """
        rng = self.rng if seed is None else np.random.default_rng(seed)
        if reshuffle_each_pass is None:
            reshuffle_each_pass = self.config.reshuffle_each_pass
        batches = clients.round_batches(
            client_ids,
            split or self.config.eval_split,
            self.config.batch_size,
            rng,
            reshuffle_each_pass,
        )
        return self.evaluate_batches(batches, rng)


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 when the denominator is 0 (Keras' ``divide_no_nan``)."""
    return float(numerator / denominator) if denominator else 0.0


def _round_metrics(sums: np.ndarray) -> dict[str, float]:
    """Sums the clients' metric sums, then divides: TFF's ``sum_then_finalize``."""
    totals = sums.astype(np.float64).sum(axis=0)
    return {
        "loss": _ratio(totals[_LOSS_SUM], totals[_NUM_BATCHES]),
        "rating_accuracy": _ratio(totals[_NUM_CORRECT], totals[_NUM_EXAMPLES]),
        "num_examples": int(totals[_NUM_EXAMPLES]),
    }


# ---------------------------------------------------------------------------------------
# Training loop, evaluation and checks, for the notebooks
# ---------------------------------------------------------------------------------------


def stage_overlap(
    clients: PackedClients,
    client_ids: Sequence[int],
    split: DatasetSplit,
    batch_size: int,
    *,
    reshuffle_each_pass: bool,
    seed: int,
) -> pd.DataFrame:
    """How many of each client's ratings the two stages share, for one draw of batches.

    Draws the batches that ``FedReconSimulator.evaluate(clients, client_ids, split,
    reshuffle_each_pass=..., seed=seed)`` uses (same generator, same draws), but with each
    rating replaced by its position in the client's data, so that ratings are compared
    as ratings, not as movie ids. Returns one row per client: ``reconstruction`` and
    ``evaluation``, the distinct ratings each stage uses, and ``shared``, those used by both.
    """
    positions = [np.arange(count) for count in clients.counts]
    numbered = PackedClients(
        clients.client_ids, positions, [np.zeros(count, np.float32) for count in clients.counts]
    )
    batches = numbered.round_batches(
        client_ids, split, batch_size, np.random.default_rng(seed), reshuffle_each_pass
    )
    rows = []
    for c in range(batches.num_clients):
        recon = set(batches.recon.items[c][batches.recon.mask[c]].tolist())
        post = set(batches.post_recon.items[c][batches.post_recon.mask[c]].tolist())
        rows.append((len(recon), len(post), len(recon & post)))
    return pd.DataFrame(
        rows,
        columns=["reconstruction", "evaluation", "shared"],
        index=pd.Index([int(c) for c in client_ids], name="client"),
    )


def evaluate_groups(
    simulator: FedReconSimulator,
    clients: PackedClients,
    groups: dict[str, Sequence[int]],
    **evaluate_options,
) -> pd.DataFrame:
    """One row per group of users (e.g. ``{"validation": ids, "test": ids}``).

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


def train(
    simulator: FedReconSimulator,
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
    """Runs ``num_rounds`` rounds, each on the clients ``sampler.sample()`` returns.

    Returns a table indexed by round (1 to ``num_rounds``) with the round's training
    metrics ``loss``, ``rating_accuracy`` and ``num_examples``. With ``eval_client_ids``
    and ``eval_every``, the users ``eval_client_ids`` are evaluated after every
    ``eval_every``-th round and after the last one: columns ``val_loss``, ``val_rmse``
    and ``val_rating_accuracy``, empty (NaN) in the other rows. ``evaluate_options`` go
    to :meth:`FedReconSimulator.evaluate`; give a ``seed`` so that evaluating does not
    change the training rounds (and every evaluation draws the same batches).

    A progress bar (``tqdm``, unless ``progress`` is False) shows the latest round's
    loss and accuracy, and the latest validation accuracy.
    """
    evaluating = eval_client_ids is not None and eval_every > 0
    rounds = range(1, num_rounds + 1)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=num_rounds, desc=desc, unit="round", file=sys.stdout, mininterval=1.0)
    rows, postfix = [], {}
    try:
        for round_num in rounds:
            row = {"round": round_num, **simulator.run_round(clients, sampler.sample())}
            if evaluating and (round_num % eval_every == 0 or round_num == num_rounds):
                metrics = simulator.evaluate(clients, eval_client_ids, **evaluate_options)
                row.update(
                    {f"val_{name}": metrics[name] for name in ("loss", "rmse", "rating_accuracy")}
                )
                postfix["val_accuracy"] = f"{metrics['rating_accuracy']:.3f}"
            rows.append(row)
            if bar is not None:
                bar.set_postfix(
                    {
                        "loss": f"{row['loss']:.3f}",
                        "accuracy": f"{row['rating_accuracy']:.3f}",
                        **postfix,
                    },
                    refresh=False,
                )
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    history = pd.DataFrame(rows).set_index("round")
    if evaluating:
        columns = ["val_loss", "val_rmse", "val_rating_accuracy"]
        history = history.reindex(
            columns=[*history.columns.drop(columns, errors="ignore"), *columns]
        )
    return history


# ---------------------------------------------------------------------------------------
# Exercise 1's runs, simulated
# ---------------------------------------------------------------------------------------


def run_config(run, num_items: int, num_latent_factors: int) -> FedReconConfig:
    """The simulator's configuration of a ``config.FedReconRun`` (exercise 1).

    Training uses the run's split on disjoint halves; evaluation reconstructs as in
    training and then scores one uncapped pass over the other half, as
    ``exercises.evaluation_split_fn`` does with TFF.
    """
    return FedReconConfig(
        num_items,
        num_latent_factors,
        server_lr=run.server_lr,
        client_lr=run.client_lr,
        recon_lr=run.reconstruction_lr,
        batch_size=run.batch_size,
        train_split=DatasetSplit(
            run.recon_epochs, run.recon_steps_max, run.post_recon_epochs, run.post_recon_steps_max
        ),
        eval_split=DatasetSplit(run.recon_epochs, run.recon_steps_max),
    )


def simulate_run(
    run, ratings_df: pd.DataFrame, num_items: int, base, *, seed: int, progress: bool = False
) -> dict:
    """Trains and scores ``run`` with the simulator, as ``exercises.train_and_evaluate``
    does with TFF, in seconds instead of minutes.

    ``base`` (a ``config.TutorialConfig``) gives the users, their validation and test
    split (always drawn with ``base.seed``, so every seed sees the same users) and the
    latent factors. ``seed`` draws the initial item matrix, the user embeddings, the
    clients of each round and the batch orders. Validation and test users are scored on
    one fixed order per user, so reconstruction and scoring never share a rating.
    Returns ``{"validation": metrics, "test": metrics, "history": training table}``; a run
    that diverged has NaN losses and zero accuracy.
    """
    clients = datasets.RatingClients(
        ratings_df,
        batch_size=run.batch_size,
        max_examples_per_user=base.max_examples_per_user,
        max_clients=base.max_clients,
    )
    train_ids, val_ids, test_ids = datasets.split_clients(clients.client_ids, seed=base.seed)
    packed = PackedClients.from_rating_clients(clients)
    simulator = FedReconSimulator(run_config(run, num_items, base.num_latent_factors), seed=seed)
    sampler = datasets.ClientSampler(
        train_ids, min(run.clients_per_round, len(train_ids)), seed=seed
    )
    history = train(simulator, packed, sampler, run.num_rounds, progress=progress)
    scores = {
        name: simulator.evaluate(packed, ids, reshuffle_each_pass=False, seed=seed)
        for name, ids in (("validation", val_ids), ("test", test_ids))
    }
    return {**scores, "history": history}
