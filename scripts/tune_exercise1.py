"""Exercise 1's tuning sweep: FedRecon matrix factorization on MovieLens 1M, one run per row.

    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/tune_exercise1.py
    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python scripts/tune_exercise1.py \
        --runs split_alone server_lr_2

Every run trains with TFF 0.87 from the same seed, on the 2000 users of the full
configuration (1600 train, 200 validation, 200 test), and is scored by
``runs.train_and_score``: the embedding of each validation and test user is
reconstructed on half of their ratings and scored on the other half. Choose on the
validation accuracy; the test accuracy is reported, not tuned on.

Rows are appended to ``results/exercise1_tuning.csv`` (``--output`` names another folder)
as soon as a run ends, and runs already in that file are skipped, so an interrupted sweep
resumes where it stopped, and a new run adds to the record that the solutions notebook and
the README read (``tutorial_utils.exercises.recorded``). At the end the whole table is printed as
Markdown. The file's minutes say how long each run took.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pandas as pd

from tutorial_utils import config
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import runtime
from tutorial_utils.simulation import runs

SPLIT = config.SPLIT_ALONE

# What was tried, in the order it was tried. Each run changes a few things from the
# split alone (exercise 1's split, the walkthrough's rates, 100 rounds of 50 clients).
RUNS = {
    "split_alone": SPLIT,
    "recon_lr_0.5": dataclasses.replace(SPLIT, reconstruction_lr=0.5),
    "recon_lr_0.5_server_lr_2": dataclasses.replace(SPLIT, reconstruction_lr=0.5, server_lr=2.0),
    "recon_lr_0.5_rounds_200": dataclasses.replace(SPLIT, reconstruction_lr=0.5, num_rounds=200),
    "recon_lr_0.5_client_lr_1": dataclasses.replace(SPLIT, reconstruction_lr=0.5, client_lr=1.0),
    "recon_lr_0.5_clients_100": dataclasses.replace(
        SPLIT, reconstruction_lr=0.5, clients_per_round=100
    ),
    "recon_epochs_5_clients_300_rounds_150": dataclasses.replace(
        SPLIT, recon_epochs=5, reconstruction_lr=0.3, clients_per_round=300, num_rounds=150
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        nargs="*",
        default=list(RUNS),
        choices=list(RUNS),
        help="which runs (default: all, in order)",
    )
    recorded.add_output_option(parser, "exercise1_tuning")
    args = parser.parse_args(argv)

    movielens = recorded.load_movielens_for_script()
    args.output.mkdir(parents=True, exist_ok=True)
    csv_path = args.output / "exercise1_tuning.csv"
    done = recorded.load_tuning(csv_path) if csv_path.exists() else pd.DataFrame()
    for name in args.runs:
        if name in done.index:
            print(f"{name}: already in {csv_path}, skipped")
            continue
        print(f"{name}: {RUNS[name]}", flush=True)
        result = runs.train_and_score(RUNS[name], movielens, base=config.FULL)
        row = pd.DataFrame([result.summary()], index=pd.Index([name], name="run"))
        print(row.to_string(), flush=True)
        # Re-read the file first: another sweep may have added rows in the meantime.
        done = recorded.load_tuning(csv_path) if csv_path.exists() else pd.DataFrame()
        done = pd.concat([done.drop(index=name, errors="ignore"), row])
        done.to_csv(csv_path)
    table = done.loc[[name for name in RUNS if name in done.index]]
    print(recorded.tuning_markdown(table))
    best = table["val_accuracy"].idxmax()
    print(
        f"Best on validation: {best} (test rating accuracy {table.loc[best, 'test_accuracy']:.4f})"
    )
    runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
