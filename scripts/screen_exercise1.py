"""Exercise 1's screen: many candidate runs, several seeds each, with the fast simulator.

    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/screen_exercise1.py
    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/screen_exercise1.py --seeds 3

A TFF run of exercise 1 takes a quarter of an hour or more; the simulator of notebook 05
(``tutorial_utils.simulation``) runs the same algorithm in seconds. This script simulates
every candidate of ``GRID`` as ``exercises.train_and_evaluate`` trains with TFF (same
2000 users, same validation and test users, same scoring on disjoint halves), once per
seed, and ranks the candidates by their mean validation accuracy. Use it to choose which
runs are worth confirming with TFF (``scripts/tune_exercise1.py``).

The simulator draws other random numbers than TFF (initial values, clients of each round,
batch orders), so one TFF run lands somewhere in the spread of the seeds, not on their
mean. Read the mean, the lowest test accuracy, and how many seeds diverged.

The table is printed and written to ``<output>/exercise1_screen.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from tutorial_utils import config, data, settings, simulation

SPLIT = config.SPLIT_ALONE

# Exercise 1's split with more reconstruction epochs or not, three reconstruction rates,
# and four budgets of clients per round and rounds. The client and server rates stay the
# walkthrough's: doubling either diverges with TFF (see the tuning table).
GRID = [
    dataclasses.replace(
        SPLIT,
        recon_epochs=epochs,
        reconstruction_lr=recon_lr,
        clients_per_round=clients,
        num_rounds=rounds,
    )
    for epochs, recon_lr, (clients, rounds) in itertools.product(
        (3, 5), (0.1, 0.3, 0.5), ((50, 100), (100, 100), (300, 100), (300, 150))
    )
]


def screen(
    runs: list[config.FedReconRun], seeds: list[int], ratings_df: pd.DataFrame, num_items: int
) -> pd.DataFrame:
    """One row per run: mean validation and test accuracy over the seeds that did not
    diverge, the lowest and highest test accuracy, and how many seeds diverged."""
    rows = []
    with tqdm(
        total=len(runs) * len(seeds), desc="Simulated runs", unit="run", file=sys.stdout
    ) as bar:
        for run in runs:
            val, test, diverged = [], [], 0
            for seed in seeds:
                scores = simulation.simulate_run(run, ratings_df, num_items, config.FULL, seed=seed)
                if np.isfinite(scores["validation"]["loss"]):
                    val.append(scores["validation"]["rating_accuracy"])
                    test.append(scores["test"]["rating_accuracy"])
                else:
                    diverged += 1
                bar.update()
            rows.append(
                {
                    "changed from the split alone": config.changes_from(run, SPLIT),
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


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a Markdown table; numbers in 4 decimals, NaN (every seed diverged) as -."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "-" if np.isnan(value) else f"{value:.4f}"
        return str(value)

    aligns = ["---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join(aligns) + "|"]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per run (default: 5)")
    parser.add_argument(
        "--output",
        type=Path,
        default=settings.output_dir().parent / "tables",
        help="folder for exercise1_screen.csv and .md (default: output/tables)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")

    source = data.find_movielens()
    if source.is_synthetic:
        print("Warning: these are synthetic data; the numbers say nothing about MovieLens 1M.")
    ratings_df, movies_df = data.load_movielens(source)
    table = screen(GRID, list(range(args.seeds)), ratings_df, len(movies_df))
    args.output.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output / "exercise1_screen.csv", index=False)
    markdown = markdown_table(table)
    (args.output / "exercise1_screen.md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
