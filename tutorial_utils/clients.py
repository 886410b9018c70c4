"""Every user as a federated client, with its ``tf.data`` pipeline built only when needed.

Notebook 01 writes a client's pipeline the way the walkthrough did, four steps on the
user's ``[movie id, rating]`` rows::

    tf.data.Dataset.from_tensor_slices(examples)   # one element per rating
        .shuffle(len(examples), seed=42)           # a buffer as large as the data
        .batch(batch_size)
        .map(to_model_inputs)                      # OrderedDict(x=movie ids, y=ratings)

:func:`make_client_dataset` is those four steps, with one change explained in
:func:`walkthrough_shuffle`: the order stays the walkthrough's even after a notebook seeds
TensorFlow. A client holds the user's first ``max_examples_per_user`` ratings, in file
order.

The walkthrough built all client pipelines up front, filtering the whole ratings table
once per user: about a minute for 6040 users. :class:`RatingClients` instead groups the
ratings by user once (one stable sort) and makes a client's pipeline when that client is
sampled, as TFF's ``ClientData`` does.

Clients are split into train, validation and test by user with the walkthrough's
permutation (``numpy`` seed 42), so that evaluation users are never seen in training.
:func:`user_split` does all of it in one call: the clients, and their split by user.

How a client's batches are split between reconstruction and the stage after it.

:class:`DatasetSplit` holds the options of TFF's
``ReconstructionModel.build_dataset_split_fn``; :func:`tff_split_fn` turns it into TFF's
function and :func:`split_dataset_fn` into the same function without TFF. Evaluation is fair
only when a user is scored on ratings that did not reconstruct their embedding:
:func:`shared_ratings` counts the ratings two stages share, whatever produced them (a
``tf.data`` pipeline here, the simulator's batches in ``batches.stage_overlap``).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

SHUFFLE_SEED = 42
# TensorFlow's global seed when ``tf.random.set_seed`` was never called, as in the walkthrough.
TENSORFLOW_DEFAULT_GLOBAL_SEED = 87654321


def walkthrough_shuffle(dataset: tf.data.Dataset, buffer_size: int) -> tf.data.Dataset:
    """``dataset.shuffle(buffer_size, seed=42)`` in the walkthrough's order, whatever the
    global seed.

    TensorFlow draws a shuffle's order from a pair of seeds: the global seed and the one
    given to ``shuffle``. The walkthrough never called ``tf.random.set_seed``, so its pair
    was (87654321, 42): TensorFlow's default global seed, then 42. Notebook 01 does not
    seed TensorFlow either, so its plain ``shuffle(..., seed=42)`` gives the same order.
    The training notebooks do seed TensorFlow (for reproducible models), which would turn
    the pair into (their seed, 42) and every client's order with it. ``shuffle`` takes only
    the second seed, so this function builds TensorFlow's shuffle op with both seeds given
    (``tf.raw_ops.ShuffleDatasetV3``; a ``DummySeedGenerator`` is what TensorFlow itself
    uses once a dataset is handed to TFF). As with ``shuffle``'s default, every pass over
    the dataset has a new order, and the first pass is the walkthrough's.
    """
    variant = tf.raw_ops.ShuffleDatasetV3(
        input_dataset=tf.data.experimental.to_variant(dataset),
        buffer_size=tf.constant(buffer_size, tf.int64),
        seed=tf.constant(TENSORFLOW_DEFAULT_GLOBAL_SEED, tf.int64),
        seed2=tf.constant(SHUFFLE_SEED, tf.int64),
        seed_generator=tf.raw_ops.DummySeedGenerator(),
        output_types=[spec.dtype for spec in tf.nest.flatten(dataset.element_spec)],
        output_shapes=[spec.shape for spec in tf.nest.flatten(dataset.element_spec)],
        reshuffle_each_iteration=True,
    )
    return tf.data.experimental.from_variant(variant, dataset.element_spec)


def to_model_inputs(batch: tf.Tensor) -> collections.OrderedDict:
    """A batch of ``[movie id, rating]`` rows as the model reads it: ``x``, the movie ids
    (int64, shape ``[b, 1]``), and ``y``, the ratings (float32, shape ``[b, 1]``)."""
    return collections.OrderedDict(x=batch[:, 0:1], y=tf.cast(batch[:, 1:2], tf.float32))


def make_client_dataset(examples: np.ndarray, batch_size: int = 5) -> tf.data.Dataset:
    """One client's dataset from its ``[movie id, rating]`` rows (int64, shape ``[n, 2]``):
    notebook 01's four steps, shuffled by :func:`walkthrough_shuffle`."""
    dataset = tf.data.Dataset.from_tensor_slices(examples)
    dataset = walkthrough_shuffle(dataset, buffer_size=len(examples))
    return dataset.batch(batch_size).map(to_model_inputs)


class RatingClients:
    """All users' ratings, one client per user; a client's ``tf.data`` made on request.

    Mirrors the part of ``tff.simulation.datasets.ClientData`` the tutorial uses:
    ``client_ids`` and ``create_tf_dataset_for_client``.
    """

    def __init__(
        self,
        ratings_df: pd.DataFrame,
        *,
        batch_size: int = 5,
        max_examples_per_user: int | None = 300,
        max_clients: int | None = None,
        reshuffle_each_pass: bool = True,
    ):
        """Groups ``ratings_df`` (remapped ``UserID``, ``MovieID``, ``Rating``) by user.

        Users are the ids ``0 .. n-1`` of the remapped table; ``max_clients`` keeps the
        first ones, as the walkthrough's ``max_clients`` did.

        ``reshuffle_each_pass=True`` is the walkthrough's behaviour: every pass over a
        client's dataset has a new order. TFF's default split reads the dataset twice
        (even batches to reconstruct, odd batches to train or evaluate), so the two halves
        come from different orders and share examples. ``False`` replays the first pass's
        order on every pass, which makes the halves disjoint; ``create_tf_datasets`` can
        choose per call.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if max_examples_per_user is not None and max_examples_per_user < 1:
            raise ValueError(
                f"max_examples_per_user must be at least 1 or None, got {max_examples_per_user}."
            )
        users = ratings_df["UserID"].to_numpy()
        order = np.argsort(users, kind="stable")  # keeps each user's file order
        counts = np.bincount(users)
        num_users = len(counts) if max_clients is None else min(len(counts), max_clients)
        # One row per rating, grouped by user: [movie id, rating].
        self._examples = ratings_df[["MovieID", "Rating"]].to_numpy(np.int64)[order]
        self._starts = np.concatenate([[0], np.cumsum(counts)])[:num_users]
        self._counts = counts[:num_users]
        if max_examples_per_user is not None:
            self._counts = np.minimum(self._counts, max_examples_per_user)
        self.batch_size = batch_size
        self.max_examples_per_user = max_examples_per_user
        self.reshuffle_each_pass = reshuffle_each_pass
        self.client_ids: list[int] = [int(u) for u in np.flatnonzero(self._counts)]

    def __len__(self) -> int:
        return len(self.client_ids)

    def _rows(self, client_id: int) -> slice:
        start = int(self._starts[client_id])
        return slice(start, start + int(self._counts[client_id]))

    def num_examples(self, client_id: int) -> int:
        """How many ratings the client holds (after the ``max_examples_per_user`` cap)."""
        return int(self._counts[client_id])

    def client_arrays(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The client's movie ids and ratings, in file order, before shuffling."""
        rows = self._rows(client_id)
        return self._examples[rows, 0], self._examples[rows, 1]

    def create_tf_dataset_for_client(
        self, client_id: int, reshuffle_each_pass: bool | None = None
    ) -> tf.data.Dataset:
        """The client's shuffled, batched ``tf.data.Dataset`` (:func:`make_client_dataset`).

        ``reshuffle_each_pass`` (default: the one given to the constructor): when False,
        every pass yields the batches of the first pass, in the same order, so that the two
        halves of TFF's split are disjoint. Those batches are held in memory.
        """
        rows = self._rows(client_id)
        if rows.start == rows.stop:
            raise KeyError(f"User {client_id} has no ratings.")
        dataset = make_client_dataset(self._examples[rows], self.batch_size)
        if reshuffle_each_pass is None:
            reshuffle_each_pass = self.reshuffle_each_pass
        if reshuffle_each_pass:
            return dataset
        # The first pass of the walkthrough's pipeline, replayed: the same batches as a
        # client sees the first time its data is read, whatever else reads it.
        first_pass = list(dataset.as_numpy_iterator())
        replay = tf.nest.map_structure(lambda *parts: np.concatenate(parts), *first_pass)
        return tf.data.Dataset.from_tensor_slices(replay).batch(self.batch_size)

    def create_tf_datasets(
        self, client_ids: Iterable[int], reshuffle_each_pass: bool | None = None
    ) -> list[tf.data.Dataset]:
        """The datasets of several clients, e.g. the ones sampled for a round."""
        return [self.create_tf_dataset_for_client(int(c), reshuffle_each_pass) for c in client_ids]


def split_clients(
    client_ids: Sequence[int],
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    seed: int = 42,
) -> tuple[list[int], list[int], list[int]]:
    """Splits clients into train, validation and test users with the walkthrough's permutation."""
    if not 0 < train_fraction <= 1 or not 0 <= val_fraction <= 1 - train_fraction:
        raise ValueError(
            f"Fractions must satisfy 0 < train ({train_fraction}) and "
            f"train + val ({train_fraction + val_fraction}) <= 1."
        )
    shuffled = list(client_ids)
    np.random.RandomState(seed).shuffle(shuffled)
    train_end = int(len(shuffled) * train_fraction)
    val_end = int(len(shuffled) * (train_fraction + val_fraction))
    return shuffled[:train_end], shuffled[train_end:val_end], shuffled[val_end:]


class ClientSampler:
    """Draws the clients of each round uniformly, without replacement within a round."""

    def __init__(self, client_ids: Sequence[int], clients_per_round: int, seed: int = 42):
        if not 0 < clients_per_round <= len(client_ids):
            raise ValueError(
                f"clients_per_round must be between 1 and {len(client_ids)}, "
                f"got {clients_per_round}."
            )
        self.client_ids = list(client_ids)
        self.clients_per_round = clients_per_round
        self._rng = np.random.RandomState(seed)

    def sample(self) -> list[int]:
        """The client ids of the next round."""
        picks = self._rng.choice(len(self.client_ids), self.clients_per_round, replace=False)
        return [self.client_ids[i] for i in picks]


@dataclasses.dataclass
class UserSplit:
    """The clients of a run and their split by user: who trains, who validates, who tests."""

    clients: RatingClients
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int]


def user_split(
    ratings_df: pd.DataFrame,
    *,
    batch_size: int = 5,
    max_examples_per_user: int | None = 300,
    max_clients: int | None = None,
    seed: int = 42,
) -> UserSplit:
    """One client per user of ``ratings_df`` (:class:`RatingClients`), split 80/10/10 into
    train, validation and test users with the walkthrough's permutation (``seed``)."""
    clients = RatingClients(
        ratings_df,
        batch_size=batch_size,
        max_examples_per_user=max_examples_per_user,
        max_clients=max_clients,
    )
    train_ids, val_ids, test_ids = split_clients(clients.client_ids, seed=seed)
    return UserSplit(clients, train_ids, val_ids, test_ids)


# Splitting a client's batches between reconstruction and the stage after it


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


def tff_split_fn(split: DatasetSplit):
    """TFF's ``ReconstructionModel.build_dataset_split_fn`` with ``split``'s options."""
    import tensorflow_federated as tff

    return tff.learning.models.ReconstructionModel.build_dataset_split_fn(
        **dataclasses.asdict(split)
    )


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


def common_ratings(reconstruction: Iterable, scored: Iterable) -> list:
    """The distinct ``scored`` ratings that also reconstructed, in increasing order.

    A rating is known by any id that is unique within one client: its movie id, or its
    position in the client's data.
    """
    return sorted(set(scored) & set(reconstruction))


def shared_ratings(reconstruction: Iterable, scored: Iterable) -> tuple[int, int]:
    """How many distinct ``scored`` ratings also reconstructed (:func:`common_ratings`),
    and how many distinct ratings were scored."""
    scored = set(scored)
    return len(common_ratings(reconstruction, scored)), len(scored)


def movie_ids(dataset: tf.data.Dataset) -> list[int]:
    """The movie ids ``x`` of every example of ``dataset``, in the order it yields them."""
    return [int(x) for batch in dataset for x in np.ravel(batch["x"])]


def split_overlap(client_datasets: Sequence[tf.data.Dataset], dataset_split_fn) -> tuple[int, int]:
    """How many scored ratings were also used for reconstruction, summed over clients.

    ``dataset_split_fn`` maps a client's dataset to its (reconstruction, post-reconstruction)
    datasets, as TFF's ``ReconstructionModel.build_dataset_split_fn`` does. Within one client
    every movie is rated once, so a rating is known by its movie id. Returns the shared count
    and the number of scored ratings.
    """
    shared = total = 0
    for dataset in client_datasets:
        reconstruction, scored = dataset_split_fn(dataset)
        client_shared, client_total = shared_ratings(movie_ids(reconstruction), movie_ids(scored))
        shared, total = shared + client_shared, total + client_total
    return shared, total
