"""Exercise 1's seed-to-seed spread: the split alone and the tuned run, many seeds each.

    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/seeds_exercise1.py
    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/seeds_exercise1.py --seeds 20

A pass mark means something only if it lies clear of what luck alone moves. This script
trains exercise 1's split alone (``config.SPLIT_ALONE``) and the solution's tuned run
(``config.EXERCISES_FULL.tuned``) with the simulator of notebook 05, once per seed
(0, 1, 2, ...), through ``runs.train_and_score``: the same 2000 users, the same validation
and test users and the same scoring as a TFF run. The seed draws the initial values, the
clients of each round and the batch orders; the users and their split stay fixed.

One row per run and seed is written to ``results/exercise1_seeds.csv`` (``--output`` names
another folder), which a new run replaces; ``tutorial_utils.exercises.checks`` keeps the split
alone's spread as constants, and a test keeps the two equal. A run that diverged has no
losses and zero accuracies. The summary is printed as Markdown.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from tqdm import tqdm

from tutorial_utils import config
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import markdown
from tutorial_utils.simulation import runs


def runs_to_measure() -> dict[str, config.FedReconRun]:
    """The two runs whose spread is measured: the split alone and the tuned run."""
    return {
        recorded.SPLIT_ALONE_NAME: config.SPLIT_ALONE,
        recorded.TUNED_NAME: config.EXERCISES_FULL.tuned,
    }


def measure(
    named_runs: dict[str, config.FedReconRun],
    seeds: list[int],
    movielens: runs.MovieLensData,
) -> pd.DataFrame:
    """One row per run and seed: the run's name, what it changes, the seed, its scores."""
    rows = []
    with tqdm(
        total=len(named_runs) * len(seeds), desc="Simulated runs", unit="run", file=sys.stdout
    ) as bar:
        for name, run in named_runs.items():
            for seed in seeds:
                result = recorded.simulated_run(run, movielens, seed)
                rows.append(
                    {
                        "run": name,
                        recorded.CHANGED: recorded.changed_from_split_alone(run),
                        "seed": seed,
                        "val_loss": result.validation["loss"],
                        "val_accuracy": result.validation["rating_accuracy"],
                        "test_loss": result.test["loss"],
                        "test_accuracy": result.test["rating_accuracy"],
                    }
                )
                bar.update()
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per run (default: 10)")
    recorded.add_output_option(parser, "exercise1_seeds")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 to measure a spread, got {args.seeds}")

    movielens = recorded.load_movielens_for_script()
    table = measure(runs_to_measure(), list(range(args.seeds)), movielens)
    args.output.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(args.output / "exercise1_seeds.csv", index=False)
    print(markdown.markdown_table(recorded.seeds_summary(table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
