"""Splitting a client's batches between reconstruction and scoring, and counting overlap."""

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients
from tutorial_utils.clients import RatingClients


def test_shared_ratings_counts_distinct_scored_ratings_that_also_reconstructed():
    assert clients.shared_ratings([1, 2, 3, 3], [3, 4, 4, 5]) == (1, 3)
    assert clients.shared_ratings([], [1]) == (0, 1)
    assert clients.shared_ratings([1], []) == (0, 0)


def test_shared_examples_counts_overlap_of_two_halves():
    # One user who rated 12 different movies: a movie id identifies an example.
    ratings = pd.DataFrame(
        {
            "UserID": [0] * 12,
            "MovieID": np.arange(12),
            "Rating": np.arange(12) % 5 + 1,
            "Timestamp": np.arange(12),
        }
    )
    rating_clients = RatingClients(ratings, batch_size=2, reshuffle_each_pass=False)
    dataset = rating_clients.create_tf_dataset_for_client(0)
    even = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, batch: batch)
    odd = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, batch: batch)
    assert shared(even, odd) == (0, 6)
    assert shared(dataset, odd) == (6, 6)


def test_split_overlap_sums_over_clients_and_sees_reshuffling():
    ratings = pd.DataFrame(
        {
            "UserID": np.repeat([0, 1], 20),
            "MovieID": np.tile(np.arange(20), 2),
            "Rating": 3,
            "Timestamp": np.arange(40),
        }
    )

    def even_odd(dataset):  # TFF's default split: two passes over the dataset
        even = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, batch: batch)
        odd = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, batch: batch)
        return even, odd

    def reuse(dataset):
        return dataset, dataset

    fixed = RatingClients(ratings, batch_size=2, reshuffle_each_pass=False)
    reshuffled = RatingClients(ratings, batch_size=2)
    assert clients.split_overlap(fixed.create_tf_datasets([0, 1]), even_odd) == (0, 20)
    assert clients.split_overlap(fixed.create_tf_datasets([0, 1]), reuse) == (40, 40)
    shared, total = clients.split_overlap(reshuffled.create_tf_datasets([0, 1]), even_odd)
    assert total == 20 and 0 < shared < 20


def shared(first, second):
    return clients.shared_ratings(clients.movie_ids(first), clients.movie_ids(second))


def test_split_dataset_fn_is_tffs_split(small_ratings):
    pytest.importorskip("tensorflow_federated")
    rating_clients = RatingClients(small_ratings, batch_size=2, reshuffle_each_pass=False)
    options = clients.DatasetSplit(recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2)
    for split in (clients.DatasetSplit(), options, clients.DatasetSplit(split_dataset=False)):
        dataset = rating_clients.create_tf_dataset_for_client(0)
        ours = clients.split_dataset_fn(split)(dataset)
        theirs = clients.tff_split_fn(split)(dataset)
        for a, b in zip(ours, theirs):
            assert clients.movie_ids(a) == clients.movie_ids(b)
