import collections

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import real_data_dir, requires_real_data

from tutorial_utils import clients
from tutorial_utils.clients import (
    ClientSampler,
    RatingClients,
    split_clients,
    to_model_inputs,
    user_split,
)
from tutorial_utils.simulation.batches import PackedClients


def all_examples(dataset):
    xs, ys = [], []
    for batch in dataset:
        xs.append(batch["x"].numpy().ravel())
        ys.append(batch["y"].numpy().ravel())
    return np.concatenate(xs), np.concatenate(ys)


def test_client_holds_first_ratings_in_file_order(small_ratings):
    clients = RatingClients(small_ratings, batch_size=2, max_examples_per_user=5)
    movies, ratings = clients.client_arrays(0)
    expected = small_ratings[small_ratings.UserID == 0].head(5)
    np.testing.assert_array_equal(movies, expected.MovieID)
    np.testing.assert_array_equal(ratings, expected.Rating)
    assert [clients.num_examples(u) for u in (0, 1, 2)] == [5, 3, 5]


def test_dataset_is_a_shuffle_of_the_client_data_with_the_right_types(small_ratings):
    clients = RatingClients(small_ratings, batch_size=4, max_examples_per_user=None)
    dataset = clients.create_tf_dataset_for_client(2)
    assert dataset.element_spec == collections.OrderedDict(
        x=tf.TensorSpec([None, 1], tf.int64), y=tf.TensorSpec([None, 1], tf.float32)
    )
    assert [b["x"].shape[0] for b in dataset] == [4, 4, 4]
    x, y = all_examples(dataset)
    movies, ratings = clients.client_arrays(2)
    pairs = sorted(zip(x.tolist(), y.tolist()))
    assert pairs == sorted(zip(movies.tolist(), ratings.astype(float).tolist()))
    assert x.tolist() != movies.tolist()  # actually shuffled


def test_shuffle_order_does_not_depend_on_the_global_seed(small_ratings):
    clients = RatingClients(small_ratings, batch_size=3)
    before = all_examples(clients.create_tf_dataset_for_client(2))[0]
    tf.keras.utils.set_random_seed(1234)
    after = all_examples(clients.create_tf_dataset_for_client(2))[0]
    np.testing.assert_array_equal(before, after)


def test_shuffle_matches_tensorflow_shuffle_with_seed_42_and_no_global_seed(small_ratings):
    # The walkthrough called dataset.shuffle(n, seed=42) without a global seed: TensorFlow
    # then uses the seed pair (87654321, 42). Rebuild that in a graph with that graph seed.
    clients = RatingClients(small_ratings, batch_size=12)
    movies, ratings = clients.client_arrays(2)
    ours = all_examples(clients.create_tf_dataset_for_client(2))[0]
    with tf.Graph().as_default() as graph:
        graph.seed = 87654321
        dataset = tf.data.Dataset.from_tensor_slices(movies).shuffle(len(movies), seed=42)
        element = tf.compat.v1.data.make_one_shot_iterator(dataset.batch(len(movies))).get_next()
        with tf.compat.v1.Session() as session:
            reference = session.run(element)
    np.testing.assert_array_equal(ours, reference)


def test_each_pass_reshuffles(small_ratings):
    dataset = RatingClients(small_ratings, batch_size=12).create_tf_dataset_for_client(2)
    first, second = (all_examples(dataset)[0] for _ in range(2))
    assert sorted(first) == sorted(second) and first.tolist() != second.tolist()


def test_without_reshuffling_every_pass_has_one_shuffled_order(small_ratings):
    fixed = RatingClients(small_ratings, batch_size=12, reshuffle_each_pass=False)
    dataset = fixed.create_tf_dataset_for_client(2)
    first, second = (all_examples(dataset)[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert first.tolist() != fixed.client_arrays(2)[0].tolist()


def test_without_reshuffling_each_pass_replays_the_first_pass_of_the_reshuffled_data():
    ratings = pd.DataFrame({"UserID": [0] * 7, "MovieID": range(7), "Rating": [3] * 7})
    clients = RatingClients(ratings, batch_size=3)
    reshuffled = clients.create_tf_dataset_for_client(0)
    first_pass = [b["x"].numpy().ravel().tolist() for b in reshuffled]
    fixed = clients.create_tf_dataset_for_client(0, reshuffle_each_pass=False)
    passes = [[b["x"].numpy().ravel().tolist() for b in fixed] for _ in range(2)]
    assert passes[0] == passes[1] == first_pass and [len(b) for b in first_pass] == [3, 3, 1]
    assert sorted(sum(first_pass, [])) == list(range(7))
    assert fixed.element_spec == reshuffled.element_spec
    # The constructor's choice is the default of every call.
    constructed = RatingClients(ratings, batch_size=3, reshuffle_each_pass=False)
    again = constructed.create_tf_datasets([0])[0]
    assert [b["x"].numpy().ravel().tolist() for b in again] == first_pass


def test_user_split_builds_the_clients_and_splits_them_by_user(small_ratings):
    users = user_split(small_ratings, batch_size=2, max_examples_per_user=5, seed=42)
    assert users.clients.batch_size == 2 and users.clients.max_examples_per_user == 5
    expected = split_clients(users.clients.client_ids, seed=42)
    assert (users.train_ids, users.val_ids, users.test_ids) == expected
    packed = PackedClients.from_rating_clients(users.clients)
    assert packed.client_ids == users.clients.client_ids
    assert packed.counts.tolist() == [users.clients.num_examples(c) for c in packed.client_ids]


def test_max_clients_keeps_the_first_users(small_ratings):
    clients = RatingClients(small_ratings, max_clients=2)
    assert clients.client_ids == [0, 1]
    assert len(clients) == 2


def test_bad_arguments_are_rejected(small_ratings):
    with pytest.raises(ValueError, match="batch_size"):
        RatingClients(small_ratings, batch_size=0)
    with pytest.raises(ValueError, match="max_examples_per_user"):
        RatingClients(small_ratings, max_examples_per_user=0)


def test_split_uses_the_walkthrough_permutation():
    ids = list(range(2000))
    train, val, test = split_clients(ids, 0.8, 0.1, seed=42)
    np.random.seed(42)
    reference = list(range(2000))
    np.random.shuffle(reference)
    assert train == reference[:1600]
    assert val == reference[1600:1800]
    assert test == reference[1800:]
    assert sorted(train + val + test) == ids


def test_split_rejects_fractions_that_do_not_fit():
    with pytest.raises(ValueError):
        split_clients(range(10), 0.8, 0.3)


def test_sampler_is_seeded_and_samples_without_replacement():
    ids = list(range(100, 200))
    first = ClientSampler(ids, 30, seed=7)
    second = ClientSampler(ids, 30, seed=7)
    rounds = [first.sample() for _ in range(3)]
    assert rounds == [second.sample() for _ in range(3)]
    for sample in rounds:
        assert len(set(sample)) == 30 and set(sample) <= set(ids)
    assert rounds[0] != rounds[1]
    with pytest.raises(ValueError):
        ClientSampler(ids, 101)


@requires_real_data
def test_first_training_batch_matches_the_walkthrough():
    from tutorial_utils import data

    ratings_df, _ = data.load_movielens(real_data_dir())
    clients = RatingClients(ratings_df, batch_size=5, max_examples_per_user=300, max_clients=2000)
    train, val, test = split_clients(clients.client_ids)
    assert (len(train), len(val), len(test)) == (1600, 200, 200)
    batch = next(iter(clients.create_tf_dataset_for_client(train[0])))
    assert batch["x"].numpy().ravel().tolist() == [1907, 2891, 1574, 2785, 2775]
    assert batch["y"].numpy().ravel().tolist() == [3, 3, 3, 4, 3]


def test_client_dataset_is_the_four_steps_of_notebook_01(small_ratings):
    # from_tensor_slices, shuffle(n, seed=42) with no global seed, batch, map: in a graph
    # whose seed is TensorFlow's default global seed, as in the walkthrough.
    clients = RatingClients(small_ratings, batch_size=5)
    movies, ratings = clients.client_arrays(2)
    ours = list(clients.create_tf_dataset_for_client(2).as_numpy_iterator())
    with tf.Graph().as_default() as graph:
        graph.seed = 87654321
        examples = np.stack([movies, ratings], axis=1)
        dataset = tf.data.Dataset.from_tensor_slices(examples).shuffle(len(examples), seed=42)
        dataset = dataset.batch(5).map(to_model_inputs)
        element = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        with tf.compat.v1.Session() as session:
            reference = [session.run(element) for _ in range(len(ours))]
    for a, b in zip(ours, reference):
        for name in ("x", "y"):
            assert a[name].dtype == b[name].dtype
            np.testing.assert_array_equal(a[name], b[name])


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
