"""Exercise 1's screen: many candidate runs, several seeds each, with the fast simulator.

    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/screen_exercise1.py
    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/screen_exercise1.py --seeds 3

A TFF run of exercise 1 takes a quarter of an hour or more; the simulator of notebook 05
(``tutorial_utils.simulation.simulator``) runs the same algorithm in seconds. This script trains and
scores every candidate of ``GRID`` with ``runs.train_and_score(engine="simulator")``, the
pipeline that TFF runs go through too (same 2000 users, same validation and test users,
same scoring on disjoint halves), once per seed, and ranks the candidates by their mean
validation accuracy. Use it to choose which runs are worth confirming with TFF
(``scripts/tune_exercise1.py``).

The simulator draws other random numbers than TFF (initial values, clients of each round,
batch orders), so one TFF run lands somewhere in the spread of the seeds, not on their
mean. Read the mean, the lowest test accuracy, and how many seeds diverged.

The table is printed as Markdown (a run every seed of which diverged has ``-`` for its
accuracies) and written to ``results/exercise1_screen.csv`` (``--output`` names another
folder): the record that the solutions notebook and the README read
(``tutorial_utils.exercises.recorded``), which a new screen replaces.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import numpy as np
import pandas as pd
from tqdm import tqdm

from tutorial_utils import config
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import markdown
from tutorial_utils.simulation import runs

SPLIT = config.SPLIT_ALONE

# Exercise 1's split with more reconstruction epochs or not, three reconstruction rates,
# and four budgets of clients per round and rounds. The client and server rates stay the
# walkthrough's: doubling either diverges with TFF (see the tuning table).
GRID = [
    dataclasses.replace(
        SPLIT,
        recon_epochs=epochs,
        reconstruction_lr=reconstruction_lr,
        clients_per_round=clients,
        num_rounds=rounds,
    )
    for epochs, reconstruction_lr, (clients, rounds) in itertools.product(
        (3, 5), (0.1, 0.3, 0.5), ((50, 100), (100, 100), (300, 100), (300, 150))
    )
]


def screen(
    candidates: list[config.FedReconRun],
    seeds: list[int],
    movielens: runs.MovieLensData,
) -> pd.DataFrame:
    """One row per run: mean validation and test accuracy over the seeds that did not
    diverge, the lowest and highest test accuracy, and how many seeds diverged."""
    rows = []
    with tqdm(
        total=len(candidates) * len(seeds), desc="Simulated runs", unit="run", file=sys.stdout
    ) as bar:
        for run in candidates:
            val, test, diverged = [], [], 0
            for seed in seeds:
                result = recorded.simulated_run(run, movielens, seed)
                if np.isfinite(result.validation["loss"]):
                    val.append(result.validation["rating_accuracy"])
                    test.append(result.test["rating_accuracy"])
                else:
                    diverged += 1
                bar.update()
            rows.append(
                {
                    recorded.CHANGED: recorded.changed_from_split_alone(run),
                    "client-rounds": run.clients_per_round * run.num_rounds,
                    "val accuracy (mean)": np.mean(val) if val else np.nan,
                    "test accuracy (mean)": np.mean(test) if test else np.nan,
                    "test accuracy (min)": np.min(test) if test else np.nan,
                    "test accuracy (max)": np.max(test) if test else np.nan,
                    "diverged": f"{diverged} of {len(seeds)}",
                }
            )
    table = pd.DataFrame(rows)
    return table.sort_values("val accuracy (mean)", ascending=False, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per run (default: 5)")
    recorded.add_output_option(parser, "exercise1_screen")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")

    movielens = recorded.load_movielens_for_script()
    table = screen(GRID, list(range(args.seeds)), movielens)
    args.output.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output / "exercise1_screen.csv", index=False)
    print(markdown.markdown_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
