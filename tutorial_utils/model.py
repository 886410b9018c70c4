"""The matrix factorization model: a global item matrix and a local user embedding.

The Keras parts (``UserEmbedding``, ``build_keras_model``, ``RatingAccuracy``) need only
TensorFlow; ``build_reconstruction_model`` wraps them for TensorFlow Federated.
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import tensorflow as tf

from tutorial_utils import metrics

NUM_LATENT_FACTORS = 50


def input_spec() -> collections.OrderedDict:
    """The element spec of every client's dataset: movie ids ``x`` and ratings ``y``."""
    return collections.OrderedDict(
        x=tf.TensorSpec(shape=[None, 1], dtype=tf.int64),
        y=tf.TensorSpec(shape=[None, 1], dtype=tf.float32),
    )


class UserEmbedding(tf.keras.layers.Layer):
    """The embedding of the one user whose device runs the model.

    It ignores the values of its input: for a batch of ``b`` items it returns its single
    ``[1, num_latent_factors]`` weight repeated ``b`` times, one copy per item.
    """

    def __init__(self, num_latent_factors: int, initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_latent_factors = num_latent_factors
        self.initializer = tf.keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="UserEmbeddingKernel",
            shape=(1, self.num_latent_factors),
            initializer=self.initializer,
            dtype=tf.float32,
        )
        super().build(input_shape)

    def call(self, inputs):
        return tf.repeat(self.embedding, tf.shape(inputs)[0], axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_latent_factors=self.num_latent_factors,
            initializer=tf.keras.initializers.serialize(self.initializer),
        )
        return config


class MatrixFactorization(NamedTuple):
    """A Keras model and its layers, sorted into global (shared) and local (private)."""

    keras_model: tf.keras.Model
    global_layers: list
    local_layers: list


def build_keras_model(
    num_items: int,
    num_latent_factors: int = NUM_LATENT_FACTORS,
    *,
    item_initializer="uniform",
    user_initializer="uniform",
) -> MatrixFactorization:
    """Builds the model that predicts a rating as ``user_embedding . item_embedding``."""
    item_input = tf.keras.layers.Input(shape=[1], name="Item", dtype=tf.int64)
    item_embedding = tf.keras.layers.Embedding(
        num_items,
        num_latent_factors,
        embeddings_initializer=item_initializer,
        name="ItemEmbedding",
    )
    item_vector = tf.keras.layers.Flatten(name="FlattenItems")(item_embedding(item_input))
    # The user embedding ignores its input; passing item_input keeps Keras' graph connected.
    user_embedding = UserEmbedding(
        num_latent_factors, initializer=user_initializer, name="UserEmbedding"
    )
    user_vector = user_embedding(item_input)
    prediction = tf.keras.layers.Dot(axes=1, name="Dot")([user_vector, item_vector])
    keras_model = tf.keras.Model(inputs=item_input, outputs=prediction)
    return MatrixFactorization(keras_model, [item_embedding], [user_embedding])


def build_reconstruction_model(
    num_items: int, num_latent_factors: int = NUM_LATENT_FACTORS, **initializers
):
    """The Keras model as a ``tff.learning.models.ReconstructionModel``.

    The item embedding is global (trained on clients, averaged on the server); the user
    embedding is local (rebuilt on each client, never sent anywhere).
    """
    import tensorflow_federated as tff

    parts = build_keras_model(num_items, num_latent_factors, **initializers)
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        parts.keras_model,
        global_layers=parts.global_layers,
        local_layers=parts.local_layers,
        input_spec=input_spec(),
    )


def reconstruction_model_fn(
    num_items: int, num_latent_factors: int = NUM_LATENT_FACTORS, **initializers
):
    """A no-argument ``model_fn``, as TFF's process builders expect."""
    return functools.partial(
        build_reconstruction_model, num_items, num_latent_factors, **initializers
    )


class RatingAccuracy(tf.keras.metrics.Mean):
    """Share of predictions that round to the true rating (``metrics.is_correct``)."""

    def __init__(self, name: str = "rating_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        correct = metrics.is_correct(y_true, y_pred)
        return super().update_state(correct, sample_weight=sample_weight)


def loss_fn() -> tf.keras.losses.Loss:
    """Mean squared error between predicted and true ratings."""
    return tf.keras.losses.MeanSquaredError()


def metrics_fn() -> list:
    """The metrics reported during training and evaluation."""
    return [RatingAccuracy()]
