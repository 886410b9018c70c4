"""Summaries of the ratings used while exploring the data."""

from __future__ import annotations

import collections
from collections.abc import Iterable

import pandas as pd


def summary(ratings_df: pd.DataFrame) -> dict[str, float]:
    """Number of users, movies and ratings, and the mean and median rating."""
    return {
        "users": int(ratings_df["UserID"].nunique()),
        "movies": int(ratings_df["MovieID"].nunique()),
        "ratings": len(ratings_df),
        "mean rating": float(ratings_df["Rating"].mean()),
        "median rating": float(ratings_df["Rating"].median()),
    }


def genre_counts(genres: Iterable[str]) -> collections.Counter:
    """Counts genres over ``Genres`` strings such as ``"Animation|Comedy"``."""
    counts = collections.Counter()
    for entry in genres:
        counts.update(entry.split("|"))
    return counts


def top_genres(
    ratings_df: pd.DataFrame, movies_df: pd.DataFrame, user_id: int, n: int = 5
) -> list[tuple[str, int]]:
    """The ``n`` genres a user rated most often, with how many ratings each got.

    Ties keep the order in which genres were first met in the user's ratings (file order),
    as ``collections.Counter.most_common`` does.
    """
    genres_by_movie = movies_df.set_index("MovieID")["Genres"]
    movie_ids = ratings_df.loc[ratings_df["UserID"] == user_id, "MovieID"]
    return genre_counts(genres_by_movie.loc[movie_ids]).most_common(n)
