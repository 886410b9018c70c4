"""Recommendations on the device: reconstruct a user's embedding, then rank unrated movies.

After FedRecon training the server holds only the item matrix ``V``. A device that wants
recommendations downloads ``V`` and, with ``V`` frozen, fits its user embedding ``u`` to
the user's own ratings: the reconstruction step of FedRecon, nothing more. It then
predicts ``u . v`` for every movie the user has not rated and shows the best ones. The
user's ratings and embedding never leave the device, and this works the same for users who
took part in training and for users who never did, including someone who has just rated
a handful of movies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tutorial_utils import environment


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
    for batch in reconstruction_batches(len(movie_ids), steps, batch_size, rng):
        vectors = item_matrix[movie_ids[batch]]
        errors = vectors @ user - ratings[batch]
        user = user - reconstruction_lr * (2.0 / len(batch)) * (errors @ vectors)
    return user


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
    candidates = np.setdiff1d(np.arange(len(predicted)), np.asarray(rated_movie_ids, np.int64))
    best = candidates[np.argsort(-predicted[candidates], kind="stable")[:n]]
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
