"""Rounds per second of FedRecon training with 1, 2 and 4 local TFF workers.

For 50, 200 and 1000 clients a round, trains on the same sampled clients with the clients
of each round spread over 1, 2 and 4 local worker services (``tutorial_utils.plumbing.workers``),
and, as a reference, on the package's usual single worker without the mergeable split
(``runtime.start()``). Each measurement runs one untimed round first (compilation), then
times the next rounds; the clients' datasets are built before the clock starts. Prints a
Markdown table with the ratios to 1 worker, all measured in this one run, and the machine's
core count and load, since other jobs running at the same time change every figure.

    FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python benchmarks/benchmark_workers.py

The walkthrough's model: 50 latent factors, batch 5, at most 300 ratings a user, drawn
from every training user (4832 on MovieLens 1M).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, config, data, model, training
from tutorial_utils.plumbing import markdown, workers

CLIENTS_PER_ROUND = (50, 200, 1000)
WORKER_COUNTS = (1, 2, 4)
TIMED_ROUNDS = {50: 5, 200: 2, 1000: 1}


def rounds_per_second(training_process, rounds: list[list]) -> float:
    """Runs one untimed round, then times the others; returns rounds per second."""
    state = training_process.initialize()
    state, _ = training_process.next(state, rounds[0])
    start = time.perf_counter()
    for client_datasets in rounds[1:]:
        state, _ = training_process.next(state, client_datasets)
    return (len(rounds) - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timed-rounds",
        type=int,
        default=None,
        help="timed rounds at every size (default: 5, 2 and 1 at 50, 200 and 1000 clients)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    full = config.FULL
    run = full.run
    np.random.seed(full.seed)
    tf.keras.utils.set_random_seed(full.seed)
    ratings, movies = data.load_movielens(data.find_movielens())
    users = clients.user_split(
        ratings,
        batch_size=run.batch_size,
        max_examples_per_user=full.max_examples_per_user,
        seed=full.seed,
    )
    train_ids = users.train_ids
    model_fn = model.reconstruction_model_fn(len(movies), run.num_latent_factors)
    training_process = training.build_training_process(model_fn, run)  # starts the usual worker
    print(
        f"{len(train_ids)} training users, {run.num_latent_factors} latent factors; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
    )

    table = {}
    for size in CLIENTS_PER_ROUND:
        timed = args.timed_rounds or TIMED_ROUNDS[size]
        sampler = clients.ClientSampler(train_ids, size, seed=full.seed)
        rounds = [users.clients.create_tf_datasets(sampler.sample()) for _ in range(1 + timed)]
        table[size, "plain"] = rounds_per_second(training_process, rounds)
        print(f"{size} clients, usual single worker: {table[size, 'plain']:.3f} rounds/s")
        for count in WORKER_COUNTS:
            with workers.start_local(count):
                table[size, count] = rounds_per_second(training_process, rounds)
            print(f"{size} clients, {count} worker(s): {table[size, count]:.3f} rounds/s")

    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    columns = {"plain": "usual single worker"} | {
        count: f"{count} worker{'s' if count > 1 else ''}" for count in WORKER_COUNTS
    }
    rows = [
        {"clients a round": size}
        | {
            name: f"{table[size, key]:.3f} ({table[size, key] / table[size, 1]:.2f}x)"
            for key, name in columns.items()
        }
        for size in CLIENTS_PER_ROUND
    ]
    print(markdown.markdown_table(pd.DataFrame(rows), align="l" + "r" * len(columns)))
    print("\nRounds per second (ratio to 1 worker).")


if __name__ == "__main__":
    main()
