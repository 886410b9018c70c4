"""Results of runs too long to repeat in a notebook, recorded as CSV files in ``results/``.

Exercise 1 was tuned with TFF (``scripts/tune_exercise1.py``) after a screen of candidates
with the simulator (``scripts/screen_exercise1.py``). Both scripts write their table into
:data:`RESULTS_DIR` (:func:`add_output_option`), and the solutions notebook and the tests
of ``docs/results.md`` read them back:

- :func:`load_tuning` and :func:`load_screen` read a file and check every column; a clear
  error names the file when it is missing or malformed;
- :func:`tuning_row` and :func:`screen_row` find the row of one :class:`config.FedReconRun`;
- :func:`tuning_markdown` and :func:`screen_markdown` give the tables the notebook shows.

The files belong to a checkout of the project: an installed copy of the package (as in
Colab) has none, which :func:`available` tells.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pandas as pd

from tutorial_utils import config, data
from tutorial_utils.plumbing import links, markdown, settings
from tutorial_utils.simulation import runs

RESULTS_DIR = settings.results_dir()
RESULTS_URL = f"https://github.com/{links.GITHUB_REPOSITORY}/tree/{links.GITHUB_BRANCH}/results"
TUNING_FILE = RESULTS_DIR / "exercise1_tuning.csv"
SCREEN_FILE = RESULTS_DIR / "exercise1_screen.csv"
SEEDS_FILE = RESULTS_DIR / "exercise1_seeds.csv"
TUNING_SCRIPT = "scripts/tune_exercise1.py"
SCREEN_SCRIPT = "scripts/screen_exercise1.py"
SEEDS_SCRIPT = "scripts/seeds_exercise1.py"

# The tuning file: one row per run, named in the ``run`` column; the run's parameters, its
# scores (a diverged run has no losses) and its minutes.
RUN_FIELDS = tuple(field.name for field in dataclasses.fields(config.FedReconRun))
LOSSES = ("val_loss", "test_loss")
ACCURACIES = ("val_accuracy", "test_accuracy")
TUNING_COLUMNS = (*RUN_FIELDS, "val_loss", "val_accuracy", "test_loss", "test_accuracy", "minutes")

# The screen file: one row per candidate, what it changes from the split alone, its budget,
# accuracies over the seeds that did not diverge, and how many seeds diverged.
CHANGED = "changed from the split alone"
SCREEN_ACCURACIES = (
    "val accuracy (mean)",
    "test accuracy (mean)",
    "test accuracy (min)",
    "test accuracy (max)",
)
SCREEN_COLUMNS = (CHANGED, "client-rounds", *SCREEN_ACCURACIES, "diverged")
SPLIT_ALONE_LABEL = "(nothing: the split alone)"

# The seeds file: one row per run and seed, the split alone's and the tuned run's.
SPLIT_ALONE_NAME, TUNED_NAME = "split alone", "tuned"
SEEDS_COLUMNS = ("run", CHANGED, "seed", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
_SEEDS = re.compile(r"^(\d+) of (\d+)$")

# The split alone's validation rating accuracy over the seeds of results/exercise1_seeds.csv
# (the simulator; tests/test_recorded.py keeps the two equal). Constants, so that the check
# also works where results/ is not installed (Colab).
SPLIT_ALONE_SIMULATED = {"seeds": 10, "mean": 0.3932, "min": 0.3851, "max": 0.4017}
# The same with TFF 0.87, one run (seed 42): the split_alone row of
# results/exercise1_tuning.csv, written by scripts/tune_exercise1.py.
SPLIT_ALONE_VALIDATION_ACCURACY = 0.3930


def split_alone_spread(engine: str = "simulator") -> str:
    """Where the split alone lands, for the runs of ``engine``: the simulator's spread over
    seeds, or TFF's one recorded run."""
    if engine == "simulator":
        spread = SPLIT_ALONE_SIMULATED
        return (
            f"{spread['min']:.4f} to {spread['max']:.4f} over {spread['seeds']} seeds "
            f"(mean {spread['mean']:.4f})"
        )
    return f"{SPLIT_ALONE_VALIDATION_ACCURACY:.4f} in TFF's one recorded run"


def changed_from_split_alone(run: config.FedReconRun) -> str:
    """What ``run`` changes from exercise 1's split alone (``config.SPLIT_ALONE``), as the
    tables name it, e.g. ``recon lr 0.5, rounds 200``."""
    if run == config.SPLIT_ALONE:
        return SPLIT_ALONE_LABEL
    return config.changes_from(run, config.SPLIT_ALONE)


def add_output_option(parser: argparse.ArgumentParser, stem: str) -> None:
    """A script's ``--output`` folder for ``<stem>.csv``: :data:`RESULTS_DIR` unless given,
    so that a new run updates the record."""
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        help=f"folder for {stem}.csv (default: results/, the recorded results)",
    )


def load_movielens_for_script() -> runs.MovieLensData:
    """The data a recording script measures on, with a warning when they are synthetic."""
    source = data.find_movielens()
    if source.is_synthetic:
        print("Warning: these are synthetic data; the numbers say nothing about MovieLens 1M.")
    return runs.MovieLensData(source, *data.load_movielens(source))


def simulated_run(run: config.FedReconRun, movielens: runs.MovieLensData, seed: int):
    """One run as the screen and the seeds script record it: the simulator, on the users of
    the full configuration (``config.FULL``), drawing with ``seed``; a ``runs.RunResult``."""
    return runs.train_and_score(
        run, movielens, engine="simulator", base=config.FULL, seed=seed, progress=False
    )


def available() -> bool:
    """True when exercise 1's three files are here (in a checkout or an installed copy)."""
    return TUNING_FILE.is_file() and SCREEN_FILE.is_file() and SEEDS_FILE.is_file()


def missing_message() -> str:
    """What to say where the files are not installed (e.g. in Colab)."""
    return (
        f"The recorded results are not part of this installation ({RESULTS_DIR} is missing); "
        f"they are in the project's results/ folder: {RESULTS_URL}"
    )


def _read(path: Path, columns: tuple[str, ...], script: str, index_col=None) -> pd.DataFrame:
    """The CSV table at ``path`` with at least ``columns``, or an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {script} writes it (see results/README.md)."
        )
    try:
        table = pd.read_csv(path, index_col=index_col)
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors included
        raise ValueError(f"{path} is not a table written by {script}: {error}") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(
            f"{path} is not a table written by {script}: it has no column "
            f"{', '.join(repr(column) for column in missing)}."
        )
    if table.empty:
        raise ValueError(f"{path} has no rows: run {script} to fill it.")
    table = table[list(columns)].copy()
    table.attrs["path"] = str(path)
    return table


def _numbers(table: pd.DataFrame, columns, path: Path, label) -> None:
    """Makes ``columns`` of ``table`` numeric in place, or names the first bad cell."""
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = table.index[bad.argmax()]
            raise ValueError(
                f"{path}: {column!r} of {label(row)} is {table[column][row]!r}, not a number."
            )
        table[column] = values.astype(float)


def run_of(row: pd.Series) -> config.FedReconRun:
    """The :class:`config.FedReconRun` that a row of the tuning table describes."""
    values = {}
    for field in dataclasses.fields(config.FedReconRun):
        value = row[field.name]
        if pd.isna(value):
            values[field.name] = None
        elif isinstance(field.default, float):
            values[field.name] = float(value)
        else:
            values[field.name] = int(value)
    return config.FedReconRun(**values)


def load_tuning(path: Path = TUNING_FILE) -> pd.DataFrame:
    """The TFF tuning runs of exercise 1, indexed by run name, with :data:`TUNING_COLUMNS`.

    Raises FileNotFoundError or ValueError, naming the file, when it is missing, is not
    such a table, or holds a value that cannot be right (a duplicated run, a parameter a
    run cannot have, an accuracy outside 0 to 1 or without its loss, no minutes).
    """
    path = Path(path)
    table = _read(path, TUNING_COLUMNS, TUNING_SCRIPT, index_col="run")
    if table.index.duplicated().any():
        raise ValueError(f"{path}: the run {table.index[table.index.duplicated()][0]!r} repeats.")
    _numbers(table, TUNING_COLUMNS, path, lambda run: f"run {run!r}")
    for name, row in table.iterrows():
        try:
            run_of(row)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: run {name!r} has impossible parameters: {error}") from None
        if pd.isna(row["minutes"]) or row["minutes"] < 0:
            raise ValueError(f"{path}: run {name!r} has no time in minutes.")
        for loss, accuracy in zip(LOSSES, ACCURACIES):
            if pd.isna(row[accuracy]):
                if not pd.isna(row[loss]):
                    raise ValueError(f"{path}: run {name!r} has a {loss} but no {accuracy}.")
            elif not 0 <= row[accuracy] <= 1:
                raise ValueError(f"{path}: the {accuracy} of run {name!r} is not between 0 and 1.")
    return table


def load_screen(path: Path = SCREEN_FILE) -> pd.DataFrame:
    """The simulator's screen of exercise 1's candidates, one row each, with
    :data:`SCREEN_COLUMNS`.

    Raises FileNotFoundError or ValueError, naming the file, when it is missing, is not
    such a table, or holds a value that cannot be right (a candidate twice, ``diverged``
    not ``k of n``, accuracies missing although some seeds did not diverge).
    """
    path = Path(path)
    table = _read(path, SCREEN_COLUMNS, SCREEN_SCRIPT)
    label = table[CHANGED]
    if label.isna().any() or label.duplicated().any():
        raise ValueError(f"{path}: every row needs its own {CHANGED!r}.")
    _numbers(table, ("client-rounds", *SCREEN_ACCURACIES), path, lambda i: repr(label[i]))
    budget = table["client-rounds"]
    if budget.isna().any() or (budget % 1 != 0).any() or (budget < 1).any():
        raise ValueError(f"{path}: 'client-rounds' must be a whole number of client updates.")
    table["client-rounds"] = budget.astype(int)
    for i, row in table.iterrows():
        diverged, seeds = screen_seeds(row, path)
        complete = row[list(SCREEN_ACCURACIES)].notna()
        if diverged < seeds and not complete.all():
            raise ValueError(f"{path}: {label[i]!r} has seeds that did not diverge, no accuracy.")
        if not row[list(SCREEN_ACCURACIES)].dropna().between(0, 1).all():
            raise ValueError(f"{path}: an accuracy of {label[i]!r} is not between 0 and 1.")
    return table


def screen_seeds(row: pd.Series, path="the screen") -> tuple[int, int]:
    """``(diverged, seeds)`` of one screen row, from its ``diverged`` cell (``2 of 5``)."""
    match = _SEEDS.match(str(row["diverged"]))
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError(
            f"{path}: 'diverged' of {row[CHANGED]!r} is {row['diverged']!r}, not 'k of n'."
        )
    return int(match.group(1)), int(match.group(2))


def tuning_row(table: pd.DataFrame, run: config.FedReconRun) -> pd.Series:
    """The row of ``table`` (from :func:`load_tuning`) whose parameters are ``run``'s; its
    ``name`` is the run's name."""
    for _, row in table.iterrows():
        if run_of(row) == run:
            return row
    raise ValueError(
        f"{table.attrs.get('path', 'the tuning table')} has no run with the parameters of "
        f"{run} ({changed_from_split_alone(run)}): run {TUNING_SCRIPT} for it."
    )


def screen_row(table: pd.DataFrame, run: config.FedReconRun) -> pd.Series:
    """The row of ``table`` (from :func:`load_screen`) of the candidate ``run``."""
    rows = table[table[CHANGED] == changed_from_split_alone(run)]
    if rows.empty:
        raise ValueError(
            f"{table.attrs.get('path', 'the screen')} has no candidate "
            f"{changed_from_split_alone(run)!r}."
        )
    return rows.iloc[0]


def diverged(table: pd.DataFrame) -> pd.Series:
    """Per run of the tuning table: did training diverge (no validation loss)?"""
    return table["val_loss"].isna()


def tuning_table(table: pd.DataFrame) -> pd.DataFrame:
    """The tuning runs as the notebook shows them, in the order of ``table``: what each
    changes, its accuracies (``diverged`` where it diverged), losses and minutes."""
    gone = diverged(table)
    return pd.DataFrame(
        {
            CHANGED: [changed_from_split_alone(run_of(row)) for _, row in table.iterrows()],
            "val accuracy": table["val_accuracy"].astype(object).mask(gone, "diverged"),
            "test accuracy": table["test_accuracy"].astype(object).mask(gone, "diverged"),
            "val loss": table["val_loss"],
            "test loss": table["test_loss"],
            "minutes": table["minutes"],
        },
        index=table.index.rename("run"),
    )


def tuning_markdown(table: pd.DataFrame) -> str:
    """:func:`tuning_table` as Markdown (a missing loss reads ``NaN``)."""
    return markdown.markdown_table(
        tuning_table(table),
        index=True,
        formats={"minutes": "{:.1f}"},
        missing="NaN",
        align="llrrrrr",
    )


def screen_shown(table: pd.DataFrame, top: int = 6) -> pd.DataFrame:
    """The ``top`` candidates by mean validation accuracy, then the split alone if it is
    not among them."""
    ranked = table.sort_values("val accuracy (mean)", ascending=False, kind="stable")
    shown = ranked.head(top)
    split_alone = ranked[ranked[CHANGED] == SPLIT_ALONE_LABEL]
    if not split_alone.index.isin(shown.index).all():
        shown = pd.concat([shown, split_alone])
    return shown.reset_index(drop=True)


def screen_markdown(table: pd.DataFrame, top: int = 6) -> str:
    """:func:`screen_shown` as Markdown (``-`` where every seed diverged)."""
    return markdown.markdown_table(screen_shown(table, top))


def load_seeds(path: Path = SEEDS_FILE) -> pd.DataFrame:
    """The simulator's runs of the split alone and the tuned run, one row per run and seed,
    with :data:`SEEDS_COLUMNS`.

    Raises FileNotFoundError or ValueError, naming the file, when it is missing, is not
    such a table, or holds a value that cannot be right (a run and seed twice, a run other
    than the two, an accuracy outside 0 to 1).
    """
    path = Path(path)
    table = _read(path, SEEDS_COLUMNS, SEEDS_SCRIPT)
    unknown = set(table["run"]) - {SPLIT_ALONE_NAME, TUNED_NAME}
    if unknown:
        raise ValueError(f"{path}: unknown runs {sorted(unknown)}.")
    _numbers(table, ("seed", *SEEDS_COLUMNS[3:]), path, lambda i: f"row {i + 2}")
    if table.duplicated(["run", "seed"]).any():
        raise ValueError(f"{path}: a run has the same seed twice.")
    if not table[["val_accuracy", "test_accuracy"]].stack().between(0, 1).all():
        raise ValueError(f"{path}: an accuracy is not between 0 and 1.")
    table["seed"] = table["seed"].astype(int)
    return table


def seeds_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per run of the seeds table: how many seeds, how many diverged (no validation loss),
    and the validation and test accuracies over the others (mean, lowest, highest)."""
    rows = []
    for name, seed_rows in table.groupby("run", sort=False):
        kept = seed_rows[seed_rows["val_loss"].notna()]
        row = {"run": name, CHANGED: seed_rows[CHANGED].iloc[0], "seeds": len(seed_rows)}
        row["diverged"] = len(seed_rows) - len(kept)
        for column, label in (("val_accuracy", "val"), ("test_accuracy", "test")):
            row[f"{label} accuracy (mean)"] = kept[column].mean()
            row[f"{label} accuracy (min)"] = kept[column].min()
            row[f"{label} accuracy (max)"] = kept[column].max()
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def seeds_markdown(table: pd.DataFrame) -> str:
    """:func:`seeds_summary` as Markdown, accuracies to 4 decimals."""
    summary = seeds_summary(table).drop(columns=CHANGED)
    return markdown.markdown_table(summary, index=True)
