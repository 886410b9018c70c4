"""What the checks of exercises 3 and 4 run on a learner's model, and compare it with.

Exercise 3's model is compared with the Keras model (``model.build_reconstruction_model``)
on the same weights (:func:`outputs`, :func:`compare_outputs`) and trained for a few rounds
on tiny clients (:func:`train_briefly`). Exercise 4's builder is called
(:func:`build_parts`), its user embedding is moved to see where it acts
(:func:`check_embedding_feeds_last_layer`), and its personal model is trained for a few
rounds on TFF's synthetic EMNIST (:func:`train_emnist_briefly`). Exercise 4's TFF calls
have their checks here, re-exported by ``checks``: the two models
(:func:`check_exercise_4_models`), the two training processes
(:func:`check_exercise_4_processes`) and the evaluation (:func:`check_exercise_4_evaluation`).
Whatever a model does wrong is raised as ``feedback.AnswerIncorrect``.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, config, model, training
from tutorial_utils.exercises import emnist, feedback
from tutorial_utils.exercises.feedback import AnswerIncorrect
from tutorial_utils.plumbing import runtime

# --------------------------------------------------------------------------------------
# Exercise 3: matrix factorization in plain TensorFlow
# --------------------------------------------------------------------------------------

VARIABLE_LISTS = (
    "global_trainable_variables",
    "global_non_trainable_variables",
    "local_trainable_variables",
    "local_non_trainable_variables",
)


def shapes(reconstruction_model, kind: str) -> list[tuple]:
    """The shapes of one of the model's four variable lists (:data:`VARIABLE_LISTS`)."""
    return [tuple(v.shape) for v in getattr(reconstruction_model, kind)]


def global_shapes(reconstruction_model) -> list[tuple]:
    """The shapes of the global variables, trainable then non-trainable."""
    return shapes(reconstruction_model, "global_trainable_variables") + shapes(
        reconstruction_model, "global_non_trainable_variables"
    )


def local_shapes(reconstruction_model) -> list[tuple]:
    """The shapes of the local variables, trainable then non-trainable."""
    return shapes(reconstruction_model, "local_trainable_variables") + shapes(
        reconstruction_model, "local_non_trainable_variables"
    )


def tiny_rating_clients(
    num_items: int, num_users: int = 6, per_user: int = 5
) -> clients.RatingClients:
    """``num_users`` users with ``per_user`` random ratings each, one rating a batch."""
    rng = np.random.default_rng(7)
    rows = [
        (user, int(item), int(rng.integers(1, 6)))
        for user in range(num_users)
        for item in rng.choice(num_items, size=per_user, replace=False)
    ]
    return clients.RatingClients(
        pd.DataFrame(rows, columns=["UserID", "MovieID", "Rating"]), batch_size=1
    )


def same_spec(first, second) -> bool:
    """Whether two input specs have the same structure, dtypes and shapes."""
    try:
        tf.nest.assert_same_structure(first, second)
    except (ValueError, TypeError):
        return False
    return all(
        a.dtype == b.dtype and a.shape.as_list() == b.shape.as_list()
        for a, b in zip(tf.nest.flatten(first), tf.nest.flatten(second))
    )


def outputs(reconstruction_model, batch) -> dict:
    """Predictions, labels, number of examples, loss, rating accuracy and gradients."""
    variables = list(reconstruction_model.global_trainable_variables) + list(
        reconstruction_model.local_trainable_variables
    )
    with tf.GradientTape() as tape:
        output = reconstruction_model.forward_pass(batch, training=True)
        loss = model.loss_fn()(output.labels, output.predictions)
    gradients = tape.gradient(loss, variables)
    accuracy = model.RatingAccuracy()
    accuracy.update_state(output.labels, output.predictions)
    evaluation = reconstruction_model.forward_pass(batch, training=False)
    return {
        "predictions": np.asarray(output.predictions),
        "eval_predictions": np.asarray(evaluation.predictions),
        "labels": np.asarray(output.labels),
        "num_examples": int(output.num_examples),
        "loss": float(loss),
        "rating_accuracy": float(accuracy.result()),
        "gradients": [
            None if g is None else np.asarray(tf.convert_to_tensor(g)) for g in gradients
        ],
    }


def compare_outputs(got: dict, want: dict) -> None:
    """Raises :class:`AnswerIncorrect` at the first of :func:`outputs` that differs from
    the Keras model's, saying what that difference means."""
    if got["predictions"].shape != want["predictions"].shape:
        raise AnswerIncorrect(
            f"for a batch of 5 items the predictions have shape {got['predictions'].shape}; "
            f"the Keras model's have shape {want['predictions'].shape}, like the labels. With "
            "other shapes Keras' loss broadcasts one against the other and computes a wrong value."
        )
    if not np.allclose(got["predictions"], want["predictions"], rtol=1e-5, atol=1e-5):
        raise AnswerIncorrect(
            "with the same weights the predictions differ from the Keras model's: "
            f"{got['predictions'].ravel().round(4)} instead of "
            f"{want['predictions'].ravel().round(4)}. "
            "A prediction is the dot product of the user embedding and the item's row of the "
            "item matrix."
        )
    if not np.allclose(got["eval_predictions"], want["eval_predictions"], rtol=1e-5, atol=1e-5):
        raise AnswerIncorrect(
            "forward_pass(batch, training=False) predicts differently from training=True; "
            "this model has no dropout or other training-only behaviour."
        )
    if got["labels"].shape != want["labels"].shape or not np.array_equal(
        got["labels"], want["labels"]
    ):
        raise AnswerIncorrect(
            f"the labels returned are {got['labels'].ravel()} (shape {got['labels'].shape}); "
            f"they should be the batch's ratings y, {want['labels'].ravel()} "
            f"(shape {want['labels'].shape})."
        )
    if got["num_examples"] != want["num_examples"]:
        raise AnswerIncorrect(
            f"num_examples is {got['num_examples']} for a batch of {want['num_examples']} "
            "items; TFF weights each client's update by it."
        )
    for name in ("loss", "rating_accuracy"):
        if not np.isclose(got[name], want[name], rtol=1e-5, atol=1e-6):
            raise AnswerIncorrect(
                f"the {name.replace('_', ' ')} differs from the Keras model's: "
                f"{got[name]:.6f} instead of {want[name]:.6f}."
            )
    for which, g, w in zip(("item matrix", "user embedding"), got["gradients"], want["gradients"]):
        if g is None or not np.allclose(g, w, rtol=1e-4, atol=1e-5):
            raise AnswerIncorrect(
                f"the gradient of the loss with respect to the {which} "
                + (
                    "is missing: the prediction does not depend on that variable."
                    if g is None
                    else "differs from the Keras model's."
                )
            )


def train_briefly(model_fn: Callable, num_items: int, rounds: int = 3):
    """Runs a few FedRecon rounds on tiny clients; returns the history and whether the
    global variables changed."""
    rating_clients = tiny_rating_clients(num_items)
    process = training.build_training_process(model_fn)
    state = process.initialize()
    before = [np.array(w) for w in process.get_model_weights(state).trainable]
    everyone = clients.ClientSampler(rating_clients.client_ids, len(rating_clients))
    state, history = training.train(
        process, rating_clients, everyone, rounds, state=state, progress=False
    )
    after = process.get_model_weights(state).trainable
    changed = any(not np.array_equal(a, np.array(b)) for a, b in zip(before, after))
    return history, changed


# --------------------------------------------------------------------------------------
# Exercise 4: a CNN with a personal user embedding
# --------------------------------------------------------------------------------------


def build_parts(build_fn, num_classes: int, embedding_dim: int):
    """``build_fn(num_classes, embedding_dim)``, checked to return
    ``(keras_model, global_layers, local_layers)``; None if it returns None (the skeleton
    of notebook 04, not written yet)."""
    call = f"build_fn(num_classes={num_classes}, embedding_dim={embedding_dim})"
    try:
        parts = build_fn(num_classes=num_classes, embedding_dim=embedding_dim)
    except Exception as error:
        raise AnswerIncorrect(f"{call} raised {type(error).__name__}: {error}") from error
    if parts is None:
        return None
    if not (
        isinstance(parts, Sequence) and len(parts) == 3 and isinstance(parts[0], tf.keras.Model)
    ):
        raise AnswerIncorrect(
            f"{call} should return (keras_model, global_layers, local_layers), as "
            f"model.build_keras_model does; it returned {type(parts).__name__}."
        )
    return parts


def check_embedding_feeds_last_layer(reconstruction_model, parts, images, features, dim) -> None:
    """The embedding must move the logits exactly as the last Dense layer's extra rows say."""
    keras_model = parts[0]
    embedding = reconstruction_model.local_trainable_variables[0]
    kernel = next(
        v
        for v in reconstruction_model.global_trainable_variables
        if tuple(v.shape) == (features + dim, keras_model.output_shape[-1])
    )
    embedding.assign(np.zeros((1, dim), np.float32))
    base = keras_model(images).numpy()
    shift = np.linspace(-1.0, 1.0, dim, dtype=np.float32).reshape(1, dim)
    embedding.assign(shift)
    moved = keras_model(images).numpy() - base
    if np.allclose(moved, 0.0, atol=1e-6):
        raise AnswerIncorrect(
            "changing the user embedding does not change the predictions: it is not "
            "connected to the output. Concatenate it to the CNN features and feed both "
            "to the last Dense layer."
        )
    rows = kernel.numpy()
    candidates = (shift @ rows[features:], shift @ rows[:dim])  # [features, emb] or [emb, features]
    if not any(np.allclose(moved, np.broadcast_to(c, moved.shape), atol=1e-4) for c in candidates):
        raise AnswerIncorrect(
            "the user embedding changes the predictions, but not only through the last Dense "
            "layer: the exercise concatenates it to the CNN features right before that layer, "
            "so that it acts as a personal correction of the class scores."
        )


def train_emnist_briefly(build_fn, rounds: int = 2) -> pd.DataFrame:
    """FedRecon trains ``build_fn``'s personal model (an embedding of 4) for a few rounds on
    TFF's synthetic EMNIST, every client in every round; returns the history."""
    import tensorflow_federated as tff

    digits = tff.simulation.datasets.emnist.get_synthetic()
    # Every writer in every round, in batches of 4 images.
    run = config.FedReconRun(
        client_lr=0.05,
        batch_size=4,
        clients_per_round=len(digits.client_ids),
        num_rounds=rounds,
        num_latent_factors=4,
    )
    client_datasets = [
        emnist.emnist_batches(digits.create_tf_dataset_for_client(c), run.batch_size)
        for c in digits.client_ids
    ]
    process = training.build_training_process(
        lambda: emnist.personal_reconstruction_model(
            build_fn(num_classes=10, embedding_dim=run.num_latent_factors)
        ),
        run,
        loss_fn=emnist.emnist_loss_fn,
        metrics_fn=emnist.emnist_metrics_fn,
    )
    everyone = clients.ClientSampler(range(len(client_datasets)), run.clients_per_round)
    _, history = training.train(
        process,
        lambda ids: [client_datasets[i] for i in ids],
        everyone,
        run.num_rounds,
        progress=False,
    )
    return history


def check_exercise_4_models(personal_model_fn, global_model_fn, embedding_dim: int) -> None:
    """Checks exercise 4's two TFF models: ``personal_model_fn()`` a ``ReconstructionModel``
    (``from_keras_model_and_layers``) whose only local variable is the user embedding, and
    ``global_model_fn()`` a ``tff.learning`` model (``from_keras_model``) of the same network
    without the embedding, reporting EMNIST's accuracy."""
    import tensorflow_federated as tff

    if personal_model_fn is None or global_model_fn is None:
        feedback.not_done("write personal_model_fn and global_model_fn, then run this check.")
        return
    personal, plain = personal_model_fn(), global_model_fn()
    if personal is None or plain is None:
        feedback.not_done("a model function still returns None; finish it, then run this check.")
        return
    if not isinstance(personal, tff.learning.models.ReconstructionModel):
        raise AnswerIncorrect(
            f"personal_model_fn() returns a {type(personal).__name__}, not a "
            "ReconstructionModel. build_fed_recon needs to know which variables stay on the "
            "device: wrap the network with "
            "tff.learning.models.ReconstructionModel.from_keras_model_and_layers."
        )
    local = local_shapes(personal)
    if local != [(1, embedding_dim)]:
        raise AnswerIncorrect(
            f"the personal model's local variables have shapes {local}; expected only the "
            f"user embedding, {(1, embedding_dim)}. Pass the embedding layer as "
            "local_layers and every other layer with weights as global_layers."
        )
    if not same_spec(personal.input_spec, emnist.emnist_input_spec()):
        raise AnswerIncorrect(
            f"the personal model's input_spec is {personal.input_spec}; the writers' batches "
            f"are {emnist.emnist_input_spec()}. Pass input_spec=emnist.emnist_input_spec()."
        )
    if isinstance(plain, tff.learning.models.ReconstructionModel) or not isinstance(
        plain, tff.learning.models.VariableModel
    ):
        raise AnswerIncorrect(
            f"global_model_fn() returns a {type(plain).__name__}. Federated averaging trains "
            "a plain tff.learning model, with every variable global: build it with "
            "tff.learning.models.from_keras_model from build_fn(num_classes, 0)."
        )
    plain_shapes = shapes(plain, "trainable_variables")
    if (1, embedding_dim) in plain_shapes:
        raise AnswerIncorrect(
            f"the FedAvg model has a variable of the embedding's shape {(1, embedding_dim)}. "
            "FedAvg averages every variable over all writers, so an embedding there would be "
            "nobody's own: give from_keras_model the network built with embedding_dim=0."
        )
    personal_global = global_shapes(personal)
    if len(plain_shapes) != len(personal_global):
        raise AnswerIncorrect(
            f"the FedAvg model has {len(plain_shapes)} trainable variables and the personal "
            f"model {len(personal_global)} global ones: compare the same network, once with "
            "and once without the embedding."
        )
    metrics = plain.report_local_unfinalized_metrics()
    if "accuracy" not in metrics:
        raise AnswerIncorrect(
            f"the FedAvg model reports {sorted(metrics)}, not 'accuracy': pass "
            "metrics=emnist.emnist_metrics_fn() (and loss=emnist.emnist_loss_fn()), so that "
            "the two models are scored alike."
        )
    feedback.correct(
        f"the personal model keeps only the user embedding {(1, embedding_dim)} on the "
        f"device and shares its {len(personal_global)} other variables; the FedAvg model "
        f"shares all {len(plain_shapes)} of the same network without the embedding, and "
        "reports accuracy."
    )


def _shapes(weights) -> list[tuple]:
    """The shapes of a list of variables or arrays."""
    return [tuple(w.shape) for w in weights]


def _learning_rate(state_part) -> float | None:
    """The learning rate held in one part of a learning process's state, if any."""
    if isinstance(state_part, collections.abc.Mapping) and "learning_rate" in state_part:
        return float(state_part["learning_rate"])
    return None


def check_exercise_4_processes(fed_recon, fed_avg, run, embedding_dim: int) -> None:
    """Checks exercise 4's training processes: ``fed_recon`` from ``build_fed_recon`` on the
    personal model, ``fed_avg`` from ``build_weighted_fed_avg`` on the network without the
    embedding, both with ``run``'s server rate and reporting accuracy, FedAvg with
    ``run``'s client rate. It builds their first states, without training."""
    if fed_recon is None or fed_avg is None:
        feedback.not_done("build both fed_recon and fed_avg, then run this check again.")
        return

    runtime.start()  # TFF's C++ runtime, which builds the states
    states = {}
    for name, process in (("fed_recon", fed_recon), ("fed_avg", fed_avg)):
        if not all(hasattr(process, a) for a in ("initialize", "next", "get_model_weights")):
            raise AnswerIncorrect(
                f"{name} is a {type(process).__name__}, not a TFF learning process: it should "
                "be what the builder returns, with initialize, next and get_model_weights."
            )
        if "eval" in str(process.next.type_signature.result):
            raise AnswerIncorrect(
                f"{name} evaluates instead of training (its metrics are 'eval'): it was built "
                "with build_fed_recon_eval; training needs build_fed_recon or "
                "build_weighted_fed_avg."
            )
        states[name] = process.initialize()
    recon_state, avg_state = states["fed_recon"], states["fed_avg"]
    if _learning_rate(recon_state.client_work) is not None:
        raise AnswerIncorrect(
            "fed_recon was built with build_weighted_fed_avg: federated averaging shares "
            "every variable, so nothing would be personal. Build it with "
            "tff.learning.algorithms.build_fed_recon."
        )
    client_lr = _learning_rate(avg_state.client_work)
    if client_lr is None:
        raise AnswerIncorrect(
            "fed_avg was not built with build_weighted_fed_avg (its clients hold no learning "
            "rate of their own). Build it with tff.learning.algorithms.build_weighted_fed_avg."
        )
    recon_shapes = _shapes(recon_state.global_model_weights.trainable)
    avg_shapes = _shapes(avg_state.global_model_weights.trainable)
    if (1, embedding_dim) in recon_shapes:
        raise AnswerIncorrect(
            f"fed_recon's server holds a variable of the embedding's shape "
            f"{(1, embedding_dim)}: the embedding is global there. Give build_fed_recon "
            "personal_model_fn, whose embedding is local."
        )
    if recon_shapes == avg_shapes:
        raise AnswerIncorrect(
            "fed_recon and fed_avg train exactly the same weights: fed_recon's model has no "
            "embedding joining the last layer. Give build_fed_recon personal_model_fn."
        )
    for name, rate, expected, argument in (
        ("fed_recon", _learning_rate(recon_state.finalizer), run.server_lr, "server"),
        ("fed_avg", _learning_rate(avg_state.finalizer), run.server_lr, "server"),
        ("fed_avg", client_lr, run.client_lr, "client"),
    ):
        if rate is None or not np.isclose(rate, expected):
            raise AnswerIncorrect(
                f"{name}'s {argument} learning rate is {rate}; emnist_run says {expected}. "
                f"Pass {argument}_optimizer_fn=tff.learning.optimizers.build_sgdm("
                f"emnist_run.{argument}_lr), so that the two methods are compared alike."
            )
    for name, process in (("fed_recon", fed_recon), ("fed_avg", fed_avg)):
        if "accuracy" not in str(process.next.type_signature.result):
            raise AnswerIncorrect(
                f"{name}'s training metrics have no accuracy: pass "
                "metrics_fn=emnist.emnist_metrics_fn to build_fed_recon, and build FedAvg's "
                "model with metrics=emnist.emnist_metrics_fn()."
            )
    feedback.correct(
        f"fed_recon is FedRecon: its server holds {len(recon_shapes)} weights, the user "
        f"embedding stays on the devices; fed_avg is federated averaging of the "
        f"{len(avg_shapes)} weights of the network without it. Both use a server rate of "
        f"{run.server_lr:g} and report accuracy; FedAvg's clients train at {client_lr:g}."
    )


def check_exercise_4_evaluation(evaluation_process, eval_split_fn, run) -> None:
    """Checks exercise 4's evaluation: ``eval_split_fn`` keeps reconstruction and scoring
    disjoint and reconstructs in ``run.recon_epochs`` passes; ``evaluation_process(dim)``
    returns a ``build_fed_recon_eval`` process, for the network with an embedding of size
    ``dim`` (and without one for ``dim=0``)."""
    if evaluation_process is None or eval_split_fn is None:
        feedback.not_done("write eval_split_fn and evaluation_process, then run this check.")
        return
    recon, scored = feedback.trace_split(eval_split_fn, feedback.numbered_batches(6))
    shared = clients.common_ratings(recon, scored)
    if shared:
        raise AnswerIncorrect(
            f"in evaluation, on a writer with 6 batches, reconstruction uses {recon} and the "
            f"score is computed on {scored}: batches {shared} are in both. A personal "
            "embedding fitted to the very images it is scored on looks better than it is, "
            "and FedAvg, which has nothing to fit, would not gain the same. Use "
            "split_dataset=True."
        )
    if not recon or not scored:
        raise AnswerIncorrect(
            f"in evaluation, on a writer with 6 batches, reconstruction gets {recon} and "
            f"scoring {scored}: both need some of the writer's images."
        )
    passes = len(recon) / max(len(feedback.first_pass(recon)), 1)
    if passes != run.recon_epochs:
        raise AnswerIncorrect(
            f"in evaluation reconstruction makes {passes:g} passes ({feedback.short(recon)}); "
            f"training reconstructs in {run.recon_epochs} (emnist_run.recon_epochs): "
            "reconstruct a new writer's embedding as training did."
        )
    process = evaluation_process(4)
    if process is None:
        feedback.not_done("evaluation_process still returns None; finish it, then run this check.")
        return
    if "eval" not in str(process.next.type_signature.result):
        raise AnswerIncorrect(
            "evaluation_process returns a process that trains, not one that evaluates: build "
            "it with tff.learning.algorithms.build_fed_recon_eval."
        )
    feedback.correct(
        f"on a writer with 6 batches the embedding is reconstructed on {feedback.short(recon)} "
        f"({run.recon_epochs} passes) and the model scored on {scored}, disjoint; "
        "evaluation_process builds a build_fed_recon_eval process."
    )
