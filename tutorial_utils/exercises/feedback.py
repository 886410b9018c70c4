"""What a learner reads after a check: the verdicts, and the tools that look inside a split.

Every check of notebook 04 (``exercises.check_*``) ends in one verdict:

- :data:`CORRECT`, printed with what it verified (:func:`correct`);
- :data:`NOT_DONE`, printed while the answer is still missing (:func:`not_done`), so that
  an unfinished notebook still runs to the end;
- :data:`NOT_JUDGED`, printed when the answer ran on data or settings the goal is not
  about (:func:`not_judged`);
- :data:`NOT_YET`, raised as :class:`AnswerIncorrect`, which says in plain words what is
  wrong and why it matters.

A ``dataset_split_fn`` is judged by what it does: :func:`trace_split` runs it on a client
whose batches are numbered (:func:`numbered_batches`) and lists the batches each stage
reads, one entry per step.
"""

from __future__ import annotations

import collections
import textwrap
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tutorial_utils import clients

CORRECT = "✅ Correct"
NOT_DONE = "⏳ Not done yet"
NOT_YET = "❌ Not yet"
NOT_JUDGED = "ℹ️ Not judged"


def wrap(text: str) -> str:
    """``text`` wrapped at 92 characters, line by line, continuation lines indented."""
    return "\n".join(
        textwrap.fill(line, width=92, subsequent_indent="  ") if line.strip() else line
        for line in text.splitlines()
    )


class AnswerIncorrect(AssertionError):
    """A wrong answer. The message says what is wrong and why it matters."""

    def __init__(self, explanation: str):
        self.explanation = explanation
        super().__init__(wrap(f"{NOT_YET}: {explanation}"))

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [str(self)]


def correct(message: str) -> None:
    """Prints the verdict of a right answer, with what was verified."""
    print(wrap(f"{CORRECT}: {message}"))


def not_done(message: str) -> None:
    """Prints the verdict of a missing answer, with what is still to do."""
    print(wrap(f"{NOT_DONE}: {message}"))


def not_judged(message: str) -> None:
    """Prints why an answer was run but not judged."""
    print(wrap(f"{NOT_JUDGED}: {message}"))


def note(message: str) -> None:
    """Prints a note that follows a verdict without changing it."""
    print(wrap(f"Note: {message}"))


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


def trace_split(split_fn: Callable, dataset: tf.data.Dataset) -> tuple[list[int], list[int]]:
    """Runs ``split_fn`` on a :func:`numbered_batches` dataset.

    Returns the batch numbers the reconstruction part and the post-reconstruction part
    yield (their movie ids, :func:`clients.movie_ids`), in order, one entry per step.
    Raises :class:`AnswerIncorrect` when ``split_fn`` is not a function that returns two
    datasets.
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
    return clients.movie_ids(parts[0]), clients.movie_ids(parts[1])


def first_pass(steps: list[int]) -> list[int]:
    """The batches of the first pass: everything up to the first repeated batch."""
    seen: list[int] = []
    for step in steps:
        if step in seen:
            break
        seen.append(step)
    return seen


def short(steps: list[int], limit: int = 12) -> str:
    """``steps`` for a message: the whole list, or its first ``limit`` and their count."""
    if len(steps) <= limit:
        return str(steps)
    return "[" + ", ".join(map(str, steps[:limit])) + f", ...] ({len(steps)} steps)"


def disjoint_trace(split_fn, num_batches: int, problem: str) -> tuple[list, list]:
    """The batches ``split_fn`` gives each stage on a client of ``num_batches`` batches.

    Raises :class:`AnswerIncorrect` if the stages share a batch, saying ``problem`` with
    ``{recon}``, ``{post}`` and ``{shared}`` filled in.
    """
    recon, post = trace_split(split_fn, numbered_batches(num_batches))
    shared = clients.common_ratings(recon, post)
    if shared:
        raise AnswerIncorrect(problem.format(recon=recon, post=post, shared=shared))
    return recon, post
