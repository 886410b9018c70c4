import numpy as np
import pytest
import tensorflow as tf

from tutorial_utils import model


def test_user_embedding_repeats_its_weight_for_every_item():
    layer = model.UserEmbedding(4, initializer="ones")
    out = layer(tf.constant([[3], [1], [2]], tf.int64))
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out.numpy(), np.ones((3, 4)))
    assert [w.shape for w in layer.trainable_weights] == [(1, 4)]


def test_prediction_is_the_dot_product_of_user_and_item_embeddings():
    parts = model.build_keras_model(6, 3)
    items = np.arange(18, dtype=np.float32).reshape(6, 3) / 10
    user = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    parts.global_layers[0].set_weights([items])
    parts.local_layers[0].set_weights([user])
    x = tf.constant([[4], [0], [5]], tf.int64)
    np.testing.assert_allclose(
        parts.keras_model(x).numpy().ravel(), items[[4, 0, 5]] @ user.ravel(), rtol=1e-6
    )


def test_layers_are_sorted_into_global_item_and_local_user():
    parts = model.build_keras_model(10, 5)
    assert [layer.name for layer in parts.global_layers] == ["ItemEmbedding"]
    assert [layer.name for layer in parts.local_layers] == ["UserEmbedding"]
    assert parts.global_layers[0].embeddings.shape == (10, 5)


@pytest.mark.parametrize(
    "y_pred, expected",
    [([[3.4], [4.6], [2.0]], 1 / 3), ([[3.5], [3.4], [4.6]], 2 / 3), ([[3.0], [4.0], [5.0]], 1.0)],
)
def test_rating_accuracy_counts_predictions_within_half_a_star(y_pred, expected):
    metric = model.RatingAccuracy()
    metric.update_state([[3.0], [4.0], [5.0]], y_pred)
    assert metric.result().numpy() == pytest.approx(expected)
    assert metric.name == "rating_accuracy"


def test_rating_accuracy_accumulates_over_batches():
    metric = model.RatingAccuracy()
    metric.update_state([[1.0]], [[1.2]])
    metric.update_state([[2.0], [3.0], [4.0]], [[0.0], [0.0], [4.4]])
    assert metric.result().numpy() == pytest.approx(0.5)


def test_loss_is_mean_squared_error():
    assert model.loss_fn()([[3.0], [1.0]], [[1.0], [1.0]]).numpy() == pytest.approx(2.0)


def test_reconstruction_model_has_item_matrix_global_and_user_embedding_local():
    pytest.importorskip("tensorflow_federated")
    reconstruction_model = model.reconstruction_model_fn(12, 4)()
    assert [tuple(v.shape) for v in reconstruction_model.global_trainable_variables] == [(12, 4)]
    assert [tuple(v.shape) for v in reconstruction_model.local_trainable_variables] == [(1, 4)]
    assert not reconstruction_model.global_non_trainable_variables
    assert not reconstruction_model.local_non_trainable_variables
