"""Reconstructing one user's embedding on the device, and ranking the movies they have not rated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tutorial_utils.clients import DatasetSplit
from tutorial_utils.config import FedReconRun
from tutorial_utils.simulation import simulator
from tutorial_utils.simulation.batches import PackedClients, PhaseBatches, RoundBatches
from tutorial_utils.studies import baselines, recommend

NUM_ITEMS, K = 30, 4


@pytest.fixture
def item_matrix() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(NUM_ITEMS, K)).astype(np.float32)


@pytest.fixture
def movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "MovieID": np.arange(NUM_ITEMS),
            "Title": [f"Movie {i}" for i in range(NUM_ITEMS)],
            "Genres": ["Drama" if i % 2 else "Comedy" for i in range(NUM_ITEMS)],
        }
    )


def test_reconstruction_batches_cover_every_rating_once_per_pass():
    batches = recommend.reconstruction_batches(
        7, steps=5, batch_size=3, rng=np.random.default_rng(0)
    )
    assert [len(b) for b in batches] == [3, 3, 1, 3, 3]
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(7))


def test_reconstruct_embedding_takes_the_simulators_steps(item_matrix):
    """Same start, same batches: the embedding scores the evaluation batch as the simulator does."""
    movie_ids = np.arange(0, 24, 2)
    ratings = (np.arange(12) % 5 + 1).astype(np.float32)
    user = recommend.reconstruct_embedding(
        item_matrix,
        movie_ids,
        ratings,
        steps=6,
        reconstruction_lr=0.05,
        batch_size=5,
        init_range=(0.1, 0.1),
        seed=3,
    )

    rng = np.random.default_rng(3)
    rng.uniform(size=K)  # the initializer's draw
    positions = recommend.reconstruction_batches(12, 6, 5, rng)
    eval_items, eval_ratings = np.array([1, 3, 5]), np.array([4.0, 2.0, 5.0], np.float32)
    batches = RoundBatches.from_lists(
        [[(movie_ids[p], ratings[p]) for p in positions]], [[(eval_items, eval_ratings)]], 5
    )
    fedrecon = simulator.FedReconSimulator(
        FedReconRun(num_latent_factors=K, reconstruction_lr=0.05),
        NUM_ITEMS,
        item_matrix=item_matrix,
        user_init_range=(0.1, 0.1),
    )
    metrics = fedrecon.evaluate_batches(batches)
    ours = np.mean(np.square(item_matrix[eval_items] @ user - eval_ratings))
    assert ours == pytest.approx(metrics["loss"], rel=1e-5)


def test_reconstruct_embedding_without_steps_is_the_initializer(item_matrix):
    user = recommend.reconstruct_embedding(item_matrix, [], [], steps=0)
    assert user.shape == (K,) and np.all(np.abs(user) <= 0.05)


def test_reconstruct_embedding_recovers_a_planted_user(item_matrix):
    planted = np.array([0.5, -0.3, 0.8, 0.1], np.float32)
    ratings = item_matrix @ planted
    user = recommend.reconstruct_embedding(
        item_matrix,
        np.arange(NUM_ITEMS),
        ratings,
        steps=400,
        reconstruction_lr=0.05,
    )
    np.testing.assert_allclose(user, planted, atol=1e-3)


def test_reconstruct_embedding_rejects_bad_input(item_matrix):
    with pytest.raises(ValueError, match="same length"):
        recommend.reconstruct_embedding(item_matrix, [1, 2], [3.0])
    with pytest.raises(ValueError, match="At least one rating"):
        recommend.reconstruct_embedding(item_matrix, [], [])
    with pytest.raises(ValueError, match="steps must be >= 0"):
        recommend.reconstruct_embedding(item_matrix, [1], [3.0], steps=-1)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        recommend.reconstruct_embedding(item_matrix, [1], [3.0], batch_size=0)


def test_reconstruct_embedding_defaults_are_the_tutorials(item_matrix):
    """50 steps at 0.1 on batches of 5 from Keras' uniform initializer, spelled out."""
    movie_ids, ratings = np.arange(0, 24, 2), (np.arange(12) % 5 + 1).astype(np.float32)
    default = recommend.reconstruct_embedding(item_matrix, movie_ids, ratings, seed=1)
    explicit = recommend.reconstruct_embedding(
        item_matrix,
        movie_ids,
        ratings,
        steps=50,
        reconstruction_lr=0.1,
        batch_size=5,
        init_range=(-0.05, 0.05),
        seed=1,
    )
    np.testing.assert_array_equal(default, explicit)


def test_recommend_ranks_unrated_movies_only(item_matrix, movies):
    user = np.ones(K, np.float32)
    scores = item_matrix @ user
    rated = np.argsort(-scores)[:3]  # the three best are already rated
    table = recommend.recommend(item_matrix, user, movies, rated, n=4)
    assert table.index.tolist() == np.argsort(-scores)[3:7].tolist()
    assert not set(table.index) & set(rated.tolist())
    assert table["Title"].tolist() == [f"Movie {i}" for i in table.index]
    assert (np.diff(table["predicted"]) <= 0).all()


def test_rated_movies_lists_the_favourites_first(movies):
    table = recommend.rated_movies(movies, [4, 7, 9], [2, 5, 3], n=2)
    assert table.index.tolist() == [7, 9] and table["rating"].tolist() == [5, 3]


def test_popular_movies_are_the_most_rated():
    ratings = pd.DataFrame({"MovieID": [2, 2, 2, 0, 0, 1], "Rating": [5, 4, 3, 1, 2, 5]})
    movies = pd.DataFrame({"MovieID": [0, 1, 2], "Title": ["A", "B", "C"], "Genres": ["x"] * 3})
    table = recommend.popular_movies(ratings, movies, n=2)
    assert table.index.tolist() == [2, 0]
    assert table["ratings"].tolist() == [3, 2] and table["mean rating"].tolist() == [4.0, 1.5]


def test_ratings_from_list_drops_unseen_movies_and_checks_values():
    assert recommend.ratings_from_list([10, 11, 12], [5, 0, 2]) == {10: 5, 12: 2}
    with pytest.raises(ValueError, match="one rating per movie"):
        recommend.ratings_from_list([10, 11], [5])
    with pytest.raises(ValueError, match="whole numbers"):
        recommend.ratings_from_list([10], [6])
    with pytest.raises(ValueError, match="at least one"):
        recommend.ratings_from_list([10, 11], [0, 0])


def test_recommend_for_ratings_likes_what_resembles_the_liked_movies(movies):
    """Two groups of movies; a user who loves group A and hates group B gets group A."""
    item_matrix = np.zeros((NUM_ITEMS, K), np.float32)
    item_matrix[: NUM_ITEMS // 2, 0] = 1.0  # group A
    item_matrix[NUM_ITEMS // 2 :, 1] = 1.0  # group B
    table = recommend.recommend_for_ratings(item_matrix, movies, {0: 5, 1: 5, 20: 1}, n=5)
    assert all(i < NUM_ITEMS // 2 for i in table.index) and not {0, 1} & set(table.index)


def test_recommend_for_ratings_forwards_the_reconstruction_keywords(item_matrix, movies):
    mine = {0: 5, 3: 1, 8: 4}
    options = {"steps": 7, "reconstruction_lr": 0.02, "batch_size": 2, "seed": 5}
    embedding = recommend.reconstruct_embedding(
        item_matrix, list(mine), list(mine.values()), **options
    )
    expected = recommend.recommend(item_matrix, embedding, movies, list(mine), n=6)
    table = recommend.recommend_for_ratings(item_matrix, movies, mine, n=6, **options)
    pd.testing.assert_frame_equal(table, expected)


@pytest.mark.skipif(not recommend.widgets_available(), reason="ipywidgets is not installed")
def test_rating_form_passes_the_sliders_ratings_on(movies):
    received = []
    form = recommend.rating_form(
        movies.head(3).set_index("MovieID"),
        lambda ratings: received.append(ratings) or pd.DataFrame(),
    )
    sliders = [row.children[0] for row in form.children[1:4]]
    sliders[0].value, sliders[2].value = 4, 2
    form.children[4].click()
    assert received == [{0: 4, 2: 2}]


def test_reconstruct_embeddings_score_as_the_simulators_evaluation(item_matrix):
    """Same start, same batches for several clients: the simulator's evaluation RMSE."""
    rng = np.random.default_rng(5)
    rated = [rng.choice(NUM_ITEMS, size, replace=False) for size in (9, 14, 20)]
    packed = PackedClients(range(3), rated, [rng.integers(1, 6, len(r)) for r in rated])
    split = DatasetSplit(recon_epochs=3, recon_steps_max=7)
    batches = packed.round_batches(range(3), split, 4, rng, reshuffle_each_pass=False)
    run = FedReconRun(num_latent_factors=K, reconstruction_lr=0.05, batch_size=4)
    fedrecon = simulator.FedReconSimulator(
        run, NUM_ITEMS, item_matrix=item_matrix, user_init_range=(0.1, 0.1)
    )
    users = recommend.reconstruct_embeddings(
        item_matrix, batches.recon, np.full((3, K), 0.1), reconstruction_lr=0.05
    )
    ours = baselines.phase_metrics(item_matrix, users, batches.post_recon)
    assert ours["rmse"] == pytest.approx(fedrecon.evaluate_batches(batches)["rmse"], rel=1e-5)
    # No steps: the initial embeddings.
    none = recommend.reconstruct_embeddings(
        item_matrix, PhaseBatches(*(a[:, :0] for a in batches.recon)), np.ones((3, K)), 0.05
    )
    np.testing.assert_array_equal(none, np.ones((3, K)))


def test_top_n_skips_excluded_movies_and_breaks_ties_by_id():
    scores = np.array([[0.5, 3.0, 2.0, 3.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    excluded = np.array([[False, True, False, False, False], [True, False, False, True, False]])
    assert recommend.top_n(scores, excluded, 3).tolist() == [[3, 2, 4], [1, 2, 4]]
    shared = recommend.top_n(np.array([1.0, 2.0, 2.0, 0.0]), np.zeros((2, 4), bool), 2)
    assert shared.tolist() == [[1, 2], [1, 2]]
    with pytest.raises(ValueError, match="only 2 movies left"):
        recommend.top_n(scores, np.array([[True] * 3 + [False] * 2] * 2), 3)


def test_list_accuracy_counts_users_with_a_liked_movie():
    top = np.array([[0, 1], [2, 3], [4, 0]])
    liked = np.zeros((3, 6), bool)
    liked[0, [1, 5]] = True  # one hit of two
    liked[1, 5] = True  # no hit
    # user 2 liked nothing held out: not counted
    result = recommend.list_accuracy(top, liked)
    assert result == {"users": 2, "hit rate": 0.5, "precision": 0.25}


def test_mean_jaccard_of_identical_disjoint_and_partial_lists():
    assert recommend.mean_jaccard(np.array([[0, 1], [1, 0]]), 4) == 1.0
    assert recommend.mean_jaccard(np.array([[0, 1], [2, 3]]), 4) == 0.0
    # pairs: {0,1}&{1,2} = 1/3, {0,1}&{2,3} = 0, {1,2}&{2,3} = 1/3
    partial = recommend.mean_jaccard(np.array([[0, 1], [1, 2], [2, 3]]), 4)
    assert partial == pytest.approx(2 / 9)
    with pytest.raises(ValueError, match="at least 2 users"):
        recommend.mean_jaccard(np.array([[0, 1]]), 4)
