"""Recommendations on the device: reconstruct a user's embedding, then rank unrated movies.

After FedRecon training the server holds only the item matrix ``V``. A device that wants
recommendations downloads ``V`` and, with ``V`` frozen, fits its user embedding ``u`` to
the user's own ratings: the reconstruction step of FedRecon, nothing more. It then
predicts ``u . v`` for every movie the user has not rated and shows the best ones.
Recommending sends nothing back: it runs on the device after the download. (Training is
another matter: a FedRecon update lets a server that knows the protocol recover the
embedding and the ratings used after reconstruction, notebook 07.) It works the same for
users who took part in training and for users who never did, including someone who has
just rated a handful of movies.

The end of the module measures lists of recommendations: how often they hold movies a
user liked but the model never saw for that user (``list_accuracy``), and how much two
users' lists share (``mean_jaccard``), for any method that ranks movies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tutorial_utils.plumbing import environment
from tutorial_utils.simulation.batches import PhaseBatches, RoundBatches


def reconstruction_batches(
    num_ratings: int, steps: int, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The positions of the ratings each SGD step uses: ``steps`` batches of shuffled passes."""
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = rng.permutation(num_ratings)
        batches.extend(
            order[start : start + batch_size] for start in range(0, num_ratings, batch_size)
        )
    return batches[:steps]


def reconstruct_embedding(
    item_matrix: np.ndarray,
    movie_ids: Sequence[int],
    ratings: Sequence[float],
    *,
    steps: int = 50,
    reconstruction_lr: float = 0.1,
    batch_size: int = 5,
    init_range: tuple[float, float] = (-0.05, 0.05),
    seed: int = 0,
) -> np.ndarray:
    """Fits one user's embedding ``[k]`` to ``ratings`` of ``movie_ids``, ``item_matrix`` frozen.

    SGD on batches of the user's ratings, as FedRecon's reconstruction does; the defaults
    are the tutorial's: ``steps`` steps at ``reconstruction_lr`` 0.1 on batches of 5,
    passing over the shuffled ratings as often as needed (a new order each pass), from a
    uniform draw in ``init_range`` (Keras' ``"uniform"``). Each step is one SGD step on the
    batch's mean squared error: ``u -= lr * 2/n * sum((u . v_i - y_i) v_i)``. ``seed``
    draws the initial embedding, then the orders.
    """
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}.")
    item_matrix = np.asarray(item_matrix, np.float32)
    movie_ids = np.asarray(movie_ids, np.int64)
    ratings = np.asarray(ratings, np.float32)
    if movie_ids.shape != ratings.shape or movie_ids.ndim != 1:
        raise ValueError("movie_ids and ratings must be 1-D and of the same length.")
    if steps and not len(movie_ids):
        raise ValueError("At least one rating is needed to reconstruct an embedding.")
    rng = np.random.default_rng(seed)
    user = rng.uniform(*init_range, size=item_matrix.shape[1]).astype(np.float32)
    positions = reconstruction_batches(len(movie_ids), steps, batch_size, rng)
    batches = [(movie_ids[batch], ratings[batch]) for batch in positions]
    phase = RoundBatches.from_lists([batches], [[]], batch_size).recon
    return reconstruct_embeddings(item_matrix, phase, user[None], reconstruction_lr)[0]


def reconstruct_embeddings(
    item_matrix: np.ndarray,
    phase: PhaseBatches,
    initial_embeddings: np.ndarray,
    reconstruction_lr: float,
) -> np.ndarray:
    """Every client's embedding ``[clients, k]`` after SGD on its batches of ``phase``.

    Client ``c`` starts from ``initial_embeddings[c]`` and, at each step, takes one SGD step
    on the batch's mean squared error with ``item_matrix`` frozen (a step without examples
    changes nothing): FedRecon's reconstruction, as the simulator runs it.
    """
    item_matrix = np.asarray(item_matrix, np.float32)
    users = np.array(initial_embeddings, np.float32)
    for t in range(phase.mask.shape[1]):
        mask = phase.mask[:, t]
        vectors = item_matrix[phase.items[:, t]]
        errors = np.where(mask, np.einsum("cbk,ck->cb", vectors, users) - phase.ratings[:, t], 0)
        count = np.maximum(mask.sum(axis=1, keepdims=True), 1)
        users -= reconstruction_lr * np.einsum("cb,cbk->ck", 2.0 * errors / count, vectors)
    return users


def top_n(scores: np.ndarray, excluded: np.ndarray, n: int) -> np.ndarray:
    """Each user's ``n`` best-scored movies ``[users, n]``, best first, none of ``excluded``.

    ``scores`` is ``[users, movies]`` (or ``[movies]``, the same for everyone);
    ``excluded`` is a boolean ``[users, movies]``: the movies not to recommend to each user.
    Ties go to the lower movie id.
    """
    excluded = np.asarray(excluded, bool)
    scores = np.broadcast_to(np.asarray(scores, np.float64), excluded.shape)
    fewest = int((~excluded).sum(axis=1).min(initial=n))
    if fewest < n:
        raise ValueError(f"A user has only {fewest} movies left to recommend, fewer than n={n}.")
    ranked = np.argsort(-np.where(excluded, -np.inf, scores), axis=1, kind="stable")
    return ranked[:, :n]


def recommend(
    item_matrix: np.ndarray,
    user_embedding: np.ndarray,
    movies: pd.DataFrame,
    rated_movie_ids: Sequence[int],
    n: int = 10,
) -> pd.DataFrame:
    """The ``n`` movies with the highest predicted rating among those not in ``rated_movie_ids``.

    ``movies`` is ``load_movielens``' movies frame (index = ``MovieID``). Returns ``Title``,
    ``Genres`` and ``predicted`` (the raw ``u . v``), best first, indexed by ``MovieID``.
    """
    predicted = np.asarray(item_matrix) @ np.asarray(user_embedding)
    rated = np.zeros((1, len(predicted)), bool)
    rated[0, np.asarray(rated_movie_ids, np.int64)] = True
    best = top_n(predicted, rated, min(n, int((~rated).sum())))[0]
    table = movies.loc[best, ["Title", "Genres"]].copy()
    table["predicted"] = predicted[best].round(2)
    table.index.name = "MovieID"
    return table


def rated_movies(
    movies: pd.DataFrame, movie_ids: Sequence[int], ratings: Sequence[float], n: int = 5
) -> pd.DataFrame:
    """The user's ``n`` highest-rated movies (title, genres, rating): what the device knows."""
    table = movies.loc[np.asarray(movie_ids, np.int64), ["Title", "Genres"]].copy()
    table["rating"] = np.asarray(ratings).astype(int)
    table.index.name = "MovieID"
    return table.sort_values("rating", ascending=False, kind="stable").head(n)


def popular_movies(ratings_df: pd.DataFrame, movies: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The ``n`` most-rated movies, with how often and how well they were rated.

    Movies that many people have seen are the easiest for a new user to rate.
    """
    stats = ratings_df.groupby("MovieID")["Rating"].agg(["size", "mean"])
    stats = stats.sort_values("size", ascending=False, kind="stable").head(n)
    table = movies.loc[stats.index, ["Title", "Genres"]].copy()
    table["ratings"] = stats["size"].to_numpy()
    table["mean rating"] = stats["mean"].round(2).to_numpy()
    table.index.name = "MovieID"
    return table


def ratings_from_list(movie_ids: Sequence[int], my_ratings: Sequence[int]) -> dict[int, int]:
    """Pairs ``movie_ids`` with ``my_ratings`` (1-5 each, 0 for "not seen") and drops the zeros."""
    if len(movie_ids) != len(my_ratings):
        raise ValueError(
            f"Give one rating per movie: {len(movie_ids)} movies, {len(my_ratings)} ratings."
        )
    chosen = {}
    for movie_id, rating in zip(movie_ids, my_ratings):
        if rating not in (0, 1, 2, 3, 4, 5):
            raise ValueError(
                f"Ratings are whole numbers from 1 to 5 (0: not seen), got {rating!r}."
            )
        if rating:
            chosen[int(movie_id)] = int(rating)
    if not chosen:
        raise ValueError("Rate at least one movie (1 to 5) to get recommendations.")
    return chosen


def recommend_for_ratings(
    item_matrix: np.ndarray,
    movies: pd.DataFrame,
    my_ratings: Mapping[int, int],
    n: int = 10,
    **reconstruction,
) -> pd.DataFrame:
    """Recommendations for someone who rated ``my_ratings`` (``{MovieID: rating}``) just now.

    ``reconstruction`` holds keywords of :func:`reconstruct_embedding` (``steps``,
    ``reconstruction_lr``, ``batch_size``, ``init_range``, ``seed``); its defaults otherwise.
    """
    movie_ids = list(my_ratings)
    embedding = reconstruct_embedding(
        item_matrix, movie_ids, [my_ratings[m] for m in movie_ids], **reconstruction
    )
    return recommend(item_matrix, embedding, movies, movie_ids, n)


def widgets_available() -> bool:
    """True when ``ipywidgets`` is installed (optional: the plain-Python cells do the same)."""
    return environment.installed("ipywidgets")


def rating_form(to_rate: pd.DataFrame, on_submit: Callable[[dict[int, int]], pd.DataFrame]):
    """An ``ipywidgets`` form: a 0-5 slider per movie of ``to_rate`` and a button.

    On a click, the non-zero ratings go to ``on_submit`` (``{MovieID: rating}``), whose
    table is shown below the form. Returns the form, for display.
    """
    import ipywidgets as widgets
    from IPython.display import display

    sliders = {
        int(movie_id): widgets.IntSlider(
            value=0, min=0, max=5, description="", layout=widgets.Layout(width="220px")
        )
        for movie_id in to_rate.index
    }
    rows = [
        widgets.HBox([slider, widgets.Label(str(to_rate.loc[movie_id, "Title"]))])
        for movie_id, slider in sliders.items()
    ]
    button = widgets.Button(description="Recommend", button_style="primary")
    output = widgets.Output()

    def submit(_):
        output.clear_output()
        with output:
            try:
                display(
                    on_submit(ratings_from_list(list(sliders), [s.value for s in sliders.values()]))
                )
            except ValueError as error:
                print(error)

    button.on_click(submit)
    return widgets.VBox([widgets.Label("Your rating, 1-5 (0: not seen):"), *rows, button, output])


# ---------------------------------------------------------------------------------------
# Measuring lists of recommendations
# ---------------------------------------------------------------------------------------

LIKED = 4  # a rating of 4 or 5 stars means the user liked the movie


def list_accuracy(top: np.ndarray, liked: np.ndarray) -> dict[str, float]:
    """How many of the movies in each user's list ``top`` (``[users, n]``) the user liked.

    ``liked`` is a boolean ``[users, movies]``: held-out movies the user rated 4 or 5 stars,
    which the method did not see for that user. Only users with at least one such movie
    count. Returns ``users`` (how many count), ``hit rate`` (the share of them with at least
    one liked movie in their list) and ``precision`` (the mean share of a list that is liked).
    """
    liked = np.asarray(liked, bool)
    counted = liked.any(axis=1)
    hits = np.take_along_axis(liked, np.asarray(top), axis=1)[counted].sum(axis=1)
    users = int(counted.sum())
    return {
        "users": users,
        "hit rate": float((hits > 0).mean()) if users else 0.0,
        "precision": float(hits.mean() / top.shape[1]) if users else 0.0,
    }


def mean_jaccard(top: np.ndarray, num_movies: int) -> float:
    """The mean Jaccard similarity of two users' lists, over every pair of users in ``top``.

    ``|A & B| / |A | B|`` for lists ``A`` and ``B``: 1 when everyone gets the same movies,
    0 when no two lists share one.
    """
    top = np.asarray(top)
    num_users, n = top.shape
    if num_users < 2:
        raise ValueError(f"Overlap needs at least 2 users' lists, got {num_users}.")
    chosen = np.zeros((num_users, num_movies), np.float32)
    np.put_along_axis(chosen, top, 1.0, axis=1)
    shared = (chosen @ chosen.T)[np.triu_indices(num_users, k=1)]
    return float(np.mean(shared / (2 * n - shared)))
