"""The exercises of notebook 04 (and its solutions): the checks and what they run.

It builds on the core and the simulator engine; nothing below it imports it.

- ``checks``: the check of each exercise, the one a learner calls.
- ``feedback``: verdicts, and tools that look inside a learner's ``dataset_split_fn``.
- ``model_checks``: what the checks of exercises 3 and 4 compare and train, and the checks
  of exercise 4's TFF calls.
- ``emnist``: exercise 4's EMNIST data (or offline stand-in) and models.
- ``recorded``: exercise 1's runs too long to repeat, read from ``results/``, and what
  the scripts that recorded them share.
"""

# What notebook 04 calls: each exercise's check, exercise 4's EMNIST data and losses, one
# run trained and scored (from the simulator's layer), and the recorded runs.
from tutorial_utils.exercises import recorded
from tutorial_utils.exercises.checks import (
    TARGET_VALIDATION_ACCURACY,
    check_exercise_1,
    check_exercise_1_tuning,
    check_exercise_2,
    check_exercise_3,
    check_exercise_4,
    check_exercise_4_comparison,
)
from tutorial_utils.exercises.emnist import (
    emnist_batches,
    emnist_input_spec,
    emnist_loss_fn,
    emnist_metrics_fn,
    load_emnist,
)
from tutorial_utils.exercises.model_checks import (
    check_exercise_4_evaluation,
    check_exercise_4_models,
    check_exercise_4_processes,
)
from tutorial_utils.exercises.recorded import split_alone_spread
from tutorial_utils.simulation.runs import MovieLensData, train_and_score

__all__ = [
    "TARGET_VALIDATION_ACCURACY",
    "MovieLensData",
    "check_exercise_1",
    "check_exercise_1_tuning",
    "check_exercise_2",
    "check_exercise_3",
    "check_exercise_4",
    "check_exercise_4_comparison",
    "check_exercise_4_evaluation",
    "check_exercise_4_models",
    "check_exercise_4_processes",
    "emnist_batches",
    "emnist_input_spec",
    "emnist_loss_fn",
    "emnist_metrics_fn",
    "load_emnist",
    "recorded",
    "split_alone_spread",
    "train_and_score",
]
