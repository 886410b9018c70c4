import collections
import importlib
import importlib.util
import json
from pathlib import Path

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


# --- Notebook 02 writes these definitions out; they must build the same thing ---------------

NOTEBOOK_02 = Path(__file__).resolve().parents[1] / "notebooks" / "02_model.ipynb"
DEFINED_IN_02 = (
    "UserEmbedding",
    "build_keras_model",
    "build_reconstruction_model",
    "input_spec",
    "RatingAccuracy",
    "loss_fn",
    "metrics_fn",
)


@pytest.fixture(scope="module")
def notebook_02() -> dict:
    """What the cells of notebook 02 tagged ``model-definition`` define, run in order."""
    cells = json.loads(NOTEBOOK_02.read_text())["cells"]
    tagged = [
        "".join(cell["source"])
        for cell in cells
        if "model-definition" in cell["metadata"].get("tags", [])
    ]
    assert len(tagged) == 4, "notebook 02 should tag its four definition cells"
    namespace = {"collections": collections, "tf": tf}
    tff = importlib.util.find_spec("tensorflow_federated")
    if tff is not None:
        namespace["tff"] = importlib.import_module("tensorflow_federated")
    for source in tagged:
        exec(compile(source, str(NOTEBOOK_02), "exec"), namespace)
    missing = [name for name in DEFINED_IN_02 if name not in namespace]
    assert not missing, f"notebook 02 no longer defines {missing}"
    return namespace


def _built(build, seed=7):
    tf.keras.utils.set_random_seed(seed)
    return build(37, 6)


def test_notebook_02_keras_model_equals_the_package_one(notebook_02):
    keras_model, global_layers, local_layers = _built(notebook_02["build_keras_model"])
    parts = _built(model.build_keras_model)
    assert [type(layer).__name__ for layer in keras_model.layers] == [
        type(layer).__name__ for layer in parts.keras_model.layers
    ]
    assert [layer.name for layer in keras_model.layers] == [
        layer.name for layer in parts.keras_model.layers
    ]
    for mine, theirs in ((global_layers, parts.global_layers), (local_layers, parts.local_layers)):
        assert [layer.name for layer in mine] == [layer.name for layer in theirs]
        mine_weights = [w.numpy() for layer in mine for w in layer.weights]
        theirs_weights = [w.numpy() for layer in theirs for w in layer.weights]
        assert [w.shape for w in mine_weights] == [w.shape for w in theirs_weights]
        for a, b in zip(mine_weights, theirs_weights):
            np.testing.assert_array_equal(a, b)  # same initial values under one seed
    items = tf.constant([[0], [36], [5], [5], [12]], tf.int64)
    np.testing.assert_array_equal(keras_model(items).numpy(), parts.keras_model(items).numpy())
    # Different seeds give different weights: the comparison above is not vacuous.
    other, _, _ = _built(notebook_02["build_keras_model"], seed=8)
    assert not np.array_equal(other(items).numpy(), parts.keras_model(items).numpy())


def test_notebook_02_user_embedding_repeats_like_the_package_one(notebook_02):
    items = tf.constant([[3], [1], [2], [9]], tf.int64)
    tf.keras.utils.set_random_seed(1)
    mine = notebook_02["UserEmbedding"](5)(items)
    tf.keras.utils.set_random_seed(1)
    theirs = model.UserEmbedding(5)(items)
    assert mine.shape == (4, 5)
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        ([[3.0], [4.0], [5.0]], [[3.4], [4.6], [2.0]]),
        ([[1.0], [2.0], [3.0], [4.0]], [[1.5], [2.5001], [2.49], [4.0]]),
    ],
)
def test_notebook_02_loss_and_metric_equal_the_package_ones(notebook_02, y_true, y_pred):
    (mine,), (theirs,) = notebook_02["metrics_fn"](), model.metrics_fn()
    assert type(mine).__name__ == type(theirs).__name__ and mine.name == theirs.name
    for batch in (slice(0, 2), slice(2, None)):
        mine.update_state(y_true[batch], y_pred[batch])
        theirs.update_state(y_true[batch], y_pred[batch])
    assert mine.result().numpy() == theirs.result().numpy()
    assert (
        notebook_02["loss_fn"]()(y_true, y_pred).numpy() == model.loss_fn()(y_true, y_pred).numpy()
    )
    assert notebook_02["input_spec"] == model.input_spec()


def test_notebook_02_reconstruction_model_equals_the_package_one(notebook_02):
    pytest.importorskip("tensorflow_federated")
    mine = _built(notebook_02["build_reconstruction_model"])
    theirs = _built(model.build_reconstruction_model)
    for kind in ("global", "local"):
        for part in ("trainable", "non_trainable"):
            a = getattr(mine, f"{kind}_{part}_variables")
            b = getattr(theirs, f"{kind}_{part}_variables")
            assert [v.name for v in a] == [v.name for v in b]
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x.numpy(), y.numpy())
    batch = {
        "x": tf.constant([[4], [0], [30]], tf.int64),
        "y": tf.constant([[3.0], [1.0], [5.0]], tf.float32),
    }
    np.testing.assert_array_equal(
        mine.forward_pass(batch, training=False).predictions.numpy(),
        theirs.forward_pass(batch, training=False).predictions.numpy(),
    )
    assert mine.input_spec == theirs.input_spec
