"""A round's batches as the compiled program's arrays: numbered and padded.

The simulator's program (``tutorial_utils.simulation.simulator``) takes a round as
:class:`RoundInputs`: every example points at a row of one table of the clients' local
item rows, and every dimension is padded, so that XLA compiles few programs. Two makers:
:func:`round_inputs`, from any :class:`~tutorial_utils.simulation.batches.RoundBatches` (e.g. the
batches TFF would use), and :meth:`PackedClients.training_inputs
<tutorial_utils.simulation.batches.PackedClients.training_inputs>`, faster and for many rounds at
once, sized by a :class:`TrainingShape`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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
    examples point one past the table's end, at a scratch row.
    :meth:`PackedClients.training_inputs` gives many rounds, each array with a leading
    round axis.
    """

    table_items: np.ndarray  # [rows] int32: the item of each table row
    table_clients: np.ndarray  # [rows] int32: the client of each table row
    recon_rows: np.ndarray  # [clients, steps, batch] int32
    recon_ratings: np.ndarray  # [clients, steps, batch] float32
    recon_mask: np.ndarray  # [clients, steps, batch] float32, 1 for real examples
    post_recon_rows: np.ndarray
    post_recon_ratings: np.ndarray
    post_recon_mask: np.ndarray


def round_inputs(batches, num_items: int) -> RoundInputs:
    """Numbers the distinct (client, item) pairs of a round (``batches``, a
    :class:`~tutorial_utils.simulation.batches.RoundBatches`) and pads every dimension.

    Clients, steps and table rows are padded to :func:`bucket` sizes; padding clients
    and steps have no examples, padding table rows belong to no example. (For training
    rounds of :class:`PackedClients`, :meth:`PackedClients.training_inputs` makes the
    same inputs faster, and for many rounds at once.)
    """
    phases = (batches.recon, batches.post_recon)
    for phase in phases:
        real_items = phase.items[phase.mask]
        if real_items.size and (real_items.min() < 0 or real_items.max() >= num_items):
            raise ValueError(f"Item ids must be in [0, {num_items}).")
    client = np.arange(batches.num_clients, dtype=np.int64)[:, None, None]
    keys = [(client * num_items + phase.items)[phase.mask] for phase in phases]
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    num_rows = bucket(len(pairs))
    num_clients = bucket(batches.num_clients)
    padded = []
    for phase, phase_inverse in zip(phases, np.split(inverse.reshape(-1), [len(keys[0])])):
        clients, steps, batch_size = phase.mask.shape
        shape = (num_clients, bucket(steps), batch_size)
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
    return RoundInputs(table_items, table_clients, *padded)


def trains_rows_once(inputs: RoundInputs) -> bool:
    """Whether no round of ``inputs`` (one round, or many with a leading round axis)
    trains a table row twice: no row but the scratch row appears twice among its
    post-reconstruction examples, as with one post-reconstruction epoch. The simulator
    then runs every post-reconstruction step at once."""
    num_rows = inputs.table_items.shape[-1]
    rows = inputs.post_recon_rows.reshape(inputs.table_items.size // num_rows, -1)
    numbered = rows + (num_rows + 1) * np.arange(len(rows))[:, None]  # each round its own
    counts = np.bincount(numbered[rows < num_rows], minlength=1)
    return bool(counts.max() <= 1)


class TrainingShape(NamedTuple):
    """The sizes of :meth:`PackedClients.training_inputs`' arrays: rounds, clients a
    round, rows of a round's table of local item rows, and steps of each stage."""

    rounds: int
    clients: int
    table_rows: int
    recon_steps: int
    post_recon_steps: int

    def bucketed(self) -> TrainingShape:
        """Every size rounded up to a :func:`bucket` size."""
        return TrainingShape(*(bucket(int(size)) for size in self))
