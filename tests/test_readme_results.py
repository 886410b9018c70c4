"""The README's results come from the notebooks' stored outputs and from what the
walkthrough printed (``tutorial_utils.walkthrough``), never from typed numbers."""

import ast
import json
import re

import pytest

from tutorial_utils import settings, walkthrough

ROOT = settings.project_root()
SEED_TEXT = (
    ROOT.parent / "shared" / "seed" / "federated_reconstruction_for_matrix_factorization.txt"
)


def stored_text(notebook: str) -> str:
    """Every printed output of a notebook, stored by the last real-data run, in cell order."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            parts.append("".join(text))
    return "\n".join(parts)


def printed(text: str, label: str):
    """The value printed after ``label`` on one line (a number or a Python literal)."""
    match = re.search(rf"^{re.escape(label)}\s*(.+)$", text, re.M)
    assert match, f"no line starting with {label!r} in the stored outputs"
    return ast.literal_eval(match.group(1).strip())


def table_rows(text: str, marker: str) -> dict[str, list[float]]:
    """A stored DataFrame's rows (label -> numbers), from the output whose header holds
    ``marker``."""
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and marker in lines[0]:
            rows = {}
            for line in lines[1:]:
                label, *numbers = re.split(r"\s{2,}", line.strip())
                rows[label] = [float(n) for n in numbers]
            return rows
    raise AssertionError(f"no stored table with {marker!r} in its header")


def readme_results() -> dict[str, tuple[str, str]]:
    """The README's results table: fact -> (walkthrough, this package)."""
    section = (ROOT / "README.md").read_text().split("## Results", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", section, re.M)
    header, *rows = rows
    assert [c.strip() for c in header] == ["Fact", "Walkthrough", "This package"]
    return {fact.strip(): (theirs.strip(), ours.strip()) for fact, theirs, ours in rows}


def as_printed(number) -> str:
    """A number as the walkthrough printed it (the shortest digits that read back)."""
    return repr(float(number))


def pair(metrics: dict) -> str:
    return f"{metrics['loss']:.4f}, {metrics['rating_accuracy']:.4f}"


def test_the_data_facts_in_the_readme_are_notebook_01s():
    rows = readme_results()
    out = stored_text("01_data_exploration")
    users, movies = printed(out, "Num users:"), printed(out, "Num movies:")
    assert rows["Users, movies"] == (
        f"{walkthrough.NUM_USERS}, {walkthrough.NUM_MOVIES}",
        f"{users}, {movies}",
    )
    average, median = printed(out, "Average rating:"), printed(out, "Median rating:")
    assert rows["Average / median rating"] == (
        f"{walkthrough.AVERAGE_RATING} / {walkthrough.MEDIAN_RATING}",
        f"{average} / {median}",
    )


def test_what_the_readme_calls_identical_is_identical():
    rows = readme_results()
    out = stored_text("01_data_exploration")
    assert rows["Top genres of users 0, 10, 19"][1] == "identical (notebook 01)"
    for user, genres in walkthrough.TOP_GENRES.items():
        printed_lines = out.split(f"For user {user}:\n", 1)[1].splitlines()[: len(genres)]
        assert printed_lines == [f"{g} was rated {n} times" for g, n in genres], user
    assert rows["First training batch"][1] == "identical"
    movies = re.search(r"^x: int64, shape \(5, 1\): \[([\d ]+)\]$", out, re.M).group(1)
    ratings = re.search(r"^y: float32, shape \(5, 1\): \[([\d. ]+)\]$", out, re.M).group(1)
    assert [int(m) for m in movies.split()] == walkthrough.FIRST_BATCH_MOVIES
    assert [float(r) for r in ratings.split()] == walkthrough.FIRST_BATCH_RATINGS


def test_the_trained_numbers_in_the_readme_are_notebook_03s():
    rows = readme_results()
    out = stored_text("03_training_and_evaluation")
    expected = {
        "Initial evaluation (loss, rating accuracy)": (
            walkthrough.INITIAL_EVAL,
            printed(out, "Initial Eval:"),
        ),
        "After 20 rounds: validation": (walkthrough.FINAL_EVAL, printed(out, "Final Eval:")),
        "After 20 rounds: test": (walkthrough.FINAL_TEST, printed(out, "Final Test:")),
    }
    for fact, (theirs, ours) in expected.items():
        assert rows[fact] == (pair(theirs), pair(ours)), fact


def test_the_overlap_paragraph_of_the_readme_is_notebook_03s():
    out = stored_text("03_training_and_evaluation")
    scored, shared, share = re.search(
        r"Scored validation ratings: (\d+); also used for reconstruction: (\d+) \(([\d.]+)%\)", out
    ).groups()
    disjoint = table_rows(out, "disjoint halves")
    numbers = {
        name: [row[-1] for row in (disjoint[f"{name} loss"], disjoint[f"{name} rating accuracy"])]
        for name in ("validation", "test")
    }
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"{shared} of the {scored} scored validation ratings ({share}%)" in readme
    assert (
        f"validation {numbers['validation'][0]:.4f} / {numbers['validation'][1]:.4f} and test "
        f"{numbers['test'][0]:.4f} / {numbers['test'][1]:.4f}"
    ) in readme


def test_the_simulators_test_scores_in_the_readme_are_notebook_05s():
    out = stored_text("05_fast_simulation")
    rmse, accuracy = re.search(
        r"^Test users: RMSE ([\d.]+), rating accuracy ([\d.]+)$", out, re.M
    ).groups()
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"reach **RMSE {rmse} and rating accuracy {accuracy}**" in readme


@pytest.mark.skipif(not SEED_TEXT.exists(), reason=f"the walkthrough's text is not at {SEED_TEXT}")
def test_the_walkthrough_numbers_are_the_ones_it_printed():
    text = SEED_TEXT.read_text()
    history = walkthrough.training_history()
    for number, row in history.iterrows():
        assert (
            f"Train round {number - 1}: OrderedDict([('rating_accuracy', "
            f"{as_printed(row.rating_accuracy)}), ('loss', {as_printed(row.loss)})])"
        ) in text, number
    for label, metrics in (
        ("Initial Eval", walkthrough.INITIAL_EVAL),
        ("Final Eval", walkthrough.FINAL_EVAL),
        ("Final Test", walkthrough.FINAL_TEST),
    ):
        assert (
            f"{label}: OrderedDict([('loss', {as_printed(metrics['loss'])}), "
            f"('rating_accuracy', {as_printed(metrics['rating_accuracy'])})])"
        ) in text, label
    assert f"Num users: {walkthrough.NUM_USERS}\nNum movies: {walkthrough.NUM_MOVIES}" in text
    assert f"Average rating: {walkthrough.AVERAGE_RATING}\n" in text
    assert f"Median rating: {walkthrough.MEDIAN_RATING}\n" in text
