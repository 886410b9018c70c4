"""The results of the README and of ``docs/`` (``docs/results.md``, ``docs/speed.md``,
``docs/notebooks.md``) come from the notebooks' stored outputs, from what the walkthrough
printed (``tutorial_utils.plumbing.walkthrough``) and from ``results/``, never from typed
numbers."""

import ast
import dataclasses
import importlib.util
import json
import re
from html.parser import HTMLParser

import pytest

from tutorial_utils import config
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import settings, walkthrough

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


def page_text(page: str) -> str:
    """A Markdown page of the project, by its path from the project root."""
    return (ROOT / page).read_text()


def page_section(page: str, title: str) -> str:
    """The text of ``page`` under its one heading ``title`` (``##`` or deeper), up to the
    next such heading."""
    parts = re.split(rf"^##+ {re.escape(title)}\n", page_text(page), flags=re.M)
    assert len(parts) == 2, f"{page} must have one heading {title!r}"
    return re.split(r"^##+ ", parts[1], flags=re.M)[0]


def unexplained_numbers(section: str, phrases: list[str], allowed: tuple[str, ...] = ()):
    """Checks that every phrase is in ``section`` (whitespace aside), then returns the
    numbers left in its prose once the phrases, code and ``allowed`` words are taken out:
    every number of a checked section must be in a checked phrase."""
    text = " ".join(section.split())
    text = re.sub(r"`[^`]*`", " ", re.sub(r"```.*?```", " ", text))
    for phrase in phrases:
        assert phrase in text, f"the page does not say: {phrase}"
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
    section = page_section("README.md", "Results")
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


def test_the_overlap_paragraph_of_the_results_page_is_notebook_03s():
    out = stored_text("03_training_and_evaluation")
    scored, shared, share = re.search(
        r"Scored validation ratings: (\d+); also used for reconstruction: (\d+) \(([\d.]+)%\)", out
    ).groups()
    disjoint = table_rows(out, "disjoint halves")
    numbers = {
        name: [row[-1] for row in (disjoint[f"{name} loss"], disjoint[f"{name} rating accuracy"])]
        for name in ("validation", "test")
    }
    page = " ".join(page_section("docs/results.md", "What evaluation reads").split())
    assert f"{shared} of the {scored} scored validation ratings ({share}%)" in page
    assert (
        f"validation {numbers['validation'][0]:.4f} / {numbers['validation'][1]:.4f} and test "
        f"{numbers['test'][0]:.4f} / {numbers['test'][1]:.4f}"
    ) in page


def test_the_simulators_test_scores_on_the_speed_page_are_notebook_05s():
    out = stored_text("05_fast_simulation")
    sampled, rmse, accuracy = re.search(
        r"^The protocol's test score \((\d+) sampled test users\): RMSE ([\d.]+), "
        r"rating accuracy ([\d.]+)$",
        out,
        re.M,
    ).groups()
    users, all_rmse, all_accuracy = re.search(
        r"^All (\d+) test users: RMSE ([\d.]+), rating accuracy ([\d.]+)$", out, re.M
    ).groups()
    found = re.findall(
        rf"^(.+): RMSE ([+-][\d.]+) on all {users} test users, ([+-][\d.]+) on the "
        rf"{sampled} sampled$",
        out,
        re.M,
    )
    changes = {name: on_all for name, on_all, _ in found}
    on_sampled = [on_100 for _, _, on_100 in found]
    file_order = changes["first 300 in file order, one fixed order"]
    new_order = changes["seeded shuffle, keep 300, a new order every pass"]
    both = changes["first 300 in file order, a new order every pass"]
    # What the page says in words: every choice lowers the RMSE, both together the most,
    # and on the sampled users exactly one of the same changes flips sign.
    assert all(float(change) < 0 for change in changes.values()) and len(changes) == 3
    assert float(both) == min(float(change) for change in changes.values())
    assert sum(float(change) > 0 for change in on_sampled) == 1
    page = " ".join(page_section("docs/speed.md", "Faster training without TFF").split())
    assert (
        f"on all {users} test users, in one training run each (one seed), each of them gives a "
        f"lower RMSE than the paper's choices: by {file_order[1:]} with the first 300 ratings in "
        f"file order, {new_order[1:]} with a new order every pass and {both[1:]} with both, "
        f"differences small enough that another seed may not keep them; on the {sampled} sampled "
        f"test users the same changes are {', '.join(on_sampled)}: one flips sign, so that score "
        f"cannot tell these choices apart."
    ) in page
    assert (
        f"on {sampled} sampled test users, it reaches **RMSE {rmse} and rating accuracy "
        f"{accuracy}**; on all {users} test users, RMSE {all_rmse} and rating accuracy "
        f"{all_accuracy}."
    ) in page
    assert "google-research/federated" in page


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
    """The exercise 1 numbers of docs/results.md, and of the solutions notebook's row in
    docs/notebooks.md, come from results/ (the seeds, the screen, TFF's runs), from the
    solutions notebook's stored outputs (which show those files, and the simulator's runs)
    and from the settings of the runs and of the check."""
    exercises = pytest.importorskip("tutorial_utils.exercises.checks")
    tuning, screen = recorded.load_tuning(), recorded.load_screen()
    seed_runs = recorded.load_seeds()
    spread = recorded.seeds_summary(seed_runs)
    split_seeds = spread.loc[recorded.SPLIT_ALONE_NAME]
    tuned_seeds = spread.loc[recorded.TUNED_NAME]
    split, best = config.SPLIT_ALONE, config.EXERCISES_FULL.tuned
    split_tff, best_tff = recorded.tuning_row(tuning, split), recorded.tuning_row(tuning, best)
    _, screen_seeds = recorded.screen_seeds(recorded.screen_row(screen, best))
    grid = {
        recorded.changed_from_split_alone(run): run for run in load_script("screen_exercise1").GRID
    }
    top = recorded.screen_shown(screen, top=6)
    rates = {grid[label].reconstruction_lr for label in top[recorded.CHANGED]} - {
        split.reconstruction_lr
    }
    # The notebook shows the files' tables in its appendix, and its summary says what the
    # simulator's runs with seeds 0, 1 and 2 scored.
    shown = stored_outputs("04_exercises_solutions", "text/markdown")
    for table in (
        recorded.tuning_markdown(tuning),
        recorded.screen_markdown(screen, top=6),
        recorded.seeds_markdown(seed_runs),
    ):
        assert table in shown
    [summary] = [text for text in shown if text.startswith("- **Exercise 1**")]
    found = re.search(
        r"over seeds \[0, 1, 2\], the split alone scores a mean validation accuracy of "
        r"([\d.]+) and the tuned run ([\d.]+), every seed of it above the goal of ([\d.]+)",
        summary,
    )
    assert found, summary
    notebook_split, notebook_tuned, goal = found.groups()
    assert goal == f"{exercises.TARGET_VALIDATION_ACCURACY:.2f}"
    assert recorded.split_alone_spread() in summary
    # The notebook's runs are rows of the seeds record: the same seeds, the same scores.
    for name, value in (
        (recorded.SPLIT_ALONE_NAME, notebook_split),
        (recorded.TUNED_NAME, notebook_tuned),
    ):
        rows = seed_runs[(seed_runs["run"] == name) & seed_runs["seed"].isin([0, 1, 2])]
        assert abs(rows["val_accuracy"].mean() - float(value)) < 1e-3, name
    source = "".join(
        "".join(c["source"])
        for c in notebook_cells("04_exercises_solutions")
        if c["cell_type"] == "code"
    )
    every = re.search(r"eval_every=(\d+)", source).group(1)
    assert "seeds = [0, 1, 2]" in source
    # "With a reconstruction rate of 0.5, doubling the server or the client rate diverged,
    # in one TFF run each."
    doubled_rates = set()
    for rate in ("server_lr", "client_lr"):
        doubled = tuning.index[tuning[rate] == 2 * getattr(split, rate)]
        assert len(doubled) == 1 and recorded.diverged(tuning)[doubled].all(), rate
        doubled_rates.update(tuning.loc[doubled, "reconstruction_lr"])
    [doubled_at] = doubled_rates
    # Five reconstruction epochs against three, at that rate and the largest budget: the
    # diverged seeds of each, and a gain in accuracy smaller than the spread between seeds.
    largest = max(run.clients_per_round * run.num_rounds for run in grid.values())
    screened = set(screen[recorded.CHANGED])
    at_rate = {
        run.recon_epochs: recorded.screen_seeds(recorded.screen_row(screen, run))[0]
        for run in grid.values()
        if recorded.changed_from_split_alone(run) in screened
        and run.reconstruction_lr == doubled_at
        and run.clients_per_round * run.num_rounds == largest
        and run.recon_epochs in (split.recon_epochs, best.recon_epochs)
    }
    assert at_rate[best.recon_epochs] == 0 < at_rate[split.recon_epochs]
    gains = [
        recorded.screen_row(screen, run)["val accuracy (mean)"]
        - recorded.screen_row(screen, dataclasses.replace(run, recon_epochs=split.recon_epochs))[
            "val accuracy (mean)"
        ]
        for run in grid.values()
        if run.recon_epochs == best.recon_epochs
        and recorded.changed_from_split_alone(run) in screened
        and recorded.changed_from_split_alone(
            dataclasses.replace(run, recon_epochs=split.recon_epochs)
        )
        in screened
    ]
    seed_spread = seed_runs[seed_runs["run"] == recorded.SPLIT_ALONE_NAME]["val_accuracy"].std()
    assert gains and max(abs(g) for g in gains) < seed_spread
    screen_best = screen["val accuracy (mean)"].max()
    behind = screen_best - recorded.screen_row(screen, best)["val accuracy (mean)"]
    tuned_rows = seed_runs[seed_runs["run"] == recorded.TUNED_NAME]
    diverged_seeds = tuned_rows.loc[tuned_rows["val_accuracy"] == 0, "seed"].tolist()
    assert (split.server_lr, split.client_lr, split.reconstruction_lr) == (
        config.WALKTHROUGH_RUN.server_lr,
        config.WALKTHROUGH_RUN.client_lr,
        config.WALKTHROUGH_RUN.reconstruction_lr,
    )
    assert split_seeds["seeds"] == tuned_seeds["seeds"] and split_seeds["diverged"] == 0
    minutes = f"{best_tff.minutes:.0f} minutes"
    phrases = [
        f"Exercise 1's split ({split.recon_epochs} reconstruction epochs capped at "
        f"{split.recon_steps_max} steps, {split.post_recon_epochs} post-reconstruction epoch "
        f"capped at {split.post_recon_steps_max} steps) with the walkthrough's rates and "
        f"{split.num_rounds} rounds of {split.clients_per_round} clients is the split alone "
        f"({config.FULL.max_clients} users;",
        f"Trained by the simulator of notebook 05 with {split_seeds['seeds']} seeds, its "
        f"validation rating accuracy ranges from {split_seeds['val accuracy (min)']:.4f} to "
        f"{split_seeds['val accuracy (max)']:.4f} (mean {split_seeds['val accuracy (mean)']:.4f});"
        f" one TFF 0.87 run scores {split_tff.val_accuracy:.4f}.",
        f"a mean of at least {exercises.TARGET_VALIDATION_ACCURACY:.2f} over "
        f"{exercises.MIN_SEEDS} seeds with none diverged, lies above every one of those seeds",
        f"{len(grid)} of them with {screen_seeds} seeds each",
        f"A TFF run of the split alone took {split_tff.minutes:.0f} minutes on two cores",
        f"then a reconstruction rate of {min(rates)} to {max(rates)}.",
        f"Going from {split.recon_epochs} to {best.recon_epochs} reconstruction epochs adds "
        f"less than the spread between seeds, but at a reconstruction rate of {doubled_at} "
        f"with the largest budget none of {screen_seeds} seeds diverged with "
        f"{best.recon_epochs} epochs, against {at_rate[split.recon_epochs]} of {screen_seeds} "
        f"with {split.recon_epochs}.",
        f"The chosen run, {best.recon_epochs} reconstruction epochs at a rate of "
        f"{best.reconstruction_lr} and {best.num_rounds} rounds of {best.clients_per_round} "
        f"clients, is the one confirmed with TFF 0.87: it reaches **{best_tff.val_accuracy:.4f} "
        f"on validation and {best_tff.test_accuracy:.4f} on test users** (in {minutes},",
        f"The screen ranks it within {behind:.4f} of its best candidate.",
        f"Over the same {tuned_seeds['seeds']} seeds as the split alone it diverged "
        f"{'once' if tuned_seeds['diverged'] == 1 else str(tuned_seeds['diverged']) + ' times'} "
        f"(seed {', '.join(map(str, diverged_seeds))}); the "
        f"{tuned_seeds['seeds'] - tuned_seeds['diverged']} other seeds score "
        f"{tuned_seeds['val accuracy (min)']:.4f} to {tuned_seeds['val accuracy (max)']:.4f} on "
        f"validation (mean {tuned_seeds['val accuracy (mean)']:.4f}).",
        f"With a reconstruction rate of {doubled_at}, doubling the server or the client rate "
        "diverged, in one TFF run each",
        f"trained by the simulator with seeds 0, 1 and 2, scores a mean validation accuracy of "
        f"{notebook_tuned} against {notebook_split} for the split alone with the same seeds",
        f"scored every {every} rounds",
    ]
    section = page_section("docs/results.md", "Exercise 1, tuned")
    assert unexplained_numbers(section, phrases, ("notebook 05", "exercise 1", "exercise1_")) == []
    [row] = [
        line
        for line in page_section("docs/notebooks.md", "What each notebook teaches").splitlines()
        if "04_exercises_solutions](" in line
    ]
    for phrase in (
        f"a mean validation accuracy of {notebook_tuned} over 3 seeds",
        f"(with TFF it takes {minutes}:",
        f"scored every {every} rounds",
        f"the screen of {len(grid)} candidates",
    ):
        assert phrase in row, phrase


def test_the_beyond_section_is_notebook_06s():
    """Every number of "Beyond the walkthrough" is one notebook 06 stored, as it shows it,
    and every comparison it states in words holds in the stored tables."""
    notebook = "06_beyond_the_tutorial"
    out = stored_text(notebook)
    users = re.search(r"^Train / validation / test users: (\d+) (\d+) (\d+)$", out, re.M)
    no_fitted = re.search(r"^Unseen users' RMSE without a fitted embedding: ([\d.]+)$", out, re.M)
    top_n = re.search(r"num_recommendations=(\d+)", out).group(1)
    regularization = re.search(r"als_regularization=([\d.]+)", out).group(1)
    cap = re.search(r"recon_steps_max=(\d+)", out).group(1)
    [traffic] = [t for t in stored_outputs(notebook, "text/markdown") if "Sent dense" in t]
    dense = re.search(r"item matrix is ([\d.]+ MB) each way against ([\d.]+ MB)", traffic)
    sparse = re.search(
        r"Sent sparsely, a FedRecon client receives ([\d,]+) bytes and sends back ([\d,]+) "
        r".*against ([\d,]+) bytes each way",
        traffic,
    )
    short = re.search(
        r"^Under the protocol's budget \((\d+) passes, at most (\d+) steps\), (\d+%) of the "
        r"test users \(\d+ of \d+, those with at most (\d+) ratings\) get fewer than (\d+) "
        r"reconstruction steps: ([\d.]+) on average \(([\d.]+) over all test users\)$",
        out,
        re.M,
    )
    assert users and no_fitted and dense and sparse and short
    assert "tells the server which movies that user rated" in traffic

    # The pivot of the steps table: a row of metrics, one of rounds, one naming the index.
    metrics_row, rounds_row, _, *rows = next(
        t for t in stored_tables(notebook) if "rating_accuracy" in t[0]
    )
    steps = {
        (metric, budget, row[0]): cell
        for row in rows
        for metric, budget, cell in zip(metrics_row[1:], rounds_row[1:], row[1:])
    }
    columns = ["method", "solver", "rounds", "seen rmse", "seen accuracy", "unseen rmse"]
    columns += ["unseen accuracy", "seen with stored embedding", "unseen with stored embedding"]
    methods = {
        (row["method"], row["solver"], row["rounds"]): row
        for row in stored_frame(notebook, columns)
    }
    lists = {
        (row["method"], row["solver"], row["users"]): row
        for row in stored_frame(
            notebook,
            [
                "method",
                "solver",
                "users",
                "users with a liked movie",
                "hit rate",
                "precision",
                "list overlap",
            ],
        )
    }
    budgets = sorted({int(b) for *_, b in methods if b.isdigit()})
    last = str(budgets[-1])
    fed, stateful, als = "FedRecon (stateless)", "Stateful", "Centralized (ALS)"

    def cell(method, solver, column, rounds=last):
        return methods[method, solver, rounds if method != als else "<NA>"][column]

    # What the prose says in words: with SGD the stateful model beats FedRecon on both groups.
    for group in ("seen", "unseen"):
        rmse = f"{group} rmse"
        assert float(cell(stateful, "SGD", rmse)) < float(cell(fed, "SGD", rmse))
    [budget_table] = [t for t in stored_tables(notebook) if "item steps" in t[0]]
    spent = {row[0]: row[1:] for row in budget_table[2:] if row and row[0] in (fed, stateful)}
    header = budget_table[0][1:]
    steps_col, ratings_col = header.index("item steps"), header.index("ratings in item steps")
    hits = {key: row for key, row in lists.items() if key[1] in ("SGD", "-")}
    unseen_order = [
        float(hits[m, s, "unseen"]["hit rate"])
        for m, s in ((fed, "SGD"), (stateful, "SGD"), ("Most popular", "-"))
    ]
    assert unseen_order == sorted(unseen_order)

    def at(budget, count):
        return steps["rmse", budget, count], steps["rating_accuracy", budget, count]

    def hit(method, solver, group):
        return f"{float(lists[method, solver, group]['hit rate']):.3f}"

    def precision(method, solver, group):
        return f"{float(lists[method, solver, group]['precision']):.3f}"

    def overlap(method, solver, group):
        return f"{float(lists[method, solver, group]['list overlap']):.3f}"

    # Seen users keep their stored or learned embedding: one overlap for both solvers.
    for method in (stateful, als):
        assert overlap(method, "SGD", "seen") == overlap(method, "ridge", "seen")
    # What the prose says in words: FedRecon's lists overlap the most of the three models.
    for group in ("seen", "unseen"):
        for solver in ("SGD", "ridge"):
            assert all(
                float(overlap(fed, solver, group)) > float(overlap(other, solver, group))
                for other in (stateful, als)
            )

    phrases = [
        "split {} / {} / {}, the round of the paper's protocol".format(*users.groups()),
        f"after {last} rounds, 20 reconstruction steps give test RMSE {at(last, '20')[0]} and "
        f"rating accuracy {at(last, '20')[1]}, and 50 steps give {at(last, '50')[0]} / "
        f"{at(last, '50')[1]}.",
        f"To give exactly {short.group(5)} steps the notebook repeats passes over the "
        f"reconstruction half; under the protocol's budget of {short.group(1)} passes, "
        f"{short.group(3)} of test users (those with at most {short.group(4)} ratings) get "
        f"fewer than {short.group(5)} steps, {short.group(6)} on average ({short.group(7)} over "
        "all test users), which is why the comparison below scores the same model "
        f"{cell(fed, 'SGD', 'unseen rmse')} / {cell(fed, 'SGD', 'unseen accuracy')} on unseen "
        "users.",
        f"FedRecon's SGD reconstruction (at most {cap} steps) and an exact ridge fold-in "
        f"(regularization {regularization}, untuned).",
        f"After {last} rounds, with SGD, the stateful model beats FedRecon on seen users (RMSE "
        f"{cell(stateful, 'SGD', 'seen rmse')} against {cell(fed, 'SGD', 'seen rmse')}) and on "
        f"unseen users ({cell(stateful, 'SGD', 'unseen rmse')} against "
        f"{cell(fed, 'SGD', 'unseen rmse')});",
        f"with ridge, FedRecon gets {cell(fed, 'ridge', 'seen rmse')} / "
        f"{cell(fed, 'ridge', 'unseen rmse')} and the stateful model "
        f"{cell(stateful, 'ridge', 'seen rmse')} / {cell(stateful, 'ridge', 'unseen rmse')};",
        f"ALS gets {cell(als, 'ridge', 'seen rmse')} on seen users, and on unseen users "
        f"{cell(als, 'ridge', 'unseen rmse')} with ridge and {cell(als, 'SGD', 'unseen rmse')} "
        "with SGD.",
        f"({spent[stateful][steps_col]} steps, {spent[stateful][ratings_col]} ratings on "
        f"average), a FedRecon client on the half left after reconstruction "
        f"({spent[fed][steps_col]} steps, {spent[fed][ratings_col]} ratings).",
        f"top {top_n} holds a liked held-out movie (4 or 5 stars) for "
        f"{hit(stateful, 'SGD', 'unseen')} of unseen users with the stateful model (SGD, "
        f"precision {precision(stateful, 'SGD', 'unseen')}), {hit(fed, 'SGD', 'unseen')} with "
        f"FedRecon ({precision(fed, 'SGD', 'unseen')}), and "
        f"{hit('Most popular', '-', 'unseen')} with the most popular movies "
        f"({precision('Most popular', '-', 'unseen')}); for seen users, "
        f"{hit(stateful, 'SGD', 'seen')}, {hit(fed, 'SGD', 'seen')} and "
        f"{hit('Most popular', '-', 'seen')}.",
        f"ALS (SGD) reaches {hit(als, 'SGD', 'seen')} of seen and {hit(als, 'SGD', 'unseen')} of "
        "unseen users.",
        f"FedRecon's lists overlap the most: {overlap(fed, 'SGD', 'seen')} / "
        f"{overlap(fed, 'ridge', 'seen')} (SGD / ridge) for seen users and "
        f"{overlap(fed, 'SGD', 'unseen')} / {overlap(fed, 'ridge', 'unseen')} for unseen users, "
        f"against {overlap(stateful, 'SGD', 'seen')} and {overlap(stateful, 'SGD', 'unseen')} / "
        f"{overlap(stateful, 'ridge', 'unseen')} for the stateful model and "
        f"{overlap(als, 'SGD', 'seen')} and {overlap(als, 'SGD', 'unseen')} / "
        f"{overlap(als, 'ridge', 'unseen')} for ALS",
        f"falls back to an initial embedding (test RMSE {no_fitted.group(1)}) unless it adds a "
        f"fitting step; with FedRecon's own SGD fitting, the stateful model scores "
        f"{cell(stateful, 'SGD', 'unseen rmse')} here.",
        f"FedRecon's item matrix is {dense.group(1)} each way per client per round against "
        f"{dense.group(2)} for a fully global model",
        f"a sparse exchange sends a FedRecon client {sparse.group(1)} bytes down and "
        f"{sparse.group(2)} up (only the rows its training step changed), against "
        f"{sparse.group(3)} each way for the fully global model,",
    ]
    section = page_section("docs/results.md", "Beyond the walkthrough")
    assert unexplained_numbers(section, phrases, ("Notebook 06", "notebook 07")) == []


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
    section = page_section("docs/results.md", "Live exploration")
    assert unexplained_numbers(section, phrases, ("Notebook 08", "127.0.0.1")) == []
