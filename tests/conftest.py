"""Shared fixtures: small rating tables and the real data when it is available."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# First, as in the notebooks: it gets TensorFlow Federated ready to import on this stack, so
# that `pytest.importorskip("tensorflow_federated")` skips only where TFF is truly absent.
import tutorial_utils  # noqa: F401
from tutorial_utils import config
from tutorial_utils.plumbing import runtime


def real_data_dir() -> Path | None:
    """The MovieLens 1M folder named by FEDRECON_DATA_DIR, if it exists."""
    value = os.environ.get("FEDRECON_DATA_DIR", "")
    return Path(value) if value and Path(value).exists() else None


requires_real_data = pytest.mark.skipif(
    real_data_dir() is None, reason="FEDRECON_DATA_DIR does not point at MovieLens 1M"
)


@pytest.fixture(scope="module")
def tiny_movielens() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ratings, movies)``: 20 users with 8 ratings each of 15 movies, enough to train
    and score a run in seconds."""
    rng = np.random.default_rng(3)
    ratings = pd.DataFrame(
        [
            (u, int(m), int(rng.integers(1, 6)))
            for u in range(20)
            for m in rng.choice(15, 8, replace=False)
        ],
        columns=["UserID", "MovieID", "Rating"],
    )
    return ratings, pd.DataFrame({"MovieID": range(15)})


@pytest.fixture(scope="module")
def tiny(tiny_movielens):
    """``(ratings, movies, run, base)``: the tiny ratings, a run small enough for them, and
    a base configuration keeping all of their users."""
    ratings, movies = tiny_movielens
    run = config.FedReconRun(
        recon_epochs=2,
        recon_steps_max=3,
        batch_size=2,
        clients_per_round=4,
        num_rounds=5,
        num_latent_factors=3,
    )
    return ratings, movies, run, config.TutorialConfig("tiny", None, 300, run)


@pytest.fixture
def small_ratings() -> pd.DataFrame:
    """Three users with 7, 3 and 12 ratings of 10 movies, users interleaved in file order."""
    rng = np.random.default_rng(0)
    users = np.array([0] * 7 + [1] * 3 + [2] * 12)
    rng.shuffle(users)
    return pd.DataFrame(
        {
            "UserID": users,
            "MovieID": rng.integers(0, 10, size=len(users)),
            "Rating": rng.integers(1, 6, size=len(users)),
            "Timestamp": np.arange(len(users)),
        }
    )


def wait_gone(pid: int, seconds: float = 15.0) -> bool:
    """Whether process ``pid`` has exited within ``seconds``."""

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not runtime.pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def copy_of_checkout(folder: Path) -> Path:
    """A copy of this checkout's sources in ``folder``, to build the package from without
    leaving a build folder in the checkout."""
    source = folder / "source"
    shutil.copytree(
        Path(__file__).resolve().parents[1],
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "output", "data", "build", "*.egg-info", "__pycache__"
        ),
    )
    return source


# The README's table of notebooks: its columns, in order.
README_NOTEBOOK_COLUMNS = ["Notebook", "What you learn", "Minutes to read†", "Run time*", "Colab"]


def markdown_table(text: str, columns: list[str]) -> list[dict[str, str]]:
    """The rows of the one Markdown table of ``text`` headed by exactly ``columns``, each as
    {column: cell}, cells stripped."""

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    lines = text.splitlines()
    starts = [
        i
        for i, line in enumerate(lines[:-1])
        if line.startswith("|") and cells(line) == columns and lines[i + 1].startswith("|-")
    ]
    assert len(starts) == 1, f"{len(starts)} tables are headed {columns}, not one"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        row = cells(line)
        assert len(row) == len(columns), f"a row of {len(row)} cells, not {len(columns)}: {line}"
        rows.append(dict(zip(columns, row)))
    return rows
