"""The batches of a simulated round: which ratings each client uses at each step.

The simulator (``tutorial_utils.simulator``) takes a round's data as padded arrays
(:class:`RoundBatches`), and this module makes them, in one of two ways:

- :func:`batches_from_datasets` iterates the clients' ``tf.data`` pipelines exactly as
  TFF does, so the simulator sees the same batches in the same order as TFF: use it
  to compare with TFF (tests/test_simulator.py does, to 1e-7).
- :meth:`PackedClients.round_batches`, which :meth:`FedReconSimulator.run_round` and
  :meth:`~FedReconSimulator.evaluate` use, shuffles with the simulator's own seeded
  numpy generator: fast, and the same in distribution, but not the same orders as
  ``tf.data``'s shuffle. Only the data order differs, not the algorithm. (One more
  difference: ``RatingClients`` shuffles with a fixed seed and its datasets are made
  afresh each round, so a client sees the same orders every round it is sampled; the
  simulator draws new ones.)

Likewise the user embeddings: TFF's clients draw them from the Keras initializer, the
simulator from its generator (``FedReconSimulator(user_init_range=...)``); a constant
initializer makes both the same.

The tutorial's pipelines (``RatingClients``) reshuffle on every pass by default:
every pass over a client's data (each reconstruction epoch, then each
post-reconstruction epoch) sees a new order. With ``split_dataset=True`` the
"reconstruction half" (even batches) and "post-reconstruction half" (odd batches) are
therefore taken from different orders and overlap, as TFF's documentation of
``build_dataset_split_fn`` warns. :class:`PackedClients` reproduces that by default;
``reshuffle_each_pass=False`` uses one order per round instead, which makes the halves
disjoint, as the paper intends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils.splits import DatasetSplit, shared_ratings, split_dataset_fn


class PhaseBatches(NamedTuple):
    """The batches of one stage for every client of a round, padded.

    ``items`` (int), ``ratings`` (float32) and ``mask`` (bool) are ``[clients, steps,
    batch_size]``: ``items[c, t]`` is the batch client ``c`` uses at its step ``t``.
    ``mask`` marks real examples; a step whose mask is all False is no step at all.
    """

    items: np.ndarray
    ratings: np.ndarray
    mask: np.ndarray

    def client_lists(self) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per client, its real batches in step order, as ``(item_ids, ratings)`` pairs
        (the form ``RoundBatches.from_lists`` and ``reference_fedrecon`` take)."""
        return [
            [(items[real], ratings[real]) for items, ratings, real in zip(*client) if real.any()]
            for client in zip(self.items, self.ratings, self.mask)
        ]


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
        """Packs a ``tutorial_utils.clients.RatingClients`` (its capped, unshuffled arrays)."""
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
        keys = self.shuffle_keys(len(rows), split, rng, reshuffle_each_pass)
        return self.batches_from_keys(rows, keys, split, batch_size, reshuffle_each_pass)

    def shuffle_keys(
        self,
        num_clients: int,
        split: DatasetSplit,
        rng: np.random.Generator,
        reshuffle_each_pass: bool = True,
    ) -> np.ndarray:
        """The random draw behind :meth:`round_batches`: keys ``[clients, passes, width]``."""
        num_passes = split.recon_epochs + split.post_recon_epochs if reshuffle_each_pass else 1
        return rng.random((num_clients, num_passes, self.items.shape[1]))

    def batches_from_keys(
        self,
        rows: np.ndarray,
        keys: np.ndarray,
        split: DatasetSplit,
        batch_size: int,
        reshuffle_each_pass: bool = True,
    ) -> RoundBatches:
        """The batches of table ``rows`` shuffled by ``keys`` (:meth:`shuffle_keys`).

        The rows may be those of several rounds end to end: a client's batches depend on
        its own keys only, so many rounds are made in one vectorized pass.
        """
        counts = self.counts[rows]
        num_batches = -(-counts // batch_size)
        width = self.items.shape[1]
        # A uniform permutation of each client's ratings per pass: sort random keys,
        # with the padding's keys above every real one so it stays at the end.
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
        recon = batches.recon.items[c][batches.recon.mask[c]].tolist()
        post = batches.post_recon.items[c][batches.post_recon.mask[c]].tolist()
        shared, scored = shared_ratings(recon, post)
        rows.append((len(set(recon)), scored, shared))
    return pd.DataFrame(
        rows,
        columns=["reconstruction", "evaluation", "shared"],
        index=pd.Index([int(c) for c in client_ids], name="client"),
    )


# ---------------------------------------------------------------------------------------
# A round's batches as the simulator's arrays
# ---------------------------------------------------------------------------------------


def bucket(size: int) -> int:
    """``size`` rounded up to 4, 5, 6 or 7 times a power of two (at least 1).

    XLA compiles one program per input shape; rounding the shapes up (by at most 25%)
    keeps the number of programs small when client counts and steps vary by round.
    """
    if size <= 4:
        return max(size, 1)
    unit = 2 ** (int(size).bit_length() - 3)  # size is in [4 * unit, 8 * unit)
    return -(-size // unit) * unit


class RoundInputs(NamedTuple):
    """A round's batches renumbered onto the table of (client, item) rows, and padded.

    The table has one row per distinct (client, item) pair of the round: the clients'
    local copies of their item rows. ``*_rows`` give each example's table row; padded
    examples point one past the table's end, at a scratch row. With ``round_sizes``,
    :func:`round_inputs` gives many rounds, each array with a leading round axis.
    """

    table_items: np.ndarray  # [rows] int32: the item of each table row
    table_clients: np.ndarray  # [rows] int32: the client of each table row
    recon_rows: np.ndarray  # [clients, steps, batch] int32
    recon_ratings: np.ndarray  # [clients, steps, batch] float32
    recon_mask: np.ndarray  # [clients, steps, batch] float32, 1 for real examples
    post_recon_rows: np.ndarray
    post_recon_ratings: np.ndarray
    post_recon_mask: np.ndarray


def round_inputs(
    batches: RoundBatches, num_items: int, round_sizes: Sequence[int] | None = None
) -> RoundInputs:
    """Numbers the distinct (client, item) pairs of a round and pads every dimension.

    Clients, steps and table rows are padded to :func:`bucket` sizes; padding clients
    and steps have no examples, padding table rows belong to no example. With
    ``round_sizes``, ``batches`` holds several rounds' clients end to end (the first
    ``round_sizes[0]`` clients are round 0's, and so on): each round gets its own table,
    and every array a leading axis of rounds, padded to a :func:`bucket` size with rounds
    that have no clients.
    """
    phases = (batches.recon, batches.post_recon)
    for phase in phases:
        real_items = phase.items[phase.mask]
        if real_items.size and (real_items.min() < 0 or real_items.max() >= num_items):
            raise ValueError(f"Item ids must be in [0, {num_items}).")
    sizes = np.array([batches.num_clients] if round_sizes is None else round_sizes, np.int64)
    if sizes.sum() != batches.num_clients or (sizes < 0).any():
        raise ValueError(f"round_sizes {list(sizes)} must add up to {batches.num_clients}.")
    client_round = np.repeat(np.arange(len(sizes)), sizes)  # of each client in batches
    local_client = np.arange(batches.num_clients) - (np.cumsum(sizes) - sizes)[client_round]
    client = np.arange(batches.num_clients, dtype=np.int64)[:, None, None]
    keys = [(client * num_items + phase.items)[phase.mask] for phase in phases]
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    pair_round = client_round[pairs // num_items]  # pairs are sorted by client, so by round
    local_row = np.arange(len(pairs)) - np.searchsorted(pair_round, pair_round)
    num_rounds = bucket(len(sizes))
    num_rows = bucket(np.bincount(pair_round, minlength=1).max())
    num_clients = bucket(sizes.max(initial=0))
    padded = []
    for phase, phase_inverse in zip(phases, np.split(inverse, [len(keys[0])])):
        _, steps, batch_size = phase.mask.shape
        shape = (num_rounds, num_clients, bucket(steps), batch_size)
        where = (client_round, local_client, slice(steps))
        real_rows = np.full(phase.mask.shape, num_rows, np.int32)
        real_rows[phase.mask] = local_row[phase_inverse]
        rows = np.full(shape, num_rows, np.int32)
        rows[where] = real_rows
        ratings = np.zeros(shape, np.float32)
        ratings[where] = phase.ratings
        mask = np.zeros(shape, np.float32)
        mask[where] = phase.mask
        padded += [rows, ratings, mask]
    table_items = np.zeros((num_rounds, num_rows), np.int32)
    table_items[pair_round, local_row] = pairs % num_items
    table_clients = np.zeros((num_rounds, num_rows), np.int32)
    table_clients[pair_round, local_row] = local_client[pairs // num_items]
    stacked = RoundInputs(table_items, table_clients, *padded)
    return stacked if round_sizes is not None else RoundInputs(*(a[0] for a in stacked))
