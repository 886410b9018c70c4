"""Many FedRecon rounds in one compiled program: the simulator at the machine's limit.

:meth:`simulator.FedReconSimulator.run_round`
does a round's host work in NumPy (the random draws, the batches and the table of local
item rows), then calls one compiled program. At 50 or 100 clients a round the arithmetic
takes a few milliseconds, so that host work and the call itself (converting the
arguments, dispatch) are a large share of the round. :func:`run_rounds` instead

1. draws the random numbers of many rounds in the order ``run_round`` draws them (each
   round's shuffle keys, then its user embeddings), so the results stay the same;
2. builds the batches and tables of those rounds a few rounds per vectorized NumPy pass
   (:meth:`PackedClients.training_inputs`), all in one shape just large enough for every
   round it is given, so that the program compiles once;
3. runs them in one XLA program, a loop over rounds whose body is the simulator's own
   :func:`round_math.training_round`, so the item matrix never leaves the program
   between rounds; meanwhile the host prepares the next rounds.

The rounds' results equal those of calling ``run_round`` once a round
(``tests/test_many_rounds.py``). :func:`blocks` lets ``simulator.train`` run the rounds
between two evaluations this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from tutorial_utils.plumbing import rounds
from tutorial_utils.simulation import round_math
from tutorial_utils.simulation.batches import PackedClients
from tutorial_utils.simulation.program_inputs import RoundInputs, TrainingShape, trains_rows_once


def _with_round_axis(spec):
    return tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype), spec)


_ITEMS, _TABLE, _USERS, _RECON, _POST, _RECON_LR, _CLIENTS = round_math.TRAINING_SPECS[:7]
_MANY_ROUNDS_SPECS = [
    _ITEMS,
    *(_with_round_axis(spec) for spec in (_TABLE, _USERS, _RECON, _POST)),
    _RECON_LR,
    _with_round_axis(_CLIENTS),
    *round_math.TRAINING_SPECS[7:],  # learning rates, DP arguments, rows trained once
    tf.TensorSpec([], tf.int32),  # the number of real rounds (the rest is padding)
]


@tf.function(input_signature=_MANY_ROUNDS_SPECS, jit_compile=True)
def _training_rounds(
    item_matrix,
    table_items,
    users,
    recon,
    post,
    reconstruction_lr,
    table_clients,
    client_lr,
    server_lr,
    dp_arguments,
    rows_once,
    num_rounds,
):
    """``num_rounds`` rounds of :func:`round_math.training_round`, round ``r`` on the
    ``r``-th slice of every input. Returns the item matrix and the sums ``[rounds, C, 5]``."""
    sums = tf.zeros([tf.shape(users)[0], tf.shape(users)[1], round_math.NUM_SUMS])
    for r in tf.range(num_rounds):
        item_matrix, round_sums = round_math.training_round(
            item_matrix,
            table_items[r],
            users[r],
            tuple(stage[r] for stage in recon),
            tuple(stage[r] for stage in post),
            reconstruction_lr,
            table_clients[r],
            client_lr,
            server_lr,
            dp_arguments,
            rows_once,
        )
        sums = tf.tensor_scatter_nd_update(sums, [[r]], round_sums[None])
    return item_matrix, sums


def many_round_inputs(
    fedrecon,
    clients: PackedClients,
    client_id_lists: Sequence[Sequence[int]],
    shape: TrainingShape | None = None,
) -> tuple[RoundInputs, np.ndarray]:
    """The inputs of several training rounds, each with a leading round axis, and the
    initial user embeddings ``[rounds, clients, k]``, drawn from the simulator's generator
    in the order that calling ``run_round`` once a round draws them. The arrays have
    ``shape`` (:meth:`PackedClients.training_inputs`); padding rounds have no clients."""
    run, rng = fedrecon.run, fedrecon.rng
    rows = [clients.rows(client_ids) for client_ids in client_id_lists]
    keys, users = [], []
    for round_rows in rows:
        keys.append(
            clients.shuffle_keys(
                len(round_rows), run.train_split, rng, fedrecon.reshuffle_each_pass
            )
        )
        users.append(fedrecon.draw_users(len(round_rows)))
    inputs = clients.training_inputs(
        rows,
        keys,
        run.train_split,
        run.batch_size,
        fedrecon.num_items,
        reshuffle_each_pass=fedrecon.reshuffle_each_pass,
        shape=shape,
    )
    initial_users = np.zeros((*inputs.recon_rows.shape[:2], run.num_latent_factors), np.float32)
    for r, round_users in enumerate(users):
        initial_users[r, : len(round_users)] = round_users
    return inputs, initial_users


def program_arguments(fedrecon, inputs, initial_users, num_rounds):
    """The arguments of the compiled many-round program, as tensors (the transfer)."""
    run = fedrecon.run
    dp_arguments = (
        fedrecon.dp_clip or np.inf,
        np.zeros((fedrecon.num_items, run.num_latent_factors), np.float32),
        run.clients_per_round,
    )
    arguments = [
        inputs.table_items,
        initial_users,
        (inputs.recon_rows, inputs.recon_ratings, inputs.recon_mask),
        (inputs.post_recon_rows, inputs.post_recon_ratings, inputs.post_recon_mask),
        run.reconstruction_lr,
        inputs.table_clients,
        run.client_lr,
        run.server_lr,
        dp_arguments,
        trains_rows_once(inputs),
        num_rounds,
    ]
    specs = _MANY_ROUNDS_SPECS[1:]
    return tf.nest.map_structure(lambda a, s: tf.constant(a, s.dtype), arguments, specs)


def run_program(fedrecon, arguments) -> list[dict[str, float]]:
    """Runs the compiled rounds from the simulator's item matrix, and updates it."""
    fedrecon._item_matrix, sums = _training_rounds(fedrecon._item_matrix, *arguments)
    sums = sums.numpy()
    return [round_math.round_metrics(sums[r]) for r in range(int(arguments[-1]))]


def run_rounds(
    fedrecon,
    clients: PackedClients,
    client_id_lists: Sequence[Sequence[int]],
    rounds_per_program: int = 50,
    *,
    shape: TrainingShape | None = None,
) -> list[dict[str, float]]:
    """Training rounds on ``client_id_lists`` (one list of clients per round), as many
    calls of ``fedrecon.run_round`` would run them, ``rounds_per_program`` at a time in
    one compiled program. Returns each round's metrics, as ``run_round`` does. ``shape``
    (:meth:`PackedClients.training_shape`, default: these rounds') sizes the programs'
    arrays; its ``rounds`` is the most rounds that one call will be given.

    With DP noise (``dp_noise_multiplier > 0``) every round draws its noise between the
    rounds' other draws, so those rounds run one at a time, through ``run_round``.
    """
    if rounds_per_program < 1:
        raise ValueError(f"rounds_per_program must be at least 1, got {rounds_per_program}.")
    if fedrecon.dp_noise_multiplier:
        return [fedrecon.run_round(clients, client_ids) for client_ids in client_id_lists]
    chunks = [
        client_id_lists[start : start + rounds_per_program]
        for start in range(0, len(client_id_lists), rounds_per_program)
    ]

    # One shape for every chunk, just large enough for all the rounds: one compilation.
    # (``shape``, if given, holds these rounds and may hold more, for calls to come.)
    if shape is None:
        rows = [clients.rows(client_ids) for client_ids in client_id_lists]
        shape = clients.training_shape(rows, fedrecon.run.train_split, fedrecon.run.batch_size)
    shape = shape._replace(rounds=min(rounds_per_program, shape.rounds))

    def prepare(chunk):
        inputs, initial_users = many_round_inputs(fedrecon, clients, chunk, shape)
        return program_arguments(fedrecon, inputs, initial_users, len(chunk))

    # The host prepares the next chunk (and turns it into tensors) while the compiled
    # program runs the current one (the chunks' random draws still happen in order, one
    # chunk after the other).
    results = []
    with ThreadPoolExecutor(max_workers=1) as host:
        upcoming = host.submit(prepare, chunks[0]) if chunks else None
        for index in range(len(chunks)):
            arguments = upcoming.result()
            if index + 1 < len(chunks):
                upcoming = host.submit(prepare, chunks[index + 1])
            results += run_program(fedrecon, arguments)
    return results


def blocks(fedrecon, clients: PackedClients, sampler, num_rounds: int, block: int):
    """For :func:`simulator.train`: draws the ``num_rounds`` rounds' clients from
    ``sampler`` first, so that one program shape holds every block of at most ``block``
    rounds (one compilation). Returns a sampler that replays them, and the
    ``next_rounds`` of :func:`rounds.run_rounds` that runs a block with :func:`run_rounds`."""
    client_id_lists = [sampler.sample() for _ in range(num_rounds)]
    rows = [clients.rows(client_ids) for client_ids in client_id_lists]
    shape = clients.training_shape(rows, fedrecon.run.train_split, fedrecon.run.batch_size)
    shape = shape._replace(rounds=min(block, num_rounds, rounds.MAX_BLOCK))

    def next_rounds(block_client_ids):
        return run_rounds(fedrecon, clients, block_client_ids, shape=shape)

    return rounds.Replay(client_id_lists), next_rounds
