"""The exercise checks pass right answers and catch wrong ones, in plain words.

The tools they share are tested in test_feedback.py, exercise 4's EMNIST in test_emnist.py.
"""

import dataclasses
import re
import types
from typing import NamedTuple

import pandas as pd
import pytest
import tensorflow as tf

tff = pytest.importorskip("tensorflow_federated")

from tutorial_utils import config, model  # noqa: E402
from tutorial_utils.exercises import checks, emnist, feedback, model_checks, recorded  # noqa: E402
from tutorial_utils.simulation import runs  # noqa: E402

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
    fails(checks.check_exercise_1, answer, match="dataset_split_fn|datasets|raised")


# --- Exercise 1 ----------------------------------------------------------------------------


def test_exercise_1_passes_the_right_split(capsys):
    checks.check_exercise_1(split(3, 50, 1, 50, split_dataset=True))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_1_not_done_yet(capsys):
    checks.check_exercise_1(None)
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
    fails(checks.check_exercise_1, wrong, match=match)


def test_exercise_1_catches_a_cap_applied_to_each_epoch():
    def per_epoch_cap(dataset):
        recon = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, e: e)
        post = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, e: e)
        return recon.take(50).repeat(3), post.take(50)

    message = fails(checks.check_exercise_1, per_epoch_cap, match="ran 150 steps")
    assert "after the 3 passes" in message


def test_exercise_1_catches_data_left_unused():
    def drops_a_batch(dataset):
        recon = dataset.skip(1).enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, e: e)
        post = dataset.skip(1).enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, e: e)
        return recon.repeat(3).take(50), post.take(50)

    fails(checks.check_exercise_1, drops_a_batch, match=r"batches \[0\] are used neither")


def run_result(
    validation, test=None, kind="movielens", name="full", engine="simulator", seed=0, run=None
):
    def metrics(accuracy):
        loss = float("nan") if accuracy == 0 else 1.0  # a diverged run: NaN loss, accuracy 0
        return {"loss": loss, "rating_accuracy": accuracy}

    test = validation if test is None else test
    return runs.RunResult(
        run or config.SPLIT_ALONE,
        name,
        kind,
        metrics(validation),
        metrics(test),
        pd.DataFrame(),
        1.0,
        engine,
        seed,
    )


def seeded(*validations, **options):
    """One result per validation accuracy, with seeds 0, 1, 2, ..."""
    return [run_result(v, seed=seed, **options) for seed, v in enumerate(validations)]


def test_exercise_1_tuning_judges_the_mean_over_three_seeds(capsys):
    checks.check_exercise_1_tuning(seeded(0.42, 0.41, 0.43))
    out = " ".join(verdict(capsys).split())
    assert out.startswith("✅ Correct") and "mean validation rating accuracy 0.4200" in out
    assert "seeds [0, 1, 2]" in out and "the simulator" in out
    # A mean below the goal fails even with one lucky seed above it.
    fails(
        checks.check_exercise_1_tuning,
        seeded(0.415, 0.40, 0.395),
        match=r"mean validation rating accuracy .* is 0\.4033.*the goal is 0\.41",
    )


def test_exercise_1_tuning_needs_three_different_seeds_of_one_configuration():
    fails(checks.check_exercise_1_tuning, run_result(0.45), match="1 different seed")
    same_seed = [run_result(0.45, seed=3) for _ in range(3)]
    fails(checks.check_exercise_1_tuning, same_seed, match="at least 3 different seeds")
    other = dataclasses.replace(config.SPLIT_ALONE, num_rounds=7)
    mixed = seeded(0.45, 0.45) + [run_result(0.45, seed=2, run=other)]
    fails(checks.check_exercise_1_tuning, mixed, match="different configurations")


def test_exercise_1_tuning_fails_a_configuration_that_diverges_for_a_seed():
    fails(
        checks.check_exercise_1_tuning,
        seeded(0.45, 0.0, 0.45),
        match=r"diverged with seed\(s\) \[1\].*lower the rate",
    )


def test_exercise_1_tuning_is_judged_on_real_data_in_the_full_configuration(capsys):
    checks.check_exercise_1_tuning(seeded(0.1, 0.1, 0.1, kind="synthetic", name="smoke"))
    assert verdict(capsys).startswith("ℹ️ Not judged")
    for missing in (None, [], [None, None, None]):
        checks.check_exercise_1_tuning(missing)
        assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_1_tuning_decides_on_validation_and_only_reports_test(capsys):
    checks.check_exercise_1_tuning([run_result(0.42, test=0.35, seed=s) for s in range(3)])
    out = " ".join(verdict(capsys).split())
    assert out.startswith("✅ Correct") and "reported only: 0.3500, 0.3500, 0.3500" in out
    fails(
        checks.check_exercise_1_tuning,
        [run_result(0.39, test=0.45, seed=s) for s in range(3)],
        match="validation",
    )


def test_exercise_1_tuning_compares_with_the_split_alone_of_the_same_engine(capsys):
    checks.check_exercise_1_tuning(seeded(0.42, 0.42, 0.42, engine="TFF"))
    out = " ".join(verdict(capsys).split())
    assert "trained by TFF" in out and "in TFF's one recorded run" in out
    checks.check_exercise_1_tuning(seeded(0.42, 0.42, 0.42))
    out = " ".join(verdict(capsys).split())
    assert f"over {recorded.SPLIT_ALONE_SIMULATED['seeds']} seeds" in out


def test_the_pass_mark_is_clear_of_the_split_alones_spread():
    spread = recorded.SPLIT_ALONE_SIMULATED
    assert spread["min"] <= spread["mean"] <= spread["max"] < checks.TARGET_VALIDATION_ACCURACY
    assert recorded.SPLIT_ALONE_VALIDATION_ACCURACY < checks.TARGET_VALIDATION_ACCURACY
    assert checks.MIN_SEEDS >= 3


# --- Exercise 2 ----------------------------------------------------------------------------


def test_exercise_2_passes_reuse_in_training_and_a_disjoint_evaluation(capsys):
    checks.check_exercise_2(ReconstructionModel.simple_dataset_split_fn, split(split_dataset=True))
    out = verdict(capsys)
    assert out.startswith("✅ Correct: both splits are correct.")
    assert "reconstruction [0, 2, 4], scored [1, 3, 5]" in out
    assert "Note: " in out and "reshuffled" in out  # TFF's split relies on a fixed order
    note = " ".join(out[out.index("Note: ") :].split())
    assert "not your splits" in note and "reshuffle_each_pass=False" in note
    assert "fixed_order" not in out


def test_exercise_2_accepts_more_epochs_in_both(capsys):
    checks.check_exercise_2(split(recon_epochs=2), split(recon_epochs=3, split_dataset=True))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_2_catches_an_evaluation_that_reuses_data():
    message = fails(
        checks.check_exercise_2,
        ReconstructionModel.simple_dataset_split_fn,
        ReconstructionModel.simple_dataset_split_fn,
        match="leaks evaluation data",
    )
    assert "batches [0, 1, 2, 3, 4, 5] are in both" in message


def test_exercise_2_catches_a_training_split_that_does_not_reuse():
    fails(
        checks.check_exercise_2,
        split(split_dataset=True),
        split(split_dataset=True),
        match="never sees batches",
    )


def test_exercise_2_catches_an_evaluation_without_scored_data():
    fails(
        checks.check_exercise_2,
        ReconstructionModel.simple_dataset_split_fn,
        lambda d: (d, d.take(0)),
        match="scoring gets no data",
    )


def test_exercise_2_not_done_yet(capsys):
    checks.check_exercise_2(ReconstructionModel.simple_dataset_split_fn, None)
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
    checks.check_exercise_3(PlainMatrixFactorization)
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
    fails(lambda answer: checks.check_exercise_3(answer, train=False), wrong, match=match)


def test_exercise_3_not_done_lists_what_is_missing(capsys):
    checks.check_exercise_3(Unfinished)
    out = verdict(capsys)
    assert out.startswith("⏳ Not done yet") and "forward_pass" in out
    checks.check_exercise_3(None)
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
    checks.check_exercise_4(personal_cnn)
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
        lambda answer: checks.check_exercise_4(answer, train=False),
        builder(**flags),
        match=match,
    )


def test_exercise_4_catches_variables_in_neither_list():
    def forgets_the_last_layer(num_classes, embedding_dim):
        keras_model, global_layers, local = personal_cnn(num_classes, embedding_dim)
        return keras_model, global_layers[:-1], local

    fails(
        lambda a: checks.check_exercise_4(a, train=False),
        forgets_the_last_layer,
        match="exactly one of the two lists",
    )


def test_exercise_4_comparison_needs_both_methods(capsys):
    table = pd.DataFrame({"loss": [0.5, 0.9], "accuracy": [0.8, 0.7]}, index=["FedRecon", "FedAvg"])
    checks.check_exercise_4_comparison(table)
    assert "FedRecon scores 0.1000 higher in this run." in " ".join(verdict(capsys).split())
    checks.check_exercise_4_comparison(table.assign(accuracy=[0.139, 0.203]))
    out = " ".join(verdict(capsys).split())  # the verdict is wrapped
    assert "FedRecon's accuracy is 0.1390 and FedAvg's 0.2030" in out
    assert "FedAvg scores 0.0640 higher in this run" in out
    fails(checks.check_exercise_4_comparison, table.drop("FedAvg"), match="one row per method")
    checks.check_exercise_4_comparison(None)
    assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_4_comparison_needs_the_same_examples_for_both(capsys):
    table = pd.DataFrame(
        {"accuracy": [0.6, 0.4], "num_examples": [200.0, 400.0]}, index=["FedRecon", "FedAvg"]
    )
    fails(checks.check_exercise_4_comparison, table, match="different numbers of examples")
    checks.check_exercise_4_comparison(table.assign(num_examples=[200.0, 200.0]))
    assert verdict(capsys).startswith("✅ Correct")


def test_exercise_4_skeleton_is_not_done_yet(capsys):
    def skeleton(num_classes, embedding_dim):
        return None  # the notebook's skeleton, before the learner writes it

    checks.check_exercise_4(skeleton)
    assert verdict(capsys).startswith("⏳ Not done yet")

    def only_personal(num_classes, embedding_dim):
        return personal_cnn(num_classes, embedding_dim) if embedding_dim else None

    fails(
        lambda a: checks.check_exercise_4(a, train=False),
        only_personal,
        match="returns nothing for embedding_dim=0",
    )


# --- Exercise 1's runs -------------------------------------------------------------------------


def test_train_and_score_runs_an_exercise_configuration_on_tiny_data(tiny):
    ratings, movies, run, base = tiny
    run = dataclasses.replace(run, num_rounds=2)
    source = types.SimpleNamespace(kind="synthetic")
    result = runs.train_and_score(
        run, runs.MovieLensData(source, ratings, movies), base=base, progress=False
    )
    assert list(result.history.index) == [1, 2]  # rounds are numbered from 1
    row = result.summary()
    assert row["recon_epochs"] == 2 and 0 <= row["test_accuracy"] <= 1 and row["minutes"] > 0
    assert (result.config_name, result.data_kind, result.engine) == ("tiny", "synthetic", "TFF")
    again = runs.train_and_score(
        run, runs.MovieLensData(source, ratings, movies), base=base, progress=False
    )
    assert again.test == result.test  # seeded: a run repeats exactly


# --- Exercise 4: the TFF calls -------------------------------------------------------------

EMNIST_RUN = config.EXERCISES_FULL.emnist_run
DIM = 4
sgd = tff.learning.optimizers.build_sgdm


def reconstruction_model(embedding_dim, build=personal_cnn):
    keras_model, global_layers, local_layers = build(10, embedding_dim)
    return ReconstructionModel.from_keras_model_and_layers(
        keras_model,
        global_layers=global_layers,
        local_layers=local_layers,
        input_spec=emnist.emnist_input_spec(),
    )


def fed_avg_model(embedding_dim=0, metrics=True):
    keras_model, _, _ = personal_cnn(10, embedding_dim)
    return tff.learning.models.from_keras_model(
        keras_model,
        loss=emnist.emnist_loss_fn(),
        input_spec=emnist.emnist_input_spec(),
        metrics=emnist.emnist_metrics_fn() if metrics else None,
    )


def fed_recon_process(model_fn=lambda: reconstruction_model(DIM), server_lr=None):
    return tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=emnist.emnist_loss_fn,
        metrics_fn=emnist.emnist_metrics_fn,
        server_optimizer_fn=sgd(server_lr or EMNIST_RUN.server_lr),
        client_optimizer_fn=sgd(EMNIST_RUN.client_lr),
        reconstruction_optimizer_fn=sgd(EMNIST_RUN.reconstruction_lr),
    )


def fed_avg_process(client_lr=None):
    return tff.learning.algorithms.build_weighted_fed_avg(
        fed_avg_model,
        client_optimizer_fn=sgd(client_lr or EMNIST_RUN.client_lr),
        server_optimizer_fn=sgd(EMNIST_RUN.server_lr),
    )


def evaluation_process(embedding_dim):
    return tff.learning.algorithms.build_fed_recon_eval(
        lambda: reconstruction_model(embedding_dim),
        loss_fn=emnist.emnist_loss_fn,
        metrics_fn=emnist.emnist_metrics_fn,
        reconstruction_optimizer_fn=sgd(EMNIST_RUN.reconstruction_lr),
    )


def test_exercise_4_models_pass_the_right_calls_and_catch_wrong_ones(capsys):
    model_checks.check_exercise_4_models(lambda: reconstruction_model(DIM), fed_avg_model, DIM)
    assert verdict(capsys).startswith("✅ Correct")
    check = model_checks.check_exercise_4_models
    fails(check, lambda: fed_avg_model(DIM), fed_avg_model, DIM, match="not a ReconstructionModel")
    fails(
        check,
        lambda: reconstruction_model(DIM, build=builder(embedding_global=True)),
        fed_avg_model,
        DIM,
        match="local variables have shapes",
    )
    fails(
        check,
        lambda: reconstruction_model(DIM),
        lambda: reconstruction_model(0),
        DIM,
        match="plain tff.learning model",
    )
    fails(
        check,
        lambda: reconstruction_model(DIM),
        lambda: fed_avg_model(DIM),
        DIM,
        match="nobody's own",
    )
    fails(
        check,
        lambda: reconstruction_model(DIM),
        lambda: fed_avg_model(metrics=False),
        DIM,
        match="not 'accuracy'",
    )
    check(lambda: None, fed_avg_model, DIM)
    assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_4_processes_pass_the_right_calls_and_catch_wrong_ones(capsys):
    check = model_checks.check_exercise_4_processes
    right_recon, right_avg = fed_recon_process(), fed_avg_process()
    check(right_recon, right_avg, EMNIST_RUN, DIM)
    out = " ".join(verdict(capsys).split())
    assert out.startswith("✅ Correct") and "user embedding stays on the devices" in out
    fails(check, right_avg, right_avg, EMNIST_RUN, DIM, match="built with build_weighted_fed_avg")
    fails(check, right_recon, right_recon, EMNIST_RUN, DIM, match="not built with build_weighted")
    fails(
        check,
        fed_recon_process(lambda: reconstruction_model(0)),
        right_avg,
        EMNIST_RUN,
        DIM,
        match="exactly the same weights",
    )
    fails(
        check,
        fed_recon_process(server_lr=2 * EMNIST_RUN.server_lr),
        right_avg,
        EMNIST_RUN,
        DIM,
        match="server learning rate is 2",
    )
    fails(
        check,
        right_recon,
        fed_avg_process(client_lr=1.0),
        EMNIST_RUN,
        DIM,
        match="client learning rate is 1",
    )
    fails(check, evaluation_process(DIM), right_avg, EMNIST_RUN, DIM, match="evaluates instead")
    fails(check, "fed_recon", right_avg, EMNIST_RUN, DIM, match="not a TFF learning process")
    check(None, right_avg, EMNIST_RUN, DIM)
    assert verdict(capsys).startswith("⏳ Not done yet")


def test_exercise_4_evaluation_passes_a_disjoint_split_and_catches_others(capsys):
    check = model_checks.check_exercise_4_evaluation
    recon_epochs = EMNIST_RUN.recon_epochs
    disjoint = split(recon_epochs=recon_epochs, split_dataset=True)
    check(evaluation_process, disjoint, EMNIST_RUN)
    assert verdict(capsys).startswith("✅ Correct")
    fails(
        check,
        evaluation_process,
        split(recon_epochs=recon_epochs),
        EMNIST_RUN,
        match="split_dataset=True",
    )
    fails(
        check,
        evaluation_process,
        split(split_dataset=True),
        EMNIST_RUN,
        match=f"makes 1 passes .* reconstructs in {recon_epochs}",
    )
    fails(
        check,
        lambda dim: fed_recon_process(lambda: reconstruction_model(dim)),
        disjoint,
        EMNIST_RUN,
        match="trains, not one that evaluates",
    )
    check(lambda dim: None, disjoint, EMNIST_RUN)
    assert verdict(capsys).startswith("⏳ Not done yet")
