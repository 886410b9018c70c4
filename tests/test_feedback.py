"""The tools behind every check: verdicts, and a look inside a learner's dataset_split_fn."""

import pytest

tff = pytest.importorskip("tensorflow_federated")

from tutorial_utils import clients  # noqa: E402
from tutorial_utils.exercises import feedback  # noqa: E402

split = tff.learning.models.ReconstructionModel.build_dataset_split_fn


def test_trace_split_lists_the_batches_of_each_part():
    recon, post = feedback.trace_split(split(split_dataset=True), feedback.numbered_batches(5))
    assert (recon, post) == ([0, 2, 4], [1, 3])
    recon, post = feedback.trace_split(split(recon_epochs=2), feedback.numbered_batches(3))
    assert (recon, post) == ([0, 1, 2, 0, 1, 2], [0, 1, 2])


def test_tff_split_overlaps_on_a_dataset_reshuffled_every_pass():
    recon, post = feedback.trace_split(
        split(split_dataset=True), feedback.numbered_batches(20, reshuffle=True)
    )
    shared, scored = clients.shared_ratings(recon, post)
    assert 0 < shared <= scored == 10
    assert clients.common_ratings(recon, post)


def test_common_ratings_names_the_batches_both_parts_read():
    assert clients.common_ratings([0, 2, 4, 0, 2, 4], [1, 3, 5]) == []
    assert clients.common_ratings([4, 0, 2, 0], [2, 5, 4, 2]) == [2, 4]


@pytest.mark.parametrize(
    "answer, match",
    [
        (42, "is a function"),
        (lambda d: d, "must return two tf.data.Datasets"),
        (lambda d: (d,), "must return two tf.data.Datasets"),
        (lambda d: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_trace_split_explains_anything_but_a_split_function(answer, match):
    with pytest.raises(feedback.AnswerIncorrect, match=match) as caught:
        feedback.trace_split(answer, feedback.numbered_batches(3))
    assert str(caught.value).startswith(feedback.NOT_YET)


def test_verdicts_are_printed_wrapped(capsys):
    feedback.correct("it works. " * 20)
    out = capsys.readouterr().out
    assert out.startswith("✅ Correct: it works.") and len(out.splitlines()) > 1
    assert all(len(line) <= 92 for line in out.splitlines())
    feedback.not_done("write it.")
    feedback.not_judged("synthetic data.")
    feedback.note("about the pipelines.")
    assert capsys.readouterr().out.splitlines() == [
        "⏳ Not done yet: write it.",
        "ℹ️ Not judged: synthetic data.",
        "Note: about the pipelines.",
    ]


def test_first_pass_and_short_describe_the_steps():
    assert feedback.first_pass([0, 2, 4, 0, 2, 4]) == [0, 2, 4]
    assert feedback.short([1, 2]) == "[1, 2]"
    assert feedback.short(list(range(20)), limit=3) == "[0, 1, 2, ...] (20 steps)"
