"""The exercises of notebook 04: checks that tell a learner whether an answer is right.

Every ``check_*`` function takes the learner's answer and

- prints ``✅ Correct: ...`` with what it verified, when the answer is right;
- prints ``⏳ Not done yet: ...`` when the answer is still missing (``None``, or a class
  whose methods are not all written), so that an unfinished notebook still runs to the end;
- raises :class:`AnswerIncorrect` otherwise, saying in plain words what is wrong and why
  it matters.

The checks test what an answer *does*, not how it is written: a ``dataset_split_fn`` is
run on a tiny client whose batches are numbered, a model is compared with the Keras model
on the same weights, and TFF is asked to train it.

The module also holds what the exercises need beyond the checks: runs of matrix
factorization with a given configuration (exercise 1), and EMNIST clients, loss and
metrics (exercise 4).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import os
import textwrap
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import config, datasets, model, training

# --------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------

CORRECT = "✅ Correct"
NOT_DONE = "⏳ Not done yet"
NOT_YET = "❌ Not yet"
NOT_JUDGED = "ℹ️ Not judged"


def _wrap(text: str) -> str:
    return "\n".join(
        textwrap.fill(line, width=92, subsequent_indent="  ") if line.strip() else line
        for line in text.splitlines()
    )


class AnswerIncorrect(AssertionError):
    """A wrong answer. The message says what is wrong and why it matters."""

    def __init__(self, explanation: str):
        self.explanation = explanation
        super().__init__(_wrap(f"{NOT_YET}: {explanation}"))

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [str(self)]


def _correct(message: str) -> None:
    print(_wrap(f"{CORRECT}: {message}"))


def _not_done(message: str) -> None:
    print(_wrap(f"{NOT_DONE}: {message}"))


# --------------------------------------------------------------------------------------
# Looking inside a dataset_split_fn
# --------------------------------------------------------------------------------------


def numbered_batches(
    num_batches: int, *, reshuffle: bool = False, seed: int = 0
) -> tf.data.Dataset:
    """A client dataset of ``num_batches`` batches, each one rating of movie ``i`` (batch i).

    The elements look like a real client's (``x`` movie ids, ``y`` ratings), so any
    ``dataset_split_fn`` accepts them, and the movie id tells which batch went where.
    With ``reshuffle``, every pass over the dataset sees a new order, as with the
    tutorial's client pipelines.
    """
    ids = np.arange(num_batches, dtype=np.int64).reshape(num_batches, 1, 1)
    ratings = np.full((num_batches, 1, 1), 4.0, dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=ids, y=ratings))
    if reshuffle:
        dataset = dataset.shuffle(num_batches, seed=seed, reshuffle_each_iteration=True)
    return dataset


def _batch_ids(dataset) -> list[int]:
    return [int(v) for batch in dataset for v in np.ravel(batch["x"])]


def trace_split(split_fn: Callable, dataset: tf.data.Dataset) -> tuple[list[int], list[int]]:
    """Runs ``split_fn`` on a :func:`numbered_batches` dataset.

    Returns the batch numbers the reconstruction part and the post-reconstruction part
    yield, in order, one entry per step. Raises :class:`AnswerIncorrect` when
    ``split_fn`` is not a function that returns two datasets.
    """
    if not callable(split_fn):
        raise AnswerIncorrect(
            f"a dataset_split_fn is a function (a client's dataset in, two datasets out); "
            f"got {type(split_fn).__name__}."
        )
    try:
        parts = split_fn(dataset)
    except Exception as error:  # the learner's code: report whatever it raised
        raise AnswerIncorrect(
            f"calling it on a client's dataset raised {type(error).__name__}: {error}"
        ) from error
    if not (
        isinstance(parts, Sequence)
        and len(parts) == 2
        and all(isinstance(p, tf.data.Dataset) for p in parts)
    ):
        raise AnswerIncorrect(
            "a dataset_split_fn must return two tf.data.Datasets, (reconstruction data, "
            f"post-reconstruction data); it returned {type(parts).__name__}."
        )
    return _batch_ids(parts[0]), _batch_ids(parts[1])


def _first_pass(steps: list[int]) -> list[int]:
    """The batches of the first pass: everything up to the first repeated batch."""
    seen: list[int] = []
    for step in steps:
        if step in seen:
            break
        seen.append(step)
    return seen


def _short(steps: list[int], limit: int = 12) -> str:
    if len(steps) <= limit:
        return str(steps)
    return "[" + ", ".join(map(str, steps[:limit])) + f", ...] ({len(steps)} steps)"


# --------------------------------------------------------------------------------------
# Exercise 1: control the steps with dataset_split_fn, then tune
# --------------------------------------------------------------------------------------

TARGET_VALIDATION_ACCURACY = 0.40
# Rating accuracy of exercise 1's split alone (config.SPLIT_ALONE: the walkthrough's rates,
# 100 rounds of 50 clients) on real MovieLens 1M, scored by train_and_evaluate; measured
# with TFF 0.87 by
#   FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/tune_exercise1.py --runs split_alone
# (test rating accuracy: 0.3866).
SPLIT_ALONE_VALIDATION_ACCURACY = 0.3930


def check_exercise_1(split_fn) -> None:
    """Checks exercise 1: 3 reconstruction epochs capped at 50 steps, 1 post-reconstruction
    epoch capped at 50 steps, on disjoint halves of each client's data."""
    if split_fn is None:
        _not_done("set split_fn to your dataset_split_fn, then run this check again.")
        return
    recon, post = trace_split(split_fn, numbered_batches(7))
    shared = sorted(set(recon) & set(post))
    if shared:
        raise AnswerIncorrect(
            f"on a client with 7 batches, reconstruction and post-reconstruction share batches "
            f"{shared}. Keep the halves disjoint (split_dataset=True), as the default split "
            "does: then the same function can also serve evaluation, which must score a "
            "user on ratings that were not used to reconstruct their embedding."
        )
    unused = sorted(set(range(7)) - set(recon) - set(post))
    if unused:
        raise AnswerIncorrect(
            f"on a client with 7 batches, batches {unused} are used neither for "
            "reconstruction nor after it: split the client's data into two halves and use both."
        )
    recon_pass, post_pass = _first_pass(recon), _first_pass(post)
    if recon != recon_pass * 3:
        raise AnswerIncorrect(
            f"on a client with 7 batches, reconstruction ran {len(recon)} steps over its "
            f"{len(recon_pass)} batches: {_short(recon)}, that is "
            f"{len(recon) / max(len(recon_pass), 1):g} passes. The exercise asks for 3 passes "
            "(recon_epochs=3)."
        )
    if post != post_pass:
        raise AnswerIncorrect(
            f"on a client with 7 batches, post-reconstruction training ran {len(post)} steps "
            f"over its {len(post_pass)} batches: {_short(post)}, that is "
            f"{len(post) / max(len(post_pass), 1):g} passes. The exercise asks for 1 pass "
            "(post_recon_epochs=1)."
        )
    big_recon, big_post = trace_split(split_fn, numbered_batches(200))
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
    _correct(
        f"on a client with 7 batches, reconstruction makes 3 passes over its half, "
        f"{_short(recon)}, and post-reconstruction training 1 pass over the other half, "
        f"{post}. On a client with 200 batches both stop at 50 steps."
    )


def training_split_fn(run: config.FedReconRun):
    """The ``dataset_split_fn`` of a training run: ``run``'s epochs and caps, disjoint halves."""
    import tensorflow_federated as tff

    return tff.learning.models.ReconstructionModel.build_dataset_split_fn(
        recon_epochs=run.recon_epochs,
        recon_steps_max=run.recon_steps_max,
        post_recon_epochs=run.post_recon_epochs,
        post_recon_steps_max=run.post_recon_steps_max,
        split_dataset=True,
    )


def evaluation_split_fn(run: config.FedReconRun):
    """How a run is evaluated: reconstruct as in training, then score every other batch.

    Reconstruction repeats training's (same epochs and cap, on the even batches); the
    score covers all the odd batches, one pass and no cap, so that every configuration is
    scored on the same share of each user's ratings.
    """
    import tensorflow_federated as tff

    return tff.learning.models.ReconstructionModel.build_dataset_split_fn(
        recon_epochs=run.recon_epochs,
        recon_steps_max=run.recon_steps_max,
        post_recon_epochs=1,
        post_recon_steps_max=None,
        split_dataset=True,
    )


@dataclasses.dataclass
class RunResult:
    """What one training run of :func:`train_and_evaluate` produced."""

    run: config.FedReconRun
    config_name: str  # "full" or "smoke": the base configuration (users, factors, seed)
    data_kind: str  # "movielens" or "synthetic"
    validation: dict
    test: dict
    history: pd.DataFrame
    seconds: float
    engine: str = "TFF"  # what trained it: "TFF", or "the simulator" (simulate_and_evaluate)

    def summary(self) -> dict:
        """One row for a table: the run's parameters, scores and time."""
        return {
            **dataclasses.asdict(self.run),
            "val_loss": self.validation["loss"],
            "val_accuracy": self.validation["rating_accuracy"],
            "test_loss": self.test["loss"],
            "test_accuracy": self.test["rating_accuracy"],
            "minutes": self.seconds / 60,
        }


def train_and_evaluate(
    run: config.FedReconRun,
    source,
    ratings_df: pd.DataFrame,
    movies_df: pd.DataFrame,
    *,
    base: config.TutorialConfig | None = None,
    split_fn: Callable | None = None,
    model_class: Callable | None = None,
    progress: bool = True,
) -> RunResult:
    """Trains matrix factorization with FedRecon as ``run`` says, then scores it.

    ``source`` is what ``data.find_movielens()`` returned (it tells real from synthetic
    data). ``base`` (default ``config.current()``) gives the users, the number of latent
    factors and the seed. ``split_fn`` replaces the training split built from ``run``
    (exercise 2), and ``model_class(num_items, num_latent_factors)`` the Keras model
    (exercise 3). Seeds are set first, so a run repeats exactly. Validation and test users
    are scored with :func:`evaluation_split_fn` on :func:`training.fixed_order` copies of
    their data, so reconstruction and scoring never share a rating.
    """
    base = base or config.current()
    start = time.monotonic()
    np.random.seed(base.seed)
    tf.keras.utils.set_random_seed(base.seed)
    clients = datasets.RatingClients(
        ratings_df,
        batch_size=run.batch_size,
        max_examples_per_user=base.max_examples_per_user,
        max_clients=base.max_clients,
    )
    train_ids, val_ids, test_ids = datasets.split_clients(clients.client_ids, seed=base.seed)
    if model_class is None:
        model_fn = model.reconstruction_model_fn(len(movies_df), base.num_latent_factors)
    else:

        def model_fn():
            return model_class(len(movies_df), base.num_latent_factors)

    rates = training.LearningRates(
        server=run.server_lr, client=run.client_lr, reconstruction=run.reconstruction_lr
    )
    process = training.build_training_process(model_fn, rates, split_fn or training_split_fn(run))
    evaluation = training.build_evaluation_process(
        model_fn, run.reconstruction_lr, evaluation_split_fn(run)
    )
    sampler = datasets.ClientSampler(
        train_ids, min(run.clients_per_round, len(train_ids)), seed=base.seed
    )
    state, history = training.train(process, clients, sampler, run.num_rounds, progress=progress)
    weights = process.get_model_weights(state)

    def score(ids):
        fixed = [training.fixed_order(d) for d in clients.create_tf_datasets(ids)]
        return training.evaluate(evaluation, weights, fixed)

    return RunResult(
        run=run,
        config_name=base.name,
        data_kind=source.kind,
        validation=score(val_ids),
        test=score(test_ids),
        history=history,
        seconds=time.monotonic() - start,
    )


def simulate_and_evaluate(
    run: config.FedReconRun,
    source,
    ratings_df: pd.DataFrame,
    movies_df: pd.DataFrame,
    *,
    base: config.TutorialConfig | None = None,
    progress: bool = True,
) -> RunResult:
    """:func:`train_and_evaluate` with the simulator of notebook 05 instead of TFF: the
    same users, the same split by user and the same scoring on disjoint halves, in
    seconds; the simulator draws its own random numbers (seeded by ``base.seed``), so its
    scores agree with a TFF run's within their spread over seeds, not digit for digit."""
    from tutorial_utils import simulation

    base = base or config.current()
    start = time.monotonic()
    result = simulation.simulate_run(
        run, ratings_df, len(movies_df), base, seed=base.seed, progress=progress
    )
    return RunResult(
        run=run,
        config_name=base.name,
        data_kind=source.kind,
        validation=result["validation"],
        test=result["test"],
        history=result["history"],
        seconds=time.monotonic() - start,
        engine="the simulator",
    )


def check_exercise_1_tuning(result: RunResult | None, *, baseline: float | None = None) -> None:
    """Checks exercise 1's tuning on the **validation** users: on real MovieLens 1M in the
    full configuration, their rating accuracy must reach 0.40 and beat the split alone's
    (``baseline``, by default TFF's). The test accuracy is reported, never judged: it is
    looked at once, for the configuration chosen."""
    if result is None:
        _not_done(
            "train your configuration with exercises.train_and_evaluate and set "
            "tuned_result to what it returns, then run this check again."
        )
        return
    baseline = SPLIT_ALONE_VALIDATION_ACCURACY if baseline is None else baseline
    accuracy = result.validation["rating_accuracy"]
    test = f"test rating accuracy, reported only: {result.test['rating_accuracy']:.4f}"
    goal = (
        f"validation rating accuracy of at least {TARGET_VALIDATION_ACCURACY:.2f} and "
        f"above the split alone ({baseline:.4f})"
    )
    if result.data_kind != "movielens" or result.config_name != "full":
        print(
            _wrap(
                f"{NOT_JUDGED}: this run used {result.data_kind} data in the {result.config_name} "
                f"configuration (validation rating accuracy {accuracy:.4f}). The goal, {goal}, "
                "is for real MovieLens 1M in the full configuration."
            )
        )
        return
    if accuracy < TARGET_VALIDATION_ACCURACY:
        raise AnswerIncorrect(
            f"the validation rating accuracy is {accuracy:.4f}; the goal is {goal}. Try the "
            "settings that helped most in the tuning table."
        )
    if accuracy <= baseline:
        raise AnswerIncorrect(
            f"the validation rating accuracy is {accuracy:.4f}, not above what the split "
            f"alone gives ({baseline:.4f}): the tuning has not helped yet."
        )
    _correct(
        f"validation rating accuracy {accuracy:.4f} ({result.engine}), against "
        f"{baseline:.4f} for the split alone and about 0.30 for the walkthrough's setup "
        f"({test})."
    )


# --------------------------------------------------------------------------------------
# Exercise 2: reuse data in training only
# --------------------------------------------------------------------------------------


def check_exercise_2(train_split_fn, eval_split_fn) -> None:
    """Checks exercise 2: training reuses every batch for both stages; evaluation keeps
    reconstruction and scoring disjoint."""
    if train_split_fn is None or eval_split_fn is None:
        _not_done("set both train_split_fn and eval_split_fn, then run this check again.")
        return
    everything = list(range(6))
    train_recon, train_post = trace_split(train_split_fn, numbered_batches(6))
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
    eval_recon, eval_scored = trace_split(eval_split_fn, numbered_batches(6))
    shared = sorted(set(eval_recon) & set(eval_scored))
    if shared:
        raise AnswerIncorrect(
            f"in evaluation, on a client with 6 batches, reconstruction uses {eval_recon} and "
            f"the score is computed on {eval_scored}: batches {shared} are in both. That leaks "
            "evaluation data: the user embedding is fitted to the very ratings it is then "
            "scored on, so the accuracy looks better than a new user would see. Keep the two "
            "parts disjoint, e.g. build_dataset_split_fn(split_dataset=True)."
        )
    if not eval_recon or not eval_scored:
        empty = "reconstruction" if not eval_recon else "scoring"
        raise AnswerIncorrect(
            f"in evaluation, {empty} gets no data on a client with 6 batches "
            f"(reconstruction: {eval_recon}, scored: {eval_scored})."
        )
    _correct(
        "on a client with 6 batches,\n"
        f"training reuses the data: reconstruction {train_recon}, "
        f"post-reconstruction {train_post};\n"
        f"evaluation keeps it disjoint: reconstruction {eval_recon}, scored {eval_scored}."
    )
    recon, scored = trace_split(eval_split_fn, numbered_batches(20, reshuffle=True))
    overlap = sorted(set(recon) & set(scored))
    if overlap:
        print(
            _wrap(
                f"Note: on a client whose dataset is reshuffled on every pass, as this tutorial's "
                "clients are (shuffle with reshuffle_each_iteration), "
                f"{len(overlap)} of 20 batches "
                "ended up in both parts: the even/odd split takes its two halves from two "
                "different passes. It is disjoint only if every pass yields the same order, so "
                "evaluate on fixed-order copies (training.fixed_order), as this notebook does."
            )
        )


# --------------------------------------------------------------------------------------
# Exercise 3: matrix factorization as a ReconstructionModel in plain TensorFlow
# --------------------------------------------------------------------------------------

_VARIABLE_LISTS = (
    "global_trainable_variables",
    "global_non_trainable_variables",
    "local_trainable_variables",
    "local_non_trainable_variables",
)


def _shapes(reconstruction_model, kind: str) -> list[tuple]:
    return [tuple(v.shape) for v in getattr(reconstruction_model, kind)]


def _tiny_rating_clients(
    num_items: int, num_users: int = 6, per_user: int = 5
) -> datasets.RatingClients:
    rng = np.random.default_rng(7)
    rows = [
        (user, int(item), int(rng.integers(1, 6)))
        for user in range(num_users)
        for item in rng.choice(num_items, size=per_user, replace=False)
    ]
    return datasets.RatingClients(
        pd.DataFrame(rows, columns=["UserID", "MovieID", "Rating"]), batch_size=1
    )


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
        _not_done("write the class, then run this check again.")
        return
    if not (inspect.isclass(model_class) and issubclass(model_class, base_class)):
        raise AnswerIncorrect(
            "the answer should be a class that extends tff.learning.models.ReconstructionModel "
            f"(got {model_class!r}); TFF's FedRecon builders only accept such models."
        )
    if inspect.isabstract(model_class):
        missing = ", ".join(sorted(model_class.__abstractmethods__))
        _not_done(f"these members are still to write: {missing}.")
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
    expected = {kind: _shapes(reference, kind) for kind in _VARIABLE_LISTS}
    found = {kind: _shapes(custom, kind) for kind in _VARIABLE_LISTS}
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
        listing = "; ".join(f"{kind}: {found[kind]}" for kind in _VARIABLE_LISTS)
        raise AnswerIncorrect(
            f"with num_items={num_items} and num_latent_factors={k}, {why} Expected the item "
            f"matrix {item} as the only global trainable variable and the user embedding "
            f"{user} as the only local trainable one; found {listing}."
        )
    for kind in _VARIABLE_LISTS:
        for variable in getattr(custom, kind):
            if not isinstance(variable, tf.Variable):
                raise AnswerIncorrect(
                    f"{kind} holds a {type(variable).__name__}, not a tf.Variable: TFF assigns "
                    "the server's weights to these variables and trains them."
                )
    if not _same_spec(custom.input_spec, reference.input_spec):
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
        got = _outputs(custom, batch)
    except Exception as error:
        raise AnswerIncorrect(
            f"forward_pass on a batch of 5 ratings raised {type(error).__name__}: {error}. It "
            "returns an object with fields predictions, labels and num_examples."
        ) from error
    _compare_outputs(got, _outputs(reference, batch))

    # 3. It trains under build_fed_recon.
    if train:
        history, changed = _train_briefly(lambda: model_class(num_items, k), num_items)
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
    _correct(
        "the item matrix is global and the user embedding local; with the same weights the "
        "predictions, labels, loss, rating accuracy and gradients equal the Keras model's."
        + trained
    )


def _same_spec(first, second) -> bool:
    try:
        tf.nest.assert_same_structure(first, second)
    except (ValueError, TypeError):
        return False
    return all(
        a.dtype == b.dtype and a.shape.as_list() == b.shape.as_list()
        for a, b in zip(tf.nest.flatten(first), tf.nest.flatten(second))
    )


def _outputs(reconstruction_model, batch) -> dict:
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


def _compare_outputs(got: dict, want: dict) -> None:
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


def _train_briefly(model_fn: Callable, num_items: int, rounds: int = 3):
    """Runs a few FedRecon rounds on tiny clients; returns the history and whether the
    global variables changed."""
    clients = _tiny_rating_clients(num_items)
    process = training.build_training_process(model_fn)
    state = process.initialize()
    before = [np.array(w) for w in process.get_model_weights(state).trainable]
    everyone = datasets.ClientSampler(clients.client_ids, len(clients.client_ids))
    state, history = training.train(process, clients, everyone, rounds, state=state, progress=False)
    after = process.get_model_weights(state).trainable
    changed = any(not np.array_equal(a, np.array(b)) for a, b in zip(before, after))
    return history, changed


# --------------------------------------------------------------------------------------
# Exercise 4: EMNIST with a personal user embedding
# --------------------------------------------------------------------------------------

EMNIST_VARIABLE = "FEDRECON_EMNIST"
EMNIST_CHOICES = ("synthetic", "real")
IMAGE_SHAPE = (28, 28, 1)


def emnist_choice() -> str:
    """``synthetic`` (default, offline) or ``real`` (downloads EMNIST), from ``FEDRECON_EMNIST``."""
    value = os.environ.get(EMNIST_VARIABLE, "synthetic").strip().lower() or "synthetic"
    if value not in EMNIST_CHOICES:
        raise ValueError(
            f"Environment variable {EMNIST_VARIABLE}={value!r} is not one of "
            f"{', '.join(EMNIST_CHOICES)}."
        )
    return value


@dataclasses.dataclass
class EmnistData:
    """Federated EMNIST, or its synthetic stand-in: clients are writers."""

    train: object  # tff.simulation.datasets.ClientData
    test: object  # tff.simulation.datasets.ClientData
    train_ids: list
    test_ids: list
    num_classes: int
    kind: str  # "synthetic" or "real"
    description: str
    batch_size: int

    def create_tf_datasets(self, client_ids, split: str = "train") -> list[tf.data.Dataset]:
        """The batched datasets of these clients of ``split`` (``"train"`` or ``"test"``)."""
        client_data = {"train": self.train, "test": self.test}[split]
        return [
            emnist_batches(client_data.create_tf_dataset_for_client(c), self.batch_size)
            for c in client_ids
        ]


def emnist_batches(dataset: tf.data.Dataset, batch_size: int, seed: int = 42) -> tf.data.Dataset:
    """Raw EMNIST elements (``pixels`` [28, 28] white background, ``label``) as model batches.

    ``x`` is the ink (``1 - pixels``, [b, 28, 28, 1]) and ``y`` the label ([b, 1]). The
    examples are shuffled once, in the same order on every pass, so that splitting a
    client's batches into halves gives disjoint halves.
    """

    def to_example(element):
        return collections.OrderedDict(
            x=tf.expand_dims(1.0 - element["pixels"], -1),
            y=tf.reshape(tf.cast(element["label"], tf.int32), [1]),
        )

    return (
        dataset.shuffle(1000, seed=seed, reshuffle_each_iteration=False)
        .map(to_example)
        .batch(batch_size)
    )


def emnist_input_spec() -> collections.OrderedDict:
    """The element spec of a client's EMNIST batches."""
    return collections.OrderedDict(
        x=tf.TensorSpec(shape=[None, *IMAGE_SHAPE], dtype=tf.float32),
        y=tf.TensorSpec(shape=[None, 1], dtype=tf.int32),
    )


def emnist_loss_fn() -> tf.keras.losses.Loss:
    """Cross-entropy on the logits of the last Dense layer."""
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def emnist_metrics_fn() -> list:
    """Accuracy: the share of images whose largest logit is the true class."""
    return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def synthetic_emnist(
    num_clients: int,
    examples_per_client: int,
    *,
    digits_per_client: int = 3,
    noise: float = 0.8,
    max_shift: int = 2,
    seed: int = 0,
    prefix: str = "writer",
):
    """An offline stand-in for federated EMNIST, made from TFF's synthetic digits.

    ``tff.simulation.datasets.emnist.get_synthetic()`` holds one hard-coded 28x28 image
    per digit. Each client here writes only ``digits_per_client`` of the ten digits;
    every example is one of those images, shifted by up to ``max_shift`` pixels and
    buried in Gaussian noise (``noise`` is its standard deviation, on ink from 0 to 1).
    With so much noise an image alone is often ambiguous, while knowing which digits a
    writer uses resolves much of it: a personal pattern a user embedding can learn.
    Same arguments, same data. Returns a ``ClientData`` in EMNIST's format.
    """
    import tensorflow_federated as tff

    digits = tff.simulation.datasets.emnist.get_synthetic()
    first = digits.create_tf_dataset_for_client(digits.client_ids[0]).batch(10)
    batch = next(iter(first))
    ink = 1.0 - batch["pixels"].numpy()[np.argsort(batch["label"].numpy())]
    rng = np.random.default_rng(seed)
    clients = collections.OrderedDict()
    for client in range(num_clients):
        own_digits = rng.choice(10, size=digits_per_client, replace=False)
        labels = rng.choice(own_digits, size=examples_per_client)
        shifts = rng.integers(-max_shift, max_shift + 1, size=(examples_per_client, 2))
        images = np.stack(
            [np.roll(ink[label], tuple(s), axis=(0, 1)) for label, s in zip(labels, shifts)]
        )
        images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
        clients[f"{prefix}_{client:03d}"] = collections.OrderedDict(
            label=labels.astype(np.int32), pixels=(1.0 - images).astype(np.float32)
        )
    return tff.simulation.datasets.TestClientData(clients)


SYNTHETIC_EMNIST_MESSAGE = (
    "EMNIST: SYNTHETIC stand-in, not real handwriting. TFF's offline synthetic EMNIST "
    "(tff.simulation.datasets.emnist.get_synthetic: one hard-coded image per digit) is "
    "copied with random shifts and heavy noise into {train} training writers and {test} new "
    "writers, each writing only 3 of the 10 digits. The numbers below say nothing about real "
    "EMNIST. To use the real federated EMNIST (3,400 writers, 62 classes: digits and "
    "letters), set FEDRECON_EMNIST=real before starting Jupyter: TFF then downloads it from "
    "storage.googleapis.com, which needs network access."
)
REAL_EMNIST_MESSAGE = (
    "EMNIST: the REAL federated EMNIST (tff.simulation.datasets.emnist.load_data, "
    "only_digits=False: 3,400 writers, 62 classes). Training uses the writers' training "
    "examples; evaluation uses the held-out test examples of {test} writers."
)


def load_emnist(cfg: config.ExerciseConfig | None = None, choice: str | None = None) -> EmnistData:
    """EMNIST for exercise 4, and a printed message saying which data are in use.

    ``choice`` (default: ``FEDRECON_EMNIST``, else ``synthetic``) is ``synthetic``, built
    offline by :func:`synthetic_emnist`, or ``real``, which downloads the federated EMNIST
    with TFF (network access needed).
    """
    cfg = cfg or config.exercises()
    choice = choice or emnist_choice()
    if choice == "real":
        import tensorflow_federated as tff

        train, test = tff.simulation.datasets.emnist.load_data(only_digits=False)
        rng = np.random.RandomState(cfg.seed)
        test_ids = sorted(
            rng.choice(test.client_ids, cfg.emnist_test_clients, replace=False).tolist()
        )
        data = EmnistData(
            train=train,
            test=test,
            train_ids=list(train.client_ids),
            test_ids=test_ids,
            num_classes=62,
            kind="real",
            batch_size=cfg.emnist_batch_size,
            description=REAL_EMNIST_MESSAGE.format(test=len(test_ids)),
        )
    else:
        train = synthetic_emnist(
            cfg.emnist_train_clients, cfg.emnist_examples_per_client, seed=cfg.seed
        )
        test = synthetic_emnist(
            cfg.emnist_test_clients,
            cfg.emnist_examples_per_client,
            seed=cfg.seed + 1,
            prefix="new_writer",
        )
        data = EmnistData(
            train=train,
            test=test,
            train_ids=list(train.client_ids),
            test_ids=list(test.client_ids),
            num_classes=10,
            kind="synthetic",
            batch_size=cfg.emnist_batch_size,
            description=SYNTHETIC_EMNIST_MESSAGE.format(
                train=len(train.client_ids), test=len(test.client_ids)
            ),
        )
    print(_wrap(data.description))
    return data


def personal_reconstruction_model(parts) -> object:
    """``(keras_model, global_layers, local_layers)`` as a ``ReconstructionModel`` on EMNIST."""
    import tensorflow_federated as tff

    keras_model, global_layers, local_layers = parts
    return tff.learning.models.ReconstructionModel.from_keras_model_and_layers(
        keras_model,
        global_layers=global_layers,
        local_layers=local_layers,
        input_spec=emnist_input_spec(),
    )


def global_keras_model(parts) -> object:
    """A network without local layers as a ``tff.learning`` model, for plain FedAvg."""
    import tensorflow_federated as tff

    keras_model, _, local_layers = parts
    if local_layers:
        raise ValueError("FedAvg trains a fully global model: this one has local layers.")
    return tff.learning.models.from_keras_model(
        keras_model,
        loss=emnist_loss_fn(),
        input_spec=emnist_input_spec(),
        metrics=emnist_metrics_fn(),
    )


def _build_parts(build_fn, num_classes: int, embedding_dim: int):
    call = f"build_fn(num_classes={num_classes}, embedding_dim={embedding_dim})"
    try:
        parts = build_fn(num_classes=num_classes, embedding_dim=embedding_dim)
    except Exception as error:
        raise AnswerIncorrect(f"{call} raised {type(error).__name__}: {error}") from error
    if not (
        isinstance(parts, Sequence) and len(parts) == 3 and isinstance(parts[0], tf.keras.Model)
    ):
        raise AnswerIncorrect(
            f"{call} should return (keras_model, global_layers, local_layers), as "
            f"model.build_keras_model does; it returned {type(parts).__name__}."
        )
    return parts


def check_exercise_4(build_fn, *, train: bool = True) -> None:
    """Checks exercise 4's model builder, ``build_fn(num_classes, embedding_dim)``.

    With ``embedding_dim > 0``: a CNN whose features are concatenated with a local user
    embedding of shape ``[1, embedding_dim]`` just before the last Dense layer, which
    outputs logits; everything else global. With ``embedding_dim=0``: the same network
    without the embedding (what plain FedAvg trains). With ``train``, FedRecon must train
    the personal model on TFF's synthetic EMNIST.
    """
    if build_fn is None:
        _not_done("write build_fn, then run this check again.")
        return
    num_classes, dim = 10, 4
    personal = _build_parts(build_fn, num_classes, dim)
    plain = _build_parts(build_fn, num_classes, 0)
    images = tf.random.stateless_uniform([3, *IMAGE_SHAPE], seed=[1, 2])
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
                "Leave the last Dense layer linear: the loss, emnist_loss_fn(), expects logits."
            )
    try:
        personal_model = personal_reconstruction_model(personal)
        plain_model = personal_reconstruction_model(plain)
    except ValueError as error:
        raise AnswerIncorrect(
            "TFF refuses the split into global and local layers: every variable of the network "
            f"must be in exactly one of the two lists. TFF says: {error}"
        ) from error
    local = _shapes(personal_model, "local_trainable_variables") + _shapes(
        personal_model, "local_non_trainable_variables"
    )
    global_shapes = _shapes(personal_model, "global_trainable_variables") + _shapes(
        personal_model, "global_non_trainable_variables"
    )
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
    plain_local = _shapes(plain_model, "local_trainable_variables") + _shapes(
        plain_model, "local_non_trainable_variables"
    )
    if plain_local:
        raise AnswerIncorrect(
            f"with embedding_dim=0 the network still has local variables {plain_local}; "
            "it should be fully global, the network plain FedAvg trains."
        )
    plain_global = _shapes(plain_model, "global_trainable_variables") + _shapes(
        plain_model, "global_non_trainable_variables"
    )
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
    _check_embedding_feeds_last_layer(personal_model, personal, images, features, dim)
    trained = ""
    if train:
        history = _train_emnist_briefly(build_fn)
        if not np.isfinite(history.to_numpy()).all():
            raise AnswerIncorrect(
                f"under build_fed_recon the training metrics are not finite:\n{history}"
            )
        trained = (
            f" build_fed_recon trains it on TFF's synthetic EMNIST (2 rounds, loss "
            f"{history['loss'].iloc[0]:.3f} -> {history['loss'].iloc[-1]:.3f})."
        )
    _correct(
        f"a user embedding of shape (1, {dim}) is the only local variable, and it is "
        f"concatenated to the {features} CNN features just before the last Dense layer; "
        "without it, the same network is fully global." + trained
    )


def _check_embedding_feeds_last_layer(reconstruction_model, parts, images, features, dim) -> None:
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


def _train_emnist_briefly(build_fn, rounds: int = 2) -> pd.DataFrame:
    import tensorflow_federated as tff

    digits = tff.simulation.datasets.emnist.get_synthetic()
    client_datasets = [
        emnist_batches(digits.create_tf_dataset_for_client(c), 4) for c in digits.client_ids
    ]
    process = training.build_training_process(
        lambda: personal_reconstruction_model(build_fn(num_classes=10, embedding_dim=4)),
        training.LearningRates(server=1.0, client=0.05, reconstruction=0.1),
        loss_fn=emnist_loss_fn,
        metrics_fn=emnist_metrics_fn,
    )
    everyone = datasets.ClientSampler(range(len(client_datasets)), len(client_datasets))
    _, history = training.train(
        process, lambda ids: [client_datasets[i] for i in ids], everyone, rounds, progress=False
    )
    return history


def check_exercise_4_comparison(comparison) -> None:
    """Checks that exercise 4 reports both models: a table with rows ``FedRecon`` and
    ``FedAvg`` and an ``accuracy`` column, measured on the same held-out examples."""
    if comparison is None:
        _not_done("train both models, evaluate them, and set comparison to the table.")
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
    gap = accuracy["FedRecon"] - accuracy["FedAvg"]
    verdict = "better" if gap > 0 else "not better"
    _correct(
        f"both are reported. On the held-out examples FedRecon's accuracy is "
        f"{accuracy['FedRecon']:.4f} and FedAvg's {accuracy['FedAvg']:.4f}: the personal "
        f"embedding is {verdict} by {abs(gap):.4f}."
    )
