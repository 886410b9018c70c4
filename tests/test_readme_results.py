"""The README's results come from the notebooks' stored outputs and from what the
walkthrough printed (``tutorial_utils.walkthrough``), never from typed numbers."""

import ast
import importlib.util
import json
import re
from html.parser import HTMLParser

import pytest

from tutorial_utils import config, recorded, settings, walkthrough

ROOT = settings.project_root()
SEED_TEXT = (
    ROOT.parent / "shared" / "seed" / "federated_reconstruction_for_matrix_factorization.txt"
)


def notebook_cells(notebook: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]


def stored_text(notebook: str) -> str:
    """Every printed output of a notebook, stored by the last real-data run, in cell order."""
    parts = []
    for cell in notebook_cells(notebook):
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            parts.append("".join(text))
    return "\n".join(parts)


def stored_outputs(notebook: str, kind: str) -> list[str]:
    """A notebook's stored outputs of one MIME type (``text/markdown``, ``text/html``)."""
    return [
        "".join(output["data"][kind])
        for cell in notebook_cells(notebook)
        for output in cell.get("outputs", [])
        if kind in output.get("data", {})
    ]


class _TableReader(HTMLParser):
    """The rows of every ``<table>`` in an HTML text, as lists of cell texts; a header cell
    spanning several columns is repeated in each."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._span = [], None, 1

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("th", "td"):
            self._cell, self._span = "", int(dict(attrs).get("colspan", 1))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.tables[-1][-1].extend([self._cell.strip()] * self._span)
            self._cell = None


def stored_tables(notebook: str) -> list[list[list[str]]]:
    """Every DataFrame a notebook stored as HTML: its rows (header rows first) of cells,
    exactly as displayed."""
    tables = []
    for html in stored_outputs(notebook, "text/html"):
        reader = _TableReader()
        reader.feed(html)
        tables.extend(reader.tables)
    return tables


def stored_frame(notebook: str, columns: list[str]) -> list[dict[str, str]]:
    """The rows of the stored table whose header is the index and then ``columns``, each
    as {column: cell}."""
    for header, *rows in stored_tables(notebook):
        if header[1:] == columns:
            return [dict(zip(columns, row[1:])) for row in rows]
    raise AssertionError(f"no stored table with the columns {columns}")


def readme_section(title: str) -> str:
    """The README's text under ``### title``, up to the next heading."""
    text = (ROOT / "README.md").read_text()
    return re.split(r"^##+ ", text.split(f"\n### {title}\n", 1)[1], flags=re.M)[0]


def unexplained_numbers(section: str, phrases: list[str], allowed: tuple[str, ...] = ()):
    """Checks that every phrase is in ``section`` (whitespace aside), then returns the
    numbers left in its prose once the phrases, code and ``allowed`` words are taken out:
    every number of a checked section must be in a checked phrase."""
    text = " ".join(section.split())
    text = re.sub(r"`[^`]*`", " ", re.sub(r"```.*?```", " ", text))
    for phrase in phrases:
        assert phrase in text, f"the README does not say: {phrase}"
        text = text.replace(phrase, " ")
    for word in allowed:
        text = text.replace(word, " ")
    return re.findall(r"\d[\d.,%]*", text)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_exercise_1_section_is_the_recorded_runs_and_notebook_04s():
    """The README's exercise 1 numbers come from results/ (TFF's runs, the screen), from the
    solutions notebook's stored outputs (which show those files, and the simulator's run)
    and from the settings of the runs."""
    exercises = pytest.importorskip("tutorial_utils.exercises")
    tuning, screen = recorded.load_tuning(), recorded.load_screen()
    split, best = config.SPLIT_ALONE, config.EXERCISES_FULL.tuned
    split_tff, best_tff = recorded.tuning_row(tuning, split), recorded.tuning_row(tuning, best)
    best_screen = recorded.screen_row(screen, best)
    diverged, seeds = recorded.screen_seeds(best_screen)
    grid = {
        recorded.changed_from_split_alone(run): run for run in load_script("screen_exercise1").GRID
    }
    top = recorded.screen_shown(screen, top=6)
    rates = {grid[label].reconstruction_lr for label in top[recorded.CHANGED]} - {
        split.reconstruction_lr
    }
    # The notebook shows the files' tables, and says the same in its summary.
    shown = stored_outputs("04_exercises_solutions", "text/markdown")
    assert recorded.tuning_markdown(tuning) in shown
    assert recorded.screen_markdown(screen, top=6) in shown
    [summary] = [text for text in shown if text.startswith("- **Exercise 1**")]
    found = re.search(
        r"the split alone scores ([\d.]+) on the test users\..* TFF reaches ([\d.]+) on the "
        r"validation users and ([\d.]+) on the test users \(its simulated seeds scored "
        r"([\d.]+) to ([\d.]+) on test\)\. Above, the simulator's run scores ([\d.]+) on "
        r"validation and ([\d.]+) on test",
        summary,
    )
    assert found, summary
    tff_numbers = (split_tff.test_accuracy, best_tff.val_accuracy, best_tff.test_accuracy)
    assert found.groups()[:3] == tuple(f"{x:.4f}" for x in tff_numbers)
    assert found.groups()[3:5] == tuple(
        f"{best_screen[f'test accuracy ({x})']:.4f}" for x in ("min", "max")
    )
    simulated_val, simulated_test = found.groups()[5:]
    source = "".join(
        "".join(c["source"])
        for c in notebook_cells("04_exercises_solutions")
        if c["cell_type"] == "code"
    )
    every = re.search(r'engine="simulator", eval_every=(\d+)', source).group(1)
    # "Doubling the server or the client rate diverges."
    for rate in ("server_lr", "client_lr"):
        doubled = tuning.index[tuning[rate] == 2 * getattr(split, rate)]
        assert len(doubled) and recorded.diverged(tuning)[doubled].all(), rate
    assert (split.server_lr, split.client_lr, split.reconstruction_lr) == (
        config.WALKTHROUGH_RUN.server_lr,
        config.WALKTHROUGH_RUN.client_lr,
        config.WALKTHROUGH_RUN.reconstruction_lr,
    )
    assert diverged == 0
    minutes = f"{best_tff.minutes:.0f} minutes"
    phrases = [
        f"Exercise 1's split ({split.recon_epochs} reconstruction epochs capped at "
        f"{split.recon_steps_max} steps, {split.post_recon_epochs} post-reconstruction epoch "
        f"capped at {split.post_recon_steps_max} steps) with the walkthrough's rates and "
        f"{split.num_rounds} rounds of {split.clients_per_round} clients reaches a test rating "
        f"accuracy of {split_tff.test_accuracy:.4f} ({config.FULL.max_clients} users;",
        f"the simulator of notebook 05, {len(grid)} of them with {seeds} seeds each",
        f"then {best.recon_epochs} reconstruction epochs instead of {split.recon_epochs} and a "
        f"reconstruction rate of {min(rates)} to {max(rates)}.",
        f"The chosen run, {best.recon_epochs} reconstruction epochs at a rate of "
        f"{best.reconstruction_lr} and {best.num_rounds} rounds of {best.clients_per_round} "
        f"clients, scored a test rating accuracy of {best_screen['test accuracy (mean)']:.4f} "
        f"on average over the {seeds} simulated seeds "
        f"({best_screen['test accuracy (min)']:.4f} to {best_screen['test accuracy (max)']:.4f}, "
        "none diverged)",
        f"Confirmed with TFF 0.87, it reaches **{best_tff.val_accuracy:.4f} on validation and "
        f"{best_tff.test_accuracy:.4f} on test users** (in {minutes},",
        f"(at least {exercises.TARGET_VALIDATION_ACCURACY:.2f},",
        f"which takes seconds instead of TFF's {minutes} and scores {simulated_val} on "
        f"validation and {simulated_test} on test users",
        f"scores the validation users every {every} rounds",
    ]
    section = readme_section("Exercise 1, tuned")
    assert unexplained_numbers(section, phrases, ("notebook 05", "exercise 1")) == []
    [row] = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if "04_exercises_solutions](" in line
    ]
    for phrase in (
        f"a screen of {len(grid)} candidates with the simulator",
        f"(with TFF it takes {minutes}:",
        f"scored every {every} rounds",
    ):
        assert phrase in row, phrase


def test_the_beyond_section_is_notebook_06s():
    """Every number of "Beyond the walkthrough" is one notebook 06 stored, as it shows it."""
    notebook = "06_beyond_the_tutorial"
    out = stored_text(notebook)
    users = re.search(r"^Train / validation / test users: (\d+) (\d+) (\d+)$", out, re.M)
    no_fold_in = re.search(r"^Unseen users' RMSE without the fold-in: ([\d.]+)$", out, re.M)
    hits = re.search(
        r"holds a liked held-out movie for (\d+%) of unseen users, the most popular movies "
        r"for (\d+%)",
        out,
    )
    top_n = re.search(r"num_recommendations=(\d+)", out).group(1)
    [traffic] = [t for t in stored_outputs(notebook, "text/markdown") if "Sent dense" in t]
    dense = re.search(r"item matrix is ([\d.]+ MB) each way against ([\d.]+ MB)", traffic)
    sparse = re.search(r"Sent sparsely, ([\d,]+) bytes against ([\d,]+)", traffic)
    assert users and no_fold_in and hits and dense and sparse

    # The pivot of the steps table: a row of metrics, one of rounds, one naming the index.
    metrics_row, rounds_row, _, *rows = next(
        t for t in stored_tables(notebook) if "rating_accuracy" in t[0]
    )
    steps = {
        (metric, budget, row[0]): cell
        for row in rows
        for metric, budget, cell in zip(metrics_row[1:], rounds_row[1:], row[1:])
    }
    columns = ["method", "rounds", "seen rmse", "seen accuracy", "unseen rmse", "unseen accuracy"]
    methods = {
        (row["method"], row["rounds"]): row
        for row in stored_frame(
            notebook, [*columns, "seen with stored embedding", "unseen with stored embedding"]
        )
    }
    lists = {
        (row["method"], row["users"]): row
        for row in stored_frame(
            notebook,
            [
                "method",
                "users",
                "users with a liked movie",
                "hit rate",
                "precision",
                "list overlap",
            ],
        )
    }
    budgets = sorted({int(b) for m, b in methods if b.isdigit()})
    last = str(budgets[-1])
    fed, stateful, als = "FedRecon (stateless)", "Stateful + fold-in", "Centralized (ALS)"
    # The first budget after which most seen users have had a stored embedding.
    most = next(
        str(b)
        for b in budgets
        if float(methods[stateful, str(b)]["seen with stored embedding"]) > 0.5
    )
    # What the prose says in words: the stateful model trails, then roughly ties; the most
    # popular list hits more often; FedRecon's lists overlap more than ALS', less than popular.
    seen = {
        b: (float(methods[stateful, b]["seen rmse"]), float(methods[fed, b]["seen rmse"]))
        for b in (most, last)
    }
    assert seen[most][0] > seen[most][1] and abs(seen[last][0] - seen[last][1]) < 0.02
    unseen = {name: lists[name, "unseen"] for name in (fed, als, "Most popular")}
    assert float(unseen["Most popular"]["hit rate"]) > float(unseen[fed]["hit rate"])
    overlap = [float(unseen[name]["list overlap"]) for name in (als, fed, "Most popular")]
    assert overlap == sorted(overlap)
    assert "4 or 5 stars" in "".join("".join(c["source"]) for c in notebook_cells(notebook))

    def at(budget, count):
        return steps["rmse", budget, count], steps["rating_accuracy", budget, count]

    phrases = [
        "split {} / {} / {}, the paper's protocol".format(*users.groups()),
        f"after {last} rounds, 20 reconstruction steps give test RMSE {at(last, '20')[0]} and "
        f"rating accuracy {at(last, '20')[1]}, and 50 steps give {at(last, '50')[0]} / "
        f"{at(last, '50')[1]}; centralized ALS on the same split gets "
        f"{methods[als, '<NA>']['unseen rmse']} / {methods[als, '<NA>']['unseen accuracy']}.",
        f"(test RMSE {no_fold_in.group(1)} with the initial one)",
        f"With it, test users get RMSE {methods[stateful, last]['unseen rmse']} and accuracy "
        f"{methods[stateful, last]['unseen accuracy']} after {last} rounds, against FedRecon's "
        f"{methods[fed, last]['unseen rmse']} / {methods[fed, last]['unseen accuracy']};",
        f"(RMSE {seen[most][0]:.3f} against {seen[most][1]:.3f} after {most} rounds, when "
        f"{float(methods[stateful, most]['seen with stored embedding']):.1%} have been) and "
        f"roughly ties after {last} rounds ({seen[last][0]:.3f} against {seen[last][1]:.3f}).",
        f"hold a liked held-out movie (4 or 5 stars) in the top {top_n} for {hits.group(2)} of "
        f"them and FedRecon's lists for {hits.group(1)} (ALS' hit rate: "
        f"{unseen[als]['hit rate']}),",
        f"(mean Jaccard {unseen[fed]['list overlap']}) than ALS' ({unseen[als]['list overlap']}), "
        f"less than the popular ones ({unseen['Most popular']['list overlap']}).",
        f"FedRecon's item matrix is {dense.group(1)} each way per client per round against "
        f"{dense.group(2)} for a fully global model",
        f"sends {sparse.group(1)} against {sparse.group(2)} bytes.",
    ]
    section = readme_section("Beyond the walkthrough")
    assert unexplained_numbers(section, phrases, ("Notebook 06",)) == []


def test_the_live_exploration_section_is_notebook_08s():
    out = stored_text("08_live_exploration")
    runs = {
        halves: re.search(
            rf"^(\d+) rounds of (\d+) clients, {halves} halves: test RMSE ([\d.]+), rating "
            r"accuracy ([\d.]+),",
            out,
            re.M,
        ).groups()
        for halves in ("disjoint", "shared")
    }
    rounds, _, rmse, accuracy = runs["disjoint"]
    assert runs["shared"][:2] == runs["disjoint"][:2]
    phrases = [
        f"the paper's protocol cut to {rounds} rounds, reaches test RMSE {rmse} and rating "
        f"accuracy {accuracy}; with shared halves, {runs['shared'][2]} and {runs['shared'][3]} "
        "(notebook 08's stored outputs,",
        f"times a {rounds}-round run against the goal of one second.",
    ]
    section = readme_section("Live exploration")
    assert unexplained_numbers(section, phrases, ("Notebook 08", "127.0.0.1")) == []
