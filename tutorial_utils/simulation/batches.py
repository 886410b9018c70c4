"""The batches of a simulated round: which ratings each client uses at each step.

The simulator (``tutorial_utils.simulation.simulator``) takes a round's data as padded arrays
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

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils.clients import DatasetSplit, shared_ratings, split_dataset_fn
from tutorial_utils.simulation.program_inputs import RoundInputs, TrainingShape, bucket


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
    first, stride, per_pass, num_steps = _steps(num_batches, split, phase)
    step = np.arange(num_steps.max(initial=0))[None, :]
    active = step < num_steps[:, None]
    per_pass = np.maximum(per_pass, 1)[:, None]  # clients without batches take no step
    return Schedule(
        epoch=np.where(active, step // per_pass, 0),
        batch=np.where(active, first + stride * (step % per_pass), 0),
        active=active,
    )


_STAGES = ("recon", "post_recon")


def _steps(num_batches: np.ndarray, split: DatasetSplit, phase: str):
    """For :func:`step_schedule`: the stage's first batch and stride within a pass, its
    batches per pass and its number of steps, per client."""
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
    return first, stride, per_pass, num_steps


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
        # Each client's distinct items in increasing order (its local item rows, numbered
        # as ``round_inputs`` numbers them), and each rating's row among them.
        rating_row = np.nonzero(valid)[0]
        span = int(self.items.max(initial=0)) + 1
        pairs, pair_of_rating = np.unique(
            rating_row * span + self.items[valid], return_inverse=True
        )
        pair_row = pairs // span
        self.num_distinct = np.bincount(pair_row, minlength=len(self.counts))
        first_pair = np.cumsum(self.num_distinct) - self.num_distinct
        self.distinct_items = np.zeros(
            (len(self.counts), self.num_distinct.max(initial=1)), np.int64
        )
        self.distinct_items[pair_row, np.arange(len(pairs)) - first_pair[pair_row]] = pairs % span
        self.local_row = np.zeros(valid.shape, np.int64)
        self.local_row[valid] = pair_of_rating.reshape(-1) - first_pair[rating_row]
        # How wide :meth:`_orders` sorts each client's keys: its ratings, rounded up.
        self._sort_width = np.array([bucket(int(c)) for c in self.counts], np.int64)
        self._item_range = (
            np.where(valid, self.items, 0).min(axis=1, initial=0),
            self.items.max(axis=1, initial=0),
        )

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
        return self.pass_keys((num_clients, num_passes, self.items.shape[1]), rng)

    def pass_keys(self, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
        """Sort keys of ``shape`` ``[clients, passes, width]``, drawn from ``rng``: each
        pass reads a client's ratings in a uniformly random order."""
        return rng.random(shape)

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
        stages = self._examples(rows, keys, split, batch_size, reshuffle_each_pass)
        client = rows[:, None, None]
        return RoundBatches(
            *(
                PhaseBatches(
                    items=np.where(mask, self.items[client, examples], 0),
                    ratings=np.where(mask, self.ratings[client, examples], 0),
                    mask=mask,
                )
                for examples, mask in stages
            )
        )

    def _examples(self, rows, keys, split: DatasetSplit, batch_size: int, reshuffle_each_pass):
        """For each stage, which ratings (positions in the table's rows) each client uses
        at each step, ``[clients, steps, batch]``, and the mask of real examples."""
        counts = self.counts[rows]
        num_batches = -(-counts // batch_size)
        stages = []
        for phase, first_pass in (("recon", 0), ("post_recon", split.recon_epochs)):
            schedule = step_schedule(num_batches, split, phase)
            passes = schedule.epoch + first_pass  # the order each step's batch comes from
            if not reshuffle_each_pass:
                passes = np.zeros_like(passes)
            stages.append((schedule, passes))
        orders, index = self._orders(
            counts, self._sort_width[rows], keys, [(s.active, p) for s, p in stages]
        )
        width = keys.shape[2]
        client = np.arange(len(rows))[:, None]
        examples = []
        for schedule, passes in stages:
            position = schedule.batch[..., None] * batch_size + np.arange(batch_size)
            mask = schedule.active[..., None] & (position < counts[:, None, None])
            order = index[client, passes][..., None] * width + np.where(mask, position, 0)
            examples.append((orders.reshape(-1).take(order), mask))
        return examples

    @staticmethod
    def _orders(
        counts: np.ndarray, sort_widths: np.ndarray, keys: np.ndarray, stages
    ) -> tuple[np.ndarray, np.ndarray]:
        """The orders that sorting ``keys`` (``[clients, passes, width]``) gives each
        client's first ``counts`` ratings, for the passes that some step of ``stages``
        (pairs of a schedule's ``active`` and its passes) uses: ``orders[index[c, p]]``
        is client ``c``'s order in pass ``p`` (``orders`` has a row per pass used).

        Sorting only those, each client only ``sort_widths`` wide (at least its number of
        ratings), gives the same orders as sorting every pass over the table's width.
        """
        num_clients, num_passes, width = keys.shape
        used = np.zeros((num_clients, num_passes), bool)
        for active, passes in stages:
            used[np.nonzero(active)[0], passes[active]] = True
        client, which = np.nonzero(used)
        index = np.zeros((num_clients, num_passes), np.int64)
        index[client, which] = np.arange(len(client))
        orders = np.zeros((max(len(client), 1), width), np.int32)
        widths = np.minimum(sort_widths[client], width)
        for sort_width in np.unique(widths):
            picked = np.nonzero(widths == sort_width)[0]
            part = keys[client[picked], which[picked], :sort_width]
            real = np.arange(sort_width) < counts[client[picked], None]
            # The padding's keys sort above every real one, so it stays at the end.
            orders[picked, :sort_width] = np.argsort(np.where(real, part, 2.0), axis=1)
        return orders, index

    def training_shape(
        self, round_rows: Sequence[np.ndarray], split: DatasetSplit, batch_size: int
    ) -> TrainingShape:
        """The smallest :class:`TrainingShape` that holds the rounds of ``round_rows``."""
        sizes = [len(rows) for rows in round_rows]
        rows = np.concatenate([np.zeros(0, np.int64), *round_rows])
        num_batches = -(-self.counts[rows] // batch_size)
        steps = [_steps(num_batches, split, phase)[3].max(initial=0) for phase in _STAGES]
        table_rows = [self.num_distinct[rows].sum() for rows in round_rows]
        return TrainingShape(len(sizes), max(sizes, default=0), max(table_rows, default=0), *steps)

    def training_inputs(
        self,
        round_rows: Sequence[np.ndarray],
        round_keys: Sequence[np.ndarray],
        split: DatasetSplit,
        batch_size: int,
        num_items: int,
        *,
        reshuffle_each_pass: bool = True,
        shape: TrainingShape | None = None,
        clients_per_pass: int = 500,
    ) -> RoundInputs:
        """The simulator's inputs for training rounds, with a leading round axis: what
        :func:`round_inputs` makes of :meth:`batches_from_keys`, made directly (every
        client's local item rows were numbered once, when the table was packed).

        Round ``r`` trains table rows ``round_rows[r]`` with shuffle keys ``round_keys[r]``.
        Its table of local rows holds every item its clients rated, also those that no
        step of the round uses (their updates are zero). The arrays have ``shape``
        (default: the rounds' own, rounded up to :func:`bucket` sizes). The arrays are
        made ``clients_per_pass`` clients per vectorized pass (larger passes outgrow the
        CPU's caches), the passes on as many threads as there are CPUs.
        """
        needed = self.training_shape(round_rows, split, batch_size)
        shape = needed.bucketed() if shape is None else shape
        if any(have < need for have, need in zip(shape, needed)):
            raise ValueError(f"The rounds need a shape of at least {needed}, got {shape}.")
        sizes = np.array([len(rows) for rows in round_rows], np.int64)
        rows = np.concatenate([np.zeros(0, np.int64), *round_rows])
        if len(rows) and (
            self._item_range[0][rows].min() < 0 or self._item_range[1][rows].max() >= num_items
        ):
            raise ValueError(f"Item ids must be in [0, {num_items}).")
        bounds = np.concatenate([[0], np.cumsum(sizes)])  # each round's clients in ``rows``
        client_round = np.repeat(np.arange(len(sizes)), sizes)
        local_client = np.arange(len(rows)) - bounds[client_round]
        distinct = self.num_distinct[rows]
        table_bounds = np.concatenate([[0], np.cumsum(distinct)])
        client_offset = table_bounds[:-1] - table_bounds[bounds[client_round]]  # in its table
        num_rows = shape.table_rows
        padded = []
        for steps in (shape.recon_steps, shape.post_recon_steps):
            stage_shape = (shape.rounds, shape.clients, steps, batch_size)
            padded += [
                np.full(stage_shape, num_rows, np.int32),
                np.zeros(stage_shape, np.float32),
                np.zeros(stage_shape, np.float32),
            ]
        table_items = np.zeros((shape.rounds, num_rows), np.int32)
        table_clients = np.zeros((shape.rounds, num_rows), np.int32)

        def fill(start: int) -> None:  # the arrays of clients ``start`` on, one pass
            group = slice(start, min(start + clients_per_pass, len(rows)))
            keys = [
                round_keys[r][max(group.start - bounds[r], 0) : group.stop - bounds[r]]
                for r in range(client_round[group.start], client_round[group.stop - 1] + 1)
            ]
            keys = keys[0] if len(keys) == 1 else np.concatenate(keys)
            rating = rows[group, None, None] * self.items.shape[1]  # of position 0
            stages = self._examples(rows[group], keys, split, batch_size, reshuffle_each_pass)
            for first, (examples, mask) in zip((0, 3), stages):
                where = (client_round[group], local_client[group], slice(mask.shape[1]))
                rating_examples = rating + examples
                table_row = client_offset[group, None, None] + self.local_row.take(rating_examples)
                padded[first][where] = np.where(mask, table_row, num_rows)
                padded[first + 1][where] = np.where(mask, self.ratings.take(rating_examples), 0)
                padded[first + 2][where] = mask
            # The group's table rows: each client's distinct items, from its offset on.
            valid = np.arange(self.distinct_items.shape[1]) < distinct[group, None]
            entry_client, entry_column = np.nonzero(valid)
            entry_client += start
            where = (client_round[entry_client], client_offset[entry_client] + entry_column)
            table_items[where] = self.distinct_items[rows[group]][valid]
            table_clients[where] = local_client[entry_client]

        # The passes write to different clients' entries, so they can run side by side
        # (NumPy releases the GIL while it sorts and copies).
        starts = range(0, len(rows), clients_per_pass)
        with ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1) or 1) as pool:
            list(pool.map(fill, starts))
        return RoundInputs(table_items, table_clients, *padded)


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
    numbered = type(clients)(  # the same kind of clients: the same orders
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
