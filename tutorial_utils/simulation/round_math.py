"""The arithmetic of a FedRecon round in TensorFlow: every client of a round at once.

``tutorial_utils.simulation.simulator`` describes the algorithm and runs it; this module holds the
compiled XLA programs it calls (one training round, one evaluation) and their pieces,
which ``many_rounds`` (many rounds a program) and ``privacy`` (one client's update)
reuse.

A client only touches the item rows it rated, so its local copy of ``V`` is just those
rows: one table of the round has a row per (client, item) pair, and every rating
points at its row. Batches are padded to ``[clients, steps, batch_size]`` with a mask,
so step ``t`` of every client runs at once. Padded examples have zero gradient, so a
client that has run out of batches is left as it is.

- **Reconstruction** reads the frozen item rows straight from ``V`` and updates ``u``,
  one step after another (four steps a loop iteration, which XLA runs faster).
- **Training** keeps ``u`` frozen, so every step moves an item row along its client's
  ``u``: a trained row is ``v + a u``, one number ``a`` a table row, and a prediction
  is ``v . u + a |u|^2``. When no row is trained twice (one post-reconstruction epoch)
  every ``a`` is still 0 when its step comes, so all the steps run at once.
- **The server's sum** of the weighted deltas ``w_c a u_c`` is one matrix product: the
  numbers ``a`` in a ``[num_items, clients]`` matrix times the weighted embeddings.

These give TFF's results up to float rounding (``trained - received`` is computed as
``a u``). The tests compare them with a plain one-client-at-a-time reference and with
TFF.

A round's inputs (:class:`~tutorial_utils.simulation.program_inputs.RoundInputs`) come numbered and
padded from the host; the programs return per-client metric sums (``NUM_SUMS`` columns),
which :func:`round_metrics` turns into TFF's metrics.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tutorial_utils import metrics

# The per-client sums that the TensorFlow part returns, one column each.
LOSS_SUM, NUM_BATCHES, NUM_CORRECT, NUM_EXAMPLES, SQUARED_ERROR = range(5)
NUM_SUMS = 5


def _predict(item_matrix, user, items):
    """Item vectors ``[C, ..., B, k]`` of ``items`` and predictions ``u . v``."""
    vectors = tf.gather(item_matrix, items)
    return vectors, tf.einsum("c...k,ck->c...", vectors, user)


def _loss_gradient(predictions, ratings, mask):
    """d(batch loss)/d(prediction) for the masked mean squared error: ``2 (p - y) / n``.

    Padded examples get exactly 0 (``tf.where``, not a product with the mask, so that a
    diverged client's NaN cannot leak into other clients through the padding).
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


# Reconstruction steps a loop iteration: XLA runs a loop with fewer, longer iterations
# faster, and padding steps (no examples) leave the embeddings exactly as they are.
_STEPS_AN_ITERATION = 4


def _reconstruct(item_matrix, user, items, ratings, mask, learning_rate):
    """SGD on the user embeddings, one step per reconstruction batch, items frozen."""
    padding = [[0, 0], [0, -tf.shape(items)[1] % _STEPS_AN_ITERATION], [0, 0]]
    items, ratings, mask = (tf.pad(array, padding) for array in (items, ratings, mask))
    for iteration in tf.range(tf.shape(items)[1] // _STEPS_AN_ITERATION):
        for step in range(_STEPS_AN_ITERATION):
            t = iteration * _STEPS_AN_ITERATION + step
            vectors, predictions = _predict(item_matrix, user, items[:, t])
            gradient = tf.einsum(
                "cb,cbk->ck", _loss_gradient(predictions, ratings[:, t], mask[:, t]), vectors
            )
            user = user - learning_rate * gradient
    return user


def _train_items(item_matrix, user, post, learning_rate, num_rows, rows_once):
    """SGD on the local item rows, one step per post-reconstruction batch, users frozen.

    With ``u`` frozen, every step moves a row along its client's ``u``: after any number
    of steps a client's row of item ``i`` is ``v_i + a u``, for one number ``a`` a row.
    So the local table holds those numbers, and a prediction is ``v_i . u + a |u|^2``.
    ``post`` is ``(rows, items, ratings, mask)``; ``rows`` index the table (``num_rows``
    rows, and a scratch row for padded examples). If no row is trained twice
    (``rows_once``, e.g. one post-reconstruction epoch) every ``a`` starts at 0 when its
    step comes, so all the steps run at once; otherwise one after the other.

    Returns ``a`` (the update of table row ``r`` is ``a[r] u``) and the per-client metric
    sums, measured before each step.
    """
    rows, items, ratings, mask = post
    _, received = _predict(item_matrix, user, items)  # v . u, [C, S, B]
    squared_norm = tf.reduce_sum(tf.square(user), axis=1)[:, None]
    scratch = tf.zeros([num_rows + 1])

    def all_at_once():
        gradient = _loss_gradient(received, ratings, mask)
        coefficients = tf.tensor_scatter_nd_add(scratch, rows[..., None], -learning_rate * gradient)
        return coefficients, received

    def one_after_another():
        coefficients = scratch
        predictions = tf.TensorArray(tf.float32, size=tf.shape(rows)[1])
        for t in tf.range(tf.shape(rows)[1]):
            step = received[:, t] + tf.gather(coefficients, rows[:, t]) * squared_norm
            gradient = _loss_gradient(step, ratings[:, t], mask[:, t])
            coefficients = tf.tensor_scatter_nd_add(
                coefficients, rows[:, t, :, None], -learning_rate * gradient
            )
            predictions = predictions.write(t, step)
        return coefficients, tf.transpose(predictions.stack(), [1, 0, 2])

    coefficients, predictions = tf.cond(rows_once, all_at_once, one_after_another)
    return coefficients[:-1], _metric_sums(predictions, ratings, mask)


def _items_of(table_items, rows):
    """The item of each example's table row (the scratch row past the end: item 0)."""
    return tf.gather(tf.concat([table_items, [0]], axis=0), rows)


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


def local_training(
    item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr, rows_once
):
    """What the clients of a round do: reconstruct, then train their item rows.

    Returns, for each table row, the number ``a`` such that its update (trained minus
    received) is ``a`` times its client's reconstructed user embedding; those
    embeddings; and the metric sums. ``rows_once``: no table row is trained twice
    (:func:`tutorial_utils.simulation.program_inputs.trains_rows_once`).
    """
    recon_rows, *recon_examples = recon
    user = _reconstruct(
        item_matrix, user, _items_of(table_items, recon_rows), *recon_examples, reconstruction_lr
    )
    post_rows, *post_examples = post
    post = (post_rows, _items_of(table_items, post_rows), *post_examples)
    coefficients, sums = _train_items(
        item_matrix, user, post, client_lr, tf.shape(table_items)[0], rows_once
    )
    return coefficients, user, sums


TRAINING_SPECS = [
    *ROUND_SPECS,
    tf.TensorSpec([None], tf.int32),  # client of each table row
    tf.TensorSpec([], tf.float32),  # client learning rate
    tf.TensorSpec([], tf.float32),  # server learning rate
    (tf.TensorSpec([]), tf.TensorSpec([None, None]), tf.TensorSpec([])),  # DP (float32)
    tf.TensorSpec([], tf.bool),  # no table row is trained twice
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
    rows_once,
):
    """One FedRecon round: local reconstruction and training, then the server update.

    ``recon`` and ``post`` are a stage's ``(rows, ratings, mask)``.
    """
    coefficients, user, sums = local_training(
        item_matrix, table_items, user, recon, post, reconstruction_lr, client_lr, rows_once
    )
    num_clients = tf.shape(user)[0]
    # A client whose update is not finite is dropped (zero weight). Its update's entries
    # are its coefficients times its u: all finite if the coefficients are and the
    # largest |a| times the largest |u| is. (Only rows that a step trained can have an
    # ``a`` other than 0, so the client's steps' rows hold them all.)
    trained = tf.gather(tf.concat([coefficients, [0.0]], axis=0), post[0])  # [C, S, B]
    client_finite = tf.reduce_all(tf.math.is_finite(trained), axis=[1, 2])
    largest = tf.reduce_max(tf.abs(trained), axis=[1, 2])
    largest_entry = largest * tf.reduce_max(tf.abs(user), axis=1)
    client_finite &= (largest <= 0) | tf.math.is_finite(largest_entry)
    clip, noise, denominator = dp_arguments  # clip inf: no DP, noise 0
    dp = tf.math.is_finite(clip)  # DP: weights 1, clipped deltas, noise, fixed denominator
    weights = tf.where(client_finite, tf.where(dp, 1.0, sums[:, NUM_EXAMPLES]), 0.0)

    # With DP each client's update is clipped to norm ``clip``, as TF clips.
    squares = tf.math.unsorted_segment_sum(tf.square(coefficients), table_clients, num_clients)
    squares *= tf.reduce_sum(tf.square(user), axis=1)
    clipped = weights * clip * tf.minimum(tf.math.rsqrt(squares), 1 / clip)
    scales = tf.where(dp, clipped, weights)
    # sum_c scale_c a_c u_c as one product: the clients' coefficients, one column each
    # (an item's row, a client's column), times their scaled embeddings.
    kept = tf.where(tf.gather(weights, table_clients) > 0, coefficients, 0.0)
    coefficient_matrix = tf.scatter_nd(
        tf.stack([table_items, table_clients], axis=1),
        kept,
        tf.stack([tf.shape(item_matrix)[0], num_clients]),
    )
    scaled_users = tf.where(scales[:, None] > 0, user, 0.0) * scales[:, None]
    weighted_sum = tf.matmul(coefficient_matrix, scaled_users) + noise  # (0 without DP)
    mean_delta = weighted_sum / tf.where(dp, denominator, tf.reduce_sum(weights))
    # Server SGD with -mean_delta as the gradient; a non-finite mean is rejected.
    accept = tf.reduce_all(tf.math.is_finite(mean_delta))
    return tf.where(accept, item_matrix + server_lr * mean_delta, item_matrix), sums


compiled_training_round = tf.function(
    training_round, input_signature=TRAINING_SPECS, jit_compile=True
)


@tf.function(input_signature=ROUND_SPECS, jit_compile=True)
def compiled_evaluation(item_matrix, table_items, user, recon, post, reconstruction_lr):
    """Reconstruction, then the metric sums of the post-reconstruction batches."""
    recon_rows, *recon_examples = recon
    user = _reconstruct(
        item_matrix, user, _items_of(table_items, recon_rows), *recon_examples, reconstruction_lr
    )
    post_rows, post_ratings, post_mask = post
    _, predictions = _predict(item_matrix, user, _items_of(table_items, post_rows))
    return _metric_sums(predictions, post_ratings, post_mask)


def round_metrics(sums: np.ndarray) -> dict[str, float]:
    """Sums the clients' metric sums, then divides (TFF's ``sum_then_finalize``; a ratio
    with a denominator of 0 is 0, as Keras' ``divide_no_nan``)."""
    total = sums.astype(np.float64).sum(axis=0)
    loss, batches, correct, examples = total[[LOSS_SUM, NUM_BATCHES, NUM_CORRECT, NUM_EXAMPLES]]
    return {
        "loss": float(loss / batches) if batches else 0.0,
        "rating_accuracy": float(correct / examples) if examples else 0.0,
        "num_examples": int(examples),
    }
