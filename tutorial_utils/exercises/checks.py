"""The checks of notebook 04: each tells a learner whether an exercise's answer is right.

Every ``check_exercise_*`` function takes the learner's answer and ends in a verdict of
:mod:`tutorial_utils.exercises.feedback` (``✅ Correct``, ``⏳ Not done yet``, or
``feedback.AnswerIncorrect``, which says in plain words what is wrong and why it matters).
They test what an answer *does*: a ``dataset_split_fn`` is run on a client whose batches
are numbered, a model is compared with the Keras model
(:mod:`tutorial_utils.exercises.model_checks`, which also checks exercise 4's TFF calls).
A notebook calls them all through the package: ``exercises.check_exercise_1(...)``.
"""

from __future__ import annotations

import collections
import functools
import inspect

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, model
from tutorial_utils.exercises import emnist, feedback, model_checks, recorded
from tutorial_utils.exercises.feedback import AnswerIncorrect, first_pass, short, trace_split
from tutorial_utils.simulation.runs import RunResult

# --------------------------------------------------------------------------------------
# Exercise 1: control the steps with dataset_split_fn, then tune
# --------------------------------------------------------------------------------------

# The goal of the tuning: a mean validation rating accuracy over at least MIN_SEEDS seeds,
# above every seed of the split alone and below every seed of the tuned run that did not
# diverge (results/exercise1_seeds.csv, tests/test_recorded.py).
TARGET_VALIDATION_ACCURACY = 0.41
MIN_SEEDS = 3


def check_exercise_1(split_fn) -> None:
    """Checks exercise 1: 3 reconstruction epochs capped at 50 steps, 1 post-reconstruction
    epoch capped at 50 steps, on disjoint halves of each client's data."""
    if split_fn is None:
        feedback.not_done("set split_fn to your dataset_split_fn, then run this check again.")
        return
    recon, post = feedback.disjoint_trace(
        split_fn,
        7,
        (
            "on a client with 7 batches, reconstruction and post-reconstruction share batches "
            "{shared}. Keep the halves disjoint (split_dataset=True), as the default split "
            "does: then the same function can also serve evaluation, which must score a "
            "user on ratings that were not used to reconstruct their embedding."
        ),
    )
    unused = sorted(set(range(7)) - set(recon) - set(post))
    if unused:
        raise AnswerIncorrect(
            f"on a client with 7 batches, batches {unused} are used neither for "
            "reconstruction nor after it: split the client's data into two halves and use both."
        )
    recon_pass, post_pass = first_pass(recon), first_pass(post)
    if recon != recon_pass * 3:
        raise AnswerIncorrect(
            f"on a client with 7 batches, reconstruction ran {len(recon)} steps over its "
            f"{len(recon_pass)} batches: {short(recon)}, that is "
            f"{len(recon) / max(len(recon_pass), 1):g} passes. The exercise asks for 3 passes "
            "(recon_epochs=3)."
        )
    if post != post_pass:
        raise AnswerIncorrect(
            f"on a client with 7 batches, post-reconstruction training ran {len(post)} steps "
            f"over its {len(post_pass)} batches: {short(post)}, that is "
            f"{len(post) / max(len(post_pass), 1):g} passes. The exercise asks for 1 pass "
            "(post_recon_epochs=1)."
        )
    big_recon, big_post = trace_split(split_fn, feedback.numbered_batches(200))
    if len(big_recon) != 50:
        raise AnswerIncorrect(
            f"on a client with 200 batches, reconstruction ran {len(big_recon)} steps; the "
            "exercise caps it at 50 steps in all (recon_steps_max=50, applied after the 3 passes)."
        )
    if len(big_post) != 50:
        raise AnswerIncorrect(
            f"on a client with 200 batches, post-reconstruction training ran {len(big_post)} "
            "steps; the exercise caps it at 50 (post_recon_steps_max=50)."
        )
    feedback.correct(
        f"on a client with 7 batches, reconstruction makes 3 passes over its half, "
        f"{short(recon)}, and post-reconstruction training 1 pass over the other half, "
        f"{post}. On a client with 200 batches both stop at 50 steps."
    )


def check_exercise_1_tuning(results) -> None:
    """Checks exercise 1's tuning on the **validation** users: on real MovieLens 1M in the
    full configuration, one configuration trained with at least :data:`MIN_SEEDS` seeds
    (a list of ``runs.train_and_score`` results) must reach a mean validation rating
    accuracy of :data:`TARGET_VALIDATION_ACCURACY`, with no seed diverged. The test
    accuracy is reported, never judged: it is looked at once, for the configuration chosen."""
    if isinstance(results, RunResult):
        results = [results]
    if not results or any(result is None for result in results):
        feedback.not_done(
            "set tuned_run and run the cell that trains it with every seed, then this check."
        )
        return
    first, accuracies = results[0], [r.validation["rating_accuracy"] for r in results]
    listing, mean = ", ".join(f"{a:.4f}" for a in accuracies), float(np.mean(accuracies))
    if first.data_kind != "movielens" or first.config_name != "full":
        feedback.not_judged(
            f"these runs used {first.data_kind} data in the {first.config_name} configuration "
            f"(validation rating accuracy {listing}). The goal, a mean of "
            f"{TARGET_VALIDATION_ACCURACY:.2f} over {MIN_SEEDS} seeds, is for real MovieLens "
            "1M in the full configuration."
        )
        return
    if len({result.run for result in results}) > 1:
        raise AnswerIncorrect(
            "these results come from different configurations. Train one configuration "
            "with several seeds: the check judges a configuration, not the luckiest run."
        )
    seeds = [result.seed for result in results]
    if len(set(seeds)) < MIN_SEEDS:
        raise AnswerIncorrect(
            f"{len(set(seeds))} different seed(s) ({seeds}). The seed alone moves the split "
            f"alone's validation accuracy from {recorded.split_alone_spread()}: one run says "
            f"little. Train your configuration with at least {MIN_SEEDS} different seeds."
        )
    diverged = [r.seed for r in results if not np.isfinite(r.validation["loss"])]
    if diverged:
        raise AnswerIncorrect(
            f"training diverged with seed(s) {diverged}: the loss became infinite or NaN and "
            "the accuracy is 0. A configuration that works only for lucky seeds is not "
            "tuned yet: lower the rate you raised last (hint 3)."
        )
    tests = ", ".join(f"{r.test['rating_accuracy']:.4f}" for r in results)
    if mean < TARGET_VALIDATION_ACCURACY:
        raise AnswerIncorrect(
            f"the mean validation rating accuracy over seeds {seeds} is {mean:.4f} "
            f"({listing}); the goal is {TARGET_VALIDATION_ACCURACY:.2f}. The split alone "
            f"scores {recorded.split_alone_spread(first.engine)}. The hints below this check say "
            "which settings help most."
        )
    trained_by = "the simulator" if first.engine == "simulator" else first.engine
    feedback.correct(
        f"mean validation rating accuracy {mean:.4f} over seeds {seeds} ({listing}, "
        f"trained by {trained_by}), against a goal of {TARGET_VALIDATION_ACCURACY:.2f}; the "
        f"split alone scores {recorded.split_alone_spread(first.engine)}. Test rating accuracy, "
        f"reported only: {tests}."
    )


# --------------------------------------------------------------------------------------
# Exercise 2: reuse data in training only
# --------------------------------------------------------------------------------------


def check_exercise_2(train_split_fn, eval_split_fn) -> None:
    """Checks exercise 2: training reuses every batch for both stages; evaluation keeps
    reconstruction and scoring disjoint."""
    if train_split_fn is None or eval_split_fn is None:
        feedback.not_done("set both train_split_fn and eval_split_fn, then run this check again.")
        return
    everything = list(range(6))
    train_recon, train_post = trace_split(train_split_fn, feedback.numbered_batches(6))
    for stage, steps in (
        ("reconstruction", train_recon),
        ("post-reconstruction training", train_post),
    ):
        missing = sorted(set(everything) - set(steps))
        if missing:
            raise AnswerIncorrect(
                f"in training, on a client with 6 batches, {stage} never sees batches "
                f"{missing} (reconstruction: {train_recon}, post-reconstruction: {train_post}). "
                "The exercise asks training to reuse all of a client's data for both stages, "
                "which helps clients that have little data."
            )
    eval_recon, eval_scored = feedback.disjoint_trace(
        eval_split_fn,
        6,
        (
            "in evaluation, on a client with 6 batches, reconstruction uses {recon} and "
            "the score is computed on {post}: batches {shared} are in both. That leaks "
            "evaluation data: the user embedding is fitted to the very ratings it is then "
            "scored on, so the accuracy looks better than a new user would see. Keep the two "
            "parts disjoint, e.g. build_dataset_split_fn(split_dataset=True)."
        ),
    )
    if not eval_recon or not eval_scored:
        empty = "reconstruction" if not eval_recon else "scoring"
        raise AnswerIncorrect(
            f"in evaluation, {empty} gets no data on a client with 6 batches "
            f"(reconstruction: {eval_recon}, scored: {eval_scored})."
        )
    feedback.correct(
        "both splits are correct. On a client with 6 batches,\n"
        f"training reuses the data: reconstruction {train_recon}, "
        f"post-reconstruction {train_post};\n"
        f"evaluation keeps it disjoint: reconstruction {eval_recon}, scored {eval_scored}."
    )
    recon, scored = trace_split(eval_split_fn, feedback.numbered_batches(20, reshuffle=True))
    reused, total = clients.shared_ratings(recon, scored)
    if reused:
        feedback.note(
            "this concerns the tutorial's pipelines, not your splits. A client dataset that "
            "is reshuffled on every pass (the tutorial's training clients are) is read once "
            "for each part, in two different orders: on such a client with 20 batches, "
            f"{reused} of the {total} batches your eval_split_fn scores were also used for "
            "reconstruction. The parts are disjoint only when every pass yields the same "
            "order, which is why evaluation reads each user's data with "
            "create_tf_datasets(ids, reshuffle_each_pass=False)."
        )


# --------------------------------------------------------------------------------------
# Exercise 3: matrix factorization as a ReconstructionModel in plain TensorFlow
# --------------------------------------------------------------------------------------


def check_exercise_3(model_class, *, train: bool = True) -> None:
    """Checks exercise 3: a ``ReconstructionModel`` subclass, built as
    ``model_class(num_items, num_latent_factors)``, that matches the Keras model.

    With the same weights it must give the same predictions, labels, loss, rating accuracy
    and gradients as ``model.build_reconstruction_model``, with the item matrix global and
    the user embedding local; with ``train``, TFF must train it for a few rounds.
    """
    import tensorflow_federated as tff

    base_class = tff.learning.models.ReconstructionModel
    if model_class is None:
        feedback.not_done("write the class, then run this check again.")
        return
    if not (inspect.isclass(model_class) and issubclass(model_class, base_class)):
        raise AnswerIncorrect(
            "the answer should be a class that extends tff.learning.models.ReconstructionModel "
            f"(got {model_class!r}); TFF's FedRecon builders only accept such models."
        )
    if inspect.isabstract(model_class):
        missing = ", ".join(sorted(model_class.__abstractmethods__))
        feedback.not_done(f"these members are still to write: {missing}.")
        return
    num_items, k = 7, 3
    try:
        custom = model_class(num_items, k)
    except Exception as error:
        raise AnswerIncorrect(
            f"{model_class.__name__}({num_items}, {k}) raised {type(error).__name__}: {error}. "
            "The constructor takes num_items and num_latent_factors."
        ) from error
    reference = model.build_reconstruction_model(num_items, k)

    # 1. The partition of the variables.
    expected = {kind: model_checks.shapes(reference, kind) for kind in model_checks.VARIABLE_LISTS}
    found = {kind: model_checks.shapes(custom, kind) for kind in model_checks.VARIABLE_LISTS}
    if found != expected:
        item, user = (num_items, k), (1, k)
        global_shapes = (
            found["global_trainable_variables"] + found["global_non_trainable_variables"]
        )
        local_shapes = found["local_trainable_variables"] + found["local_non_trainable_variables"]
        if user in global_shapes:
            why = (
                f"the user embedding (shape {user}) is global. Global variables are sent "
                "to the server and averaged: a user's taste would leave the device, and "
                "averaging everyone's embeddings gives nobody a personal one."
            )
        elif item in local_shapes:
            why = (
                f"the item matrix (shape {item}) is local. Local variables never reach the "
                "server, so no user would learn from anyone else's ratings."
            )
        else:
            why = "the variables are not sorted as the Keras model's are."
        listing = "; ".join(f"{kind}: {found[kind]}" for kind in model_checks.VARIABLE_LISTS)
        raise AnswerIncorrect(
            f"with num_items={num_items} and num_latent_factors={k}, {why} Expected the item "
            f"matrix {item} as the only global trainable variable and the user embedding "
            f"{user} as the only local trainable one; found {listing}."
        )
    for kind in model_checks.VARIABLE_LISTS:
        for variable in getattr(custom, kind):
            if not isinstance(variable, tf.Variable):
                raise AnswerIncorrect(
                    f"{kind} holds a {type(variable).__name__}, not a tf.Variable: TFF assigns "
                    "the server's weights to these variables and trains them."
                )
    if not model_checks.same_spec(custom.input_spec, reference.input_spec):
        raise AnswerIncorrect(
            f"input_spec is {custom.input_spec}; a client's batches are "
            f"{reference.input_spec}, movie ids x (int64) and ratings y (float32), both [None, 1]."
        )

    # 2. Same weights: same predictions, loss, metrics, gradients.
    rng = np.random.default_rng(0)
    items = rng.normal(size=(num_items, k)).astype(np.float32)
    user = rng.normal(size=(1, k)).astype(np.float32)
    for m in (custom, reference):
        m.global_trainable_variables[0].assign(items)
        m.local_trainable_variables[0].assign(user)
    batch = collections.OrderedDict(
        x=tf.constant([[0], [3], [6], [2], [5]], tf.int64),
        y=tf.constant([[1.0], [4.0], [5.0], [3.0], [2.0]], tf.float32),
    )
    try:
        got = model_checks.outputs(custom, batch)
    except Exception as error:
        raise AnswerIncorrect(
            f"forward_pass on a batch of 5 ratings raised {type(error).__name__}: {error}. It "
            "returns an object with fields predictions, labels and num_examples."
        ) from error
    model_checks.compare_outputs(got, model_checks.outputs(reference, batch))

    # 3. It trains under build_fed_recon.
    if train:
        history, changed = model_checks.train_briefly(
            functools.partial(model_class, num_items, k), num_items
        )
        if not np.isfinite(history.to_numpy()).all():
            raise AnswerIncorrect(
                f"under build_fed_recon the training metrics are not finite:\n{history}"
            )
        if not changed:
            raise AnswerIncorrect(
                "under build_fed_recon the item matrix did not change in 3 rounds: the "
                "gradient does not reach the global variable (is forward_pass reading a copy "
                "of it instead of the variable itself?)."
            )
        first, last = history["loss"].iloc[0], history["loss"].iloc[-1]
        trained = f" build_fed_recon trains it (3 rounds, loss {first:.3f} -> {last:.3f})."
    else:
        trained = ""
    feedback.correct(
        "the item matrix is global and the user embedding local; with the same weights the "
        "predictions, labels, loss, rating accuracy and gradients equal the Keras model's."
        + trained
    )


# --------------------------------------------------------------------------------------
# Exercise 4: EMNIST with a personal user embedding
# --------------------------------------------------------------------------------------


def check_exercise_4(build_fn, *, train: bool = True) -> None:
    """Checks exercise 4's model builder, ``build_fn(num_classes, embedding_dim)``.

    With ``embedding_dim > 0``: a CNN whose features are concatenated with a local user
    embedding of shape ``[1, embedding_dim]`` just before the last Dense layer, which
    outputs logits; everything else global. With ``embedding_dim=0``: the same network
    without the embedding (what plain FedAvg trains). With ``train``, FedRecon must train
    the personal model on TFF's synthetic EMNIST.
    """
    num_classes, dim = 10, 4
    personal = None if build_fn is None else model_checks.build_parts(build_fn, num_classes, dim)
    if personal is None:
        feedback.not_done("write build_fn, then run this check again.")
        return
    plain = model_checks.build_parts(build_fn, num_classes, 0)
    if plain is None:
        raise AnswerIncorrect(
            "build_fn returns nothing for embedding_dim=0; it should return the same network "
            "without the embedding (the one plain FedAvg trains)."
        )
    images = tf.random.stateless_uniform([3, *emnist.IMAGE_SHAPE], seed=[1, 2])
    for parts, name in ((personal, "with a user embedding"), (plain, "with embedding_dim=0")):
        try:
            outputs = parts[0](images)
        except Exception as error:
            raise AnswerIncorrect(
                f"the network {name} cannot take a batch of [28, 28, 1] images: "
                f"{type(error).__name__}: {error}"
            ) from error
        if tuple(outputs.shape) != (3, num_classes):
            raise AnswerIncorrect(
                f"for 3 images the network {name} outputs shape {tuple(outputs.shape)}; "
                f"expected (3, {num_classes}), one score per class."
            )
        values = outputs.numpy()
        if (values >= 0).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-4):
            raise AnswerIncorrect(
                f"the network {name} outputs probabilities (its last layer applies softmax). "
                "Leave the last Dense layer linear: the loss, emnist.emnist_loss_fn(), expects "
                "logits."
            )
    try:
        personal_model = emnist.personal_reconstruction_model(personal)
        plain_model = emnist.personal_reconstruction_model(plain)
    except ValueError as error:
        raise AnswerIncorrect(
            "TFF refuses the split into global and local layers: every variable of the network "
            f"must be in exactly one of the two lists. TFF says: {error}"
        ) from error
    local = model_checks.local_shapes(personal_model)
    global_shapes = model_checks.global_shapes(personal_model)
    if local != [(1, dim)]:
        if not local and (1, dim) in global_shapes:
            raise AnswerIncorrect(
                f"the user embedding (shape {(1, dim)}) is among the global layers. Global "
                "variables are sent to the server and averaged over writers, so nothing "
                "would be personal. Put the embedding layer, and only it, in local_layers."
            )
        raise AnswerIncorrect(
            f"the local variables have shapes {local}; expected only the user embedding, "
            f"{(1, dim)}. Local variables are never shared: CNN layers among them would be "
            "rebuilt from scratch on every client in every round, and learn from nobody else."
        )
    plain_local = model_checks.local_shapes(plain_model)
    if plain_local:
        raise AnswerIncorrect(
            f"with embedding_dim=0 the network still has local variables {plain_local}; "
            "it should be fully global, the network plain FedAvg trains."
        )
    plain_global = model_checks.global_shapes(plain_model)
    differences = [(a, b) for a, b in zip(global_shapes, plain_global) if a != b]
    features = None
    if len(global_shapes) == len(plain_global) and len(differences) == 1:
        (with_embedding, without) = differences[0]
        if (
            len(with_embedding) == 2
            and with_embedding[1] == num_classes
            and with_embedding[0] == without[0] + dim
        ):
            features = without[0]
    if features is None:
        raise AnswerIncorrect(
            "the networks with and without the embedding should differ only in the input of "
            f"the last Dense layer (features, plus {dim} inputs for the embedding). Global "
            f"shapes with the embedding: {global_shapes}; without: {plain_global}."
        )
    model_checks.check_embedding_feeds_last_layer(personal_model, personal, images, features, dim)
    trained = ""
    if train:
        history = model_checks.train_emnist_briefly(build_fn)
        if not np.isfinite(history.to_numpy()).all():
            raise AnswerIncorrect(
                f"under build_fed_recon the training metrics are not finite:\n{history}"
            )
        trained = (
            f" build_fed_recon trains it on TFF's synthetic EMNIST (2 rounds, loss "
            f"{history['loss'].iloc[0]:.3f} -> {history['loss'].iloc[-1]:.3f})."
        )
    feedback.correct(
        f"a user embedding of shape (1, {dim}) is the only local variable, and it is "
        f"concatenated to the {features} CNN features just before the last Dense layer; "
        "without it, the same network is fully global." + trained
    )


def check_exercise_4_comparison(comparison) -> None:
    """Checks that exercise 4 reports both models: a table with rows ``FedRecon`` and
    ``FedAvg`` and an ``accuracy`` column, measured on the same held-out examples (where
    the table has a ``num_examples`` column, the two counts must agree). The verdict says
    which model scored higher in this one run, and by how much."""
    if comparison is None:
        feedback.not_done("train both models, evaluate them, and set comparison to the table.")
        return
    if not isinstance(comparison, pd.DataFrame):
        raise AnswerIncorrect(
            f"comparison should be a pandas DataFrame, not {type(comparison).__name__}."
        )
    missing = [row for row in ("FedRecon", "FedAvg") if row not in comparison.index]
    if missing or "accuracy" not in comparison.columns:
        raise AnswerIncorrect(
            "the table needs one row per method, 'FedRecon' and 'FedAvg', and an 'accuracy' "
            f"column; it has rows {list(comparison.index)} and columns {list(comparison.columns)}."
        )
    accuracy = comparison["accuracy"]
    if not all(0.0 <= accuracy[row] <= 1.0 for row in ("FedRecon", "FedAvg")):
        raise AnswerIncorrect(f"accuracies must lie between 0 and 1: {accuracy.to_dict()}.")
    if "num_examples" in comparison.columns:
        counts = comparison["num_examples"]
        if counts["FedRecon"] != counts["FedAvg"]:
            raise AnswerIncorrect(
                f"the two models were scored on different numbers of examples "
                f"({counts['FedRecon']:g} for FedRecon, {counts['FedAvg']:g} for FedAvg). "
                "Score both on the same test writers with the same disjoint split, so that "
                "they answer the same questions."
            )
    gap = accuracy["FedRecon"] - accuracy["FedAvg"]
    if gap > 0:
        verdict = f"FedRecon scores {gap:.4f} higher in this run"
    elif gap < 0:
        verdict = f"FedAvg scores {-gap:.4f} higher in this run"
    else:
        verdict = "the two score the same"
    feedback.correct(
        f"both are reported. On the held-out examples FedRecon's accuracy is "
        f"{accuracy['FedRecon']:.4f} and FedAvg's {accuracy['FedAvg']:.4f}: {verdict}."
    )
