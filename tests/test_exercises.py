"""The exercise checks pass right answers and catch wrong ones, in plain words.

The tools they share are tested in test_feedback.py, exercise 4's EMNIST in test_emnist.py.
"""

import re
import types
from typing import NamedTuple

import pandas as pd
import pytest
import tensorflow as tf

tff = pytest.importorskip("tensorflow_federated")

from tutorial_utils import config, exercises, feedback, model, runs  # noqa: E402

ReconstructionModel = tff.learning.models.ReconstructionModel
split = ReconstructionModel.build_dataset_split_fn


def verdict(capsys):
    return capsys.readouterr().out


def fails(check, *answer, match):
    """The check raises AnswerIncorrect and its explanation matches ``match``."""
    with pytest.raises(feedback.AnswerIncorrect) as caught:
        check(*answer)
    assert str(caught.value).startswith("❌ Not yet")
    assert re.search(match, caught.value.explanation), caught.value.explanation
    return caught.value.explanation


# --- Any answer that is not a split -------------------------------------------------------


@pytest.mark.parametrize("answer", [42, lambda d: d, lambda d: (d,), lambda d: 1 / 0])
def test_anything_but_a_split_function_is_explained(answer):
    fails(exercises.check_exercise_1, answer, match="dataset_split_fn|datasets|raised")


# --- Exercise 1 ----------------------------------------------------------------------------


def test_exercise_1_passes_the_right_split(capsys):
    exercises.check_exercise_1(split(3, 50, 1, 50, split_dataset=True))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_1_not_done_yet(capsys):
    exercises.check_exercise_1(None)
    assert verdict(capsys).startswith("⏳ Not done yet")


@pytest.mark.parametrize(
    "wrong, match",
    [
        (split(3, 50, 1, 50), "share batches"),  # halves overlap: evaluation would leak
        (split(1, 50, 1, 50, split_dataset=True), "3 passes"),
        (split(3, 50, 2, 50, split_dataset=True), "1 pass"),
        (split(3, None, 1, 50, split_dataset=True), "caps it at 50"),
        (split(3, 100, 1, 50, split_dataset=True), "caps it at 50"),
        (split(3, 50, 1, None, split_dataset=True), "post_recon_steps_max=50"),
        (split(3, 50, 1, 20, split_dataset=True), "post_recon_steps_max=50"),
    ],
)
def test_exercise_1_catches_wrong_split_parameters(wrong, match):
    fails(exercises.check_exercise_1, wrong, match=match)


def test_exercise_1_catches_a_cap_applied_to_each_epoch():
    def per_epoch_cap(dataset):
        recon = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, e: e)
        post = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, e: e)
        return recon.take(50).repeat(3), post.take(50)

    message = fails(exercises.check_exercise_1, per_epoch_cap, match="ran 150 steps")
    assert "after the 3 passes" in message


def test_exercise_1_catches_data_left_unused():
    def drops_a_batch(dataset):
        recon = dataset.skip(1).enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, e: e)
        post = dataset.skip(1).enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, e: e)
        return recon.repeat(3).take(50), post.take(50)

    fails(exercises.check_exercise_1, drops_a_batch, match=r"batches \[0\] are used neither")


def run_result(validation, test=None, kind="movielens", name="full", engine="TFF"):
    def metrics(accuracy):
        return {"loss": 1.0, "rating_accuracy": accuracy}

    test = validation if test is None else test
    return runs.RunResult(
        config.SPLIT_ALONE,
        name,
        kind,
        metrics(validation),
        metrics(test),
        pd.DataFrame(),
        1.0,
        engine,
    )


def test_exercise_1_tuning_is_judged_on_real_data_in_the_full_configuration(capsys):
    exercises.check_exercise_1_tuning(run_result(0.43), baseline=0.396)
    assert verdict(capsys).startswith("✅ Correct")
    fails(exercises.check_exercise_1_tuning, run_result(0.38), match="below|at least 0.40")
    fails(
        lambda r: exercises.check_exercise_1_tuning(r, baseline=0.41),
        run_result(0.405),
        match="not above",
    )
    exercises.check_exercise_1_tuning(run_result(0.1, kind="synthetic", name="smoke"))
    assert verdict(capsys).startswith("ℹ️ Not judged")
    exercises.check_exercise_1_tuning(None)
    assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_1_tuning_decides_on_validation_and_only_reports_test(capsys):
    exercises.check_exercise_1_tuning(run_result(0.42, test=0.35))
    out = verdict(capsys)
    assert out.startswith("✅ Correct") and "validation rating accuracy 0.4200" in out
    assert "test rating accuracy, reported only: 0.3500" in out and "(TFF)" in out
    fails(exercises.check_exercise_1_tuning, run_result(0.39, test=0.45), match="validation")


def test_exercise_1_tuning_names_the_engine_in_prose(capsys):
    exercises.check_exercise_1_tuning(run_result(0.42, engine="simulator"), baseline=0.39)
    assert "0.4200 (the simulator)" in verdict(capsys)


def test_the_split_baseline_of_the_check_is_the_measured_one():
    assert 0.3 < exercises.SPLIT_ALONE_VALIDATION_ACCURACY < exercises.TARGET_VALIDATION_ACCURACY


# --- Exercise 2 ----------------------------------------------------------------------------


def test_exercise_2_passes_reuse_in_training_and_a_disjoint_evaluation(capsys):
    exercises.check_exercise_2(
        ReconstructionModel.simple_dataset_split_fn, split(split_dataset=True)
    )
    out = verdict(capsys)
    assert out.startswith("✅ Correct: both splits are correct.")
    assert "reconstruction [0, 2, 4], scored [1, 3, 5]" in out
    assert "Note: " in out and "reshuffled" in out  # TFF's split relies on a fixed order
    note = " ".join(out[out.index("Note: ") :].split())
    assert "not your splits" in note and "reshuffle_each_pass=False" in note
    assert "fixed_order" not in out


def test_exercise_2_accepts_more_epochs_in_both(capsys):
    exercises.check_exercise_2(split(recon_epochs=2), split(recon_epochs=3, split_dataset=True))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_2_catches_an_evaluation_that_reuses_data():
    message = fails(
        exercises.check_exercise_2,
        ReconstructionModel.simple_dataset_split_fn,
        ReconstructionModel.simple_dataset_split_fn,
        match="leaks evaluation data",
    )
    assert "batches [0, 1, 2, 3, 4, 5] are in both" in message


def test_exercise_2_catches_a_training_split_that_does_not_reuse():
    fails(
        exercises.check_exercise_2,
        split(split_dataset=True),
        split(split_dataset=True),
        match="never sees batches",
    )


def test_exercise_2_catches_an_evaluation_without_scored_data():
    fails(
        exercises.check_exercise_2,
        ReconstructionModel.simple_dataset_split_fn,
        lambda d: (d, d.take(0)),
        match="scoring gets no data",
    )


def test_exercise_2_not_done_yet(capsys):
    exercises.check_exercise_2(ReconstructionModel.simple_dataset_split_fn, None)
    assert verdict(capsys).startswith("⏳ Not done yet")


# --- Exercise 3 ----------------------------------------------------------------------------


class Output(NamedTuple):
    predictions: tf.Tensor
    labels: tf.Tensor
    num_examples: tf.Tensor


class PlainMatrixFactorization(ReconstructionModel):
    """A right answer: the model in plain TensorFlow."""

    def __init__(self, num_items, num_latent_factors):
        self.items = tf.Variable(
            tf.random.uniform([num_items, num_latent_factors], -0.05, 0.05), name="items"
        )
        self.user = tf.Variable(
            tf.random.uniform([1, num_latent_factors], -0.05, 0.05), name="user"
        )

    @property
    def global_trainable_variables(self):
        return [self.items]

    @property
    def global_non_trainable_variables(self):
        return []

    @property
    def local_trainable_variables(self):
        return [self.user]

    @property
    def local_non_trainable_variables(self):
        return []

    @property
    def input_spec(self):
        return model.input_spec()

    def predict(self, x):
        item_vectors = tf.nn.embedding_lookup(self.items, tf.squeeze(x, axis=1))
        return tf.reduce_sum(item_vectors * self.user, axis=1, keepdims=True)

    @tf.function
    def forward_pass(self, batch_input, training=True):
        predictions = self.predict(batch_input["x"])
        return Output(predictions, batch_input["y"], tf.shape(predictions)[0])


class UserIsGlobal(PlainMatrixFactorization):
    @property
    def global_trainable_variables(self):
        return [self.items, self.user]

    @property
    def local_trainable_variables(self):
        return []


class ItemsAreLocal(PlainMatrixFactorization):
    @property
    def global_trainable_variables(self):
        return []

    @property
    def local_trainable_variables(self):
        return [self.items, self.user]


class FlatPredictions(PlainMatrixFactorization):
    def predict(self, x):
        return tf.squeeze(super().predict(x), axis=1)


class OtherPredictions(PlainMatrixFactorization):
    def predict(self, x):
        return super().predict(x) + 1.0


class CopiesTheItems(PlainMatrixFactorization):
    def predict(self, x):
        items = tf.stop_gradient(self.items)
        return tf.reduce_sum(
            tf.gather(items, tf.squeeze(x, axis=1)) * self.user, axis=1, keepdims=True
        )


class Unfinished(ReconstructionModel):
    pass


def test_exercise_3_passes_the_plain_tensorflow_model_and_it_trains(capsys):
    exercises.check_exercise_3(PlainMatrixFactorization)
    out = verdict(capsys)
    assert out.startswith("✅ Correct") and "build_fed_recon trains it" in out


@pytest.mark.parametrize(
    "wrong, match",
    [
        (UserIsGlobal, "user embedding .* is global"),
        (ItemsAreLocal, "item matrix .* is local"),
        (FlatPredictions, "shape \\(5,\\)"),
        (OtherPredictions, "predictions differ"),
        (CopiesTheItems, "gradient .* item matrix"),
        (model.UserEmbedding, "extends tff.learning.models.ReconstructionModel"),
    ],
)
def test_exercise_3_catches_wrong_models(wrong, match):
    fails(lambda answer: exercises.check_exercise_3(answer, train=False), wrong, match=match)


def test_exercise_3_not_done_lists_what_is_missing(capsys):
    exercises.check_exercise_3(Unfinished)
    out = verdict(capsys)
    assert out.startswith("⏳ Not done yet") and "forward_pass" in out
    exercises.check_exercise_3(None)
    assert verdict(capsys).startswith("⏳ Not done yet")


# --- Exercise 4 ----------------------------------------------------------------------------


def personal_cnn(
    num_classes,
    embedding_dim=8,
    *,
    embedding_global=False,
    cnn_local=False,
    softmax=False,
    embedding_early=False,
    unused_embedding=False,
):
    """A right answer, and wrong ones through the flags."""
    images = tf.keras.Input(shape=(28, 28, 1))
    conv = tf.keras.layers.Conv2D(4, 5, activation="relu")
    hidden = tf.keras.layers.Dense(8, activation="relu")
    features = tf.keras.layers.Flatten()(tf.keras.layers.MaxPool2D(4)(conv(images)))
    local = []
    if embedding_dim:
        user = model.UserEmbedding(embedding_dim)
        user_vector = user(images)
        local = [user]
        if embedding_early:
            features = tf.keras.layers.Concatenate()([features, user_vector])
            features = hidden(features)
        elif unused_embedding:
            features = hidden(features)
            features = tf.keras.layers.Concatenate()([features, user_vector * 0.0])
        else:
            features = tf.keras.layers.Concatenate()([hidden(features), user_vector])
    else:
        features = hidden(features)
        if embedding_early:  # keep the same network without the embedding
            pass
    last = tf.keras.layers.Dense(num_classes, activation="softmax" if softmax else None)
    keras_model = tf.keras.Model(images, last(features))
    global_layers = [conv, hidden, last]
    if embedding_global:
        global_layers, local = global_layers + local, []
    if cnn_local:
        global_layers, local = [hidden, last], local + [conv]
    return keras_model, global_layers, local


def builder(**flags):
    return lambda num_classes, embedding_dim: personal_cnn(num_classes, embedding_dim, **flags)


def test_exercise_4_passes_the_personal_cnn_and_it_trains(capsys):
    exercises.check_exercise_4(personal_cnn)
    out = verdict(capsys)
    assert out.startswith("✅ Correct") and "build_fed_recon trains it" in out


@pytest.mark.parametrize(
    "flags, match",
    [
        ({"embedding_global": True}, "among the global layers"),
        ({"cnn_local": True}, "local variables have shapes"),
        ({"softmax": True}, "outputs probabilities"),
        (
            {"embedding_early": True},
            "differ only in the input of\\s+the last Dense|not only through",
        ),
        ({"unused_embedding": True}, "does not change the predictions"),
    ],
)
def test_exercise_4_catches_wrong_models(flags, match):
    fails(
        lambda answer: exercises.check_exercise_4(answer, train=False),
        builder(**flags),
        match=match,
    )


def test_exercise_4_catches_variables_in_neither_list():
    def forgets_the_last_layer(num_classes, embedding_dim):
        keras_model, global_layers, local = personal_cnn(num_classes, embedding_dim)
        return keras_model, global_layers[:-1], local

    fails(
        lambda a: exercises.check_exercise_4(a, train=False),
        forgets_the_last_layer,
        match="exactly one of the two lists",
    )


def test_exercise_4_comparison_needs_both_methods(capsys):
    table = pd.DataFrame({"loss": [0.5, 0.9], "accuracy": [0.8, 0.7]}, index=["FedRecon", "FedAvg"])
    exercises.check_exercise_4_comparison(table)
    assert "the personal embedding adds 0.1000." in verdict(capsys)
    exercises.check_exercise_4_comparison(table.assign(accuracy=[0.139, 0.203]))
    out = " ".join(verdict(capsys).split())  # the verdict is wrapped
    assert "FedRecon's accuracy is 0.1390 and FedAvg's 0.2030" in out
    assert "costs 0.0640: FedAvg scores higher" in out
    fails(exercises.check_exercise_4_comparison, table.drop("FedAvg"), match="one row per method")
    exercises.check_exercise_4_comparison(None)
    assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_4_comparison_needs_the_same_examples_for_both(capsys):
    table = pd.DataFrame(
        {"accuracy": [0.6, 0.4], "num_examples": [200.0, 400.0]}, index=["FedRecon", "FedAvg"]
    )
    fails(exercises.check_exercise_4_comparison, table, match="different numbers of examples")
    exercises.check_exercise_4_comparison(table.assign(num_examples=[200.0, 200.0]))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_4_skeleton_is_not_done_yet(capsys):
    def skeleton(num_classes, embedding_dim):
        return None  # the notebook's skeleton, before the learner writes it

    exercises.check_exercise_4(skeleton)
    assert verdict(capsys).startswith("⏳ Not done yet")

    def only_personal(num_classes, embedding_dim):
        return personal_cnn(num_classes, embedding_dim) if embedding_dim else None

    fails(
        lambda a: exercises.check_exercise_4(a, train=False),
        only_personal,
        match="returns nothing for embedding_dim=0",
    )


# --- Exercise 1's runs -------------------------------------------------------------------------


def test_train_and_score_runs_an_exercise_configuration_on_tiny_data(tiny_movielens):
    ratings, movies = tiny_movielens
    run = config.FedReconRun(
        recon_epochs=2,
        recon_steps_max=3,
        batch_size=2,
        clients_per_round=4,
        num_rounds=2,
        num_latent_factors=3,
    )
    base = config.TutorialConfig("tiny", None, 300, run)
    source = types.SimpleNamespace(kind="synthetic")
    result = runs.train_and_score(run, source, ratings, movies, base=base, progress=False)
    assert list(result.history.index) == [1, 2]  # rounds are numbered from 1
    row = result.summary()
    assert row["recon_epochs"] == 2 and 0 <= row["test_accuracy"] <= 1 and row["minutes"] > 0
    assert (result.config_name, result.data_kind, result.engine) == ("tiny", "synthetic", "TFF")
    again = runs.train_and_score(run, source, ratings, movies, base=base, progress=False)
    assert again.test == result.test  # seeded: a run repeats exactly
