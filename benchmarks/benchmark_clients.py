"""Time to get MovieLens 1M clients ready: this package against the walkthrough's way.

    FEDRECON_DATA_DIR=/path/to/ml-1m python benchmarks/benchmark_clients.py [--max-clients N]

The walkthrough's way, rebuilt here for timing only: parse ``ratings.dat`` with pandas'
python engine, then for every user filter the whole table and build that user's
``tf.data`` pipeline, all before training starts. This package: parse with the C engine,
group by user once, and build a client's pipeline when the client is sampled.
Both run in this one process and the ratios are printed at the end.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, data
from tutorial_utils.plumbing import markdown


def walkthrough_load(directory) -> pd.DataFrame:
    ratings = pd.read_csv(
        directory / "ratings.dat",
        sep="::",
        names=["UserID", "MovieID", "Rating", "Timestamp"],
        engine="python",
    )
    for column in ("UserID", "MovieID"):
        ratings[column] = ratings[column].astype("category").cat.codes.astype(np.int64)
    return ratings


def walkthrough_datasets(ratings: pd.DataFrame, max_clients: int | None) -> list:
    def to_example(batch):
        return collections.OrderedDict(
            x=tf.cast(batch[:, 1:2], tf.int64), y=tf.cast(batch[:, 2:3], tf.float32)
        )

    num_users = ratings.UserID.nunique()
    if max_clients is not None:
        num_users = min(num_users, max_clients)
    result = []
    for user in range(num_users):
        user_ratings = ratings[ratings.UserID == user]
        dataset = tf.data.Dataset.from_tensor_slices(user_ratings)
        result.append(
            dataset.take(300)
            .shuffle(300, seed=42)
            .batch(5)
            .map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
        )
    return result


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-clients", type=int, default=None, help="default: all users")
    parser.add_argument("--clients-per-round", type=int, default=50)
    args = parser.parse_args()
    source = data.find_movielens(choice="movielens")

    # This package: every client loaded and available, parse included.
    def ours_all():
        ratings, _ = data.load_movielens(source)
        return clients.user_split(
            ratings, batch_size=5, max_examples_per_user=300, max_clients=args.max_clients
        )

    users, ours_load = timed(ours_all)
    rating_clients = users.clients
    sampler = clients.ClientSampler(rating_clients.client_ids, args.clients_per_round, seed=0)
    rating_clients.create_tf_datasets(sampler.sample())  # warm up TensorFlow once
    round_times = [timed(rating_clients.create_tf_datasets, sampler.sample())[1] for _ in range(10)]
    ours_round = float(np.median(round_times))

    ratings, parse = timed(walkthrough_load, source.directory)
    built, build = timed(walkthrough_datasets, ratings, args.max_clients)
    assert len(built) == len(rating_clients)
    theirs = parse + build

    # The walkthrough's cost for one round's worth of pipelines (filter + build each).
    theirs_round = build * args.clients_per_round / len(built)
    table = pd.DataFrame(
        [
            ("all clients ready (parse included)", theirs, ours_load),
            (
                f"pipelines of one round ({args.clients_per_round} clients)",
                theirs_round,
                ours_round,
            ),
        ],
        columns=["step", "walkthrough (s)", "this package (s)"],
    )
    table["speed-up"] = table["walkthrough (s)"] / table["this package (s)"]
    print(f"\n{len(rating_clients)} clients, {source.description}")
    print(f"walkthrough: parse {parse:.2f} s + build every pipeline {build:.2f} s = {theirs:.2f} s")
    print(
        f"this package: parse, group and split {ours_load:.3f} s; one round's datasets "
        f"{ours_round:.3f} s (median of 10)"
    )
    table_text = markdown.markdown_table(
        table,
        formats={
            "walkthrough (s)": "{:.2f}",
            "this package (s)": "{:.3f}",
            "speed-up": "{:.0f}x",
        },
    )
    print("\n" + table_text)


if __name__ == "__main__":
    main()
