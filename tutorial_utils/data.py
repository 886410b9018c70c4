"""MovieLens 1M: find it, load it, summarize it.

The tutorial needs GroupLens' MovieLens 1M ("ML-1M"): about a million ratings (1 to 5
stars) that 6040 users gave to 3706 movies. Its license forbids redistribution, so the
project never ships the files. :func:`find_movielens` (from
``tutorial_utils.plumbing.movielens_source``) locates them (``FEDRECON_DATA_DIR``, the
cache, a download) or falls back, loudly, to a synthetic stand-in in the same format.

:func:`load_movielens` then reads the files and renumbers users and movies from 0, exactly
as the original TensorFlow Federated tutorial does; :func:`summary` and
:func:`top_genres` are the statistics notebook 01 explores.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from tutorial_utils.plumbing.download import DataUnavailableError
from tutorial_utils.plumbing.movielens_files import (
    DataFormatError,
    _dat_folder,
    read_movies,
    read_ratings,
)
from tutorial_utils.plumbing.movielens_source import MovieLensSource, find_movielens

# find_movielens and the errors a learner may meet are part of this module's interface.
__all__ = [
    "DataFormatError",
    "DataUnavailableError",
    "MovieLensSource",
    "find_movielens",
    "genre_counts",
    "load_movielens",
    "read_movielens",
    "remap_ids",
    "summary",
    "top_genres",
]


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def read_movielens(
    source: MovieLensSource | str | os.PathLike,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ratings and movies tables as the files have them, with GroupLens' IDs.

    ``source`` is a :class:`MovieLensSource` or a folder (or a parent holding ``ml-1m/``).
    """
    if isinstance(source, MovieLensSource):
        folder = source.directory
    else:
        folder = _dat_folder(Path(source).expanduser())
    return read_ratings(folder / "ratings.dat"), read_movies(folder / "movies.dat")


def remap_ids(ratings: pd.DataFrame, movies: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Renumbers users and movies ``0 .. n-1``, as notebook 01 does on the page.

    The new IDs follow the sorted order of the IDs that occur in ``ratings``; ``movies``
    keeps only the rated movies (in order, so its index equals the new MovieID). Ratings
    keep the file's row order. The tables given are not changed.
    """
    user_ids = np.sort(ratings["UserID"].unique())
    movie_ids = np.sort(ratings["MovieID"].unique())
    new_user_id = {old: new for new, old in enumerate(user_ids)}
    new_movie_id = {old: new for new, old in enumerate(movie_ids)}
    ratings = ratings.copy()
    ratings["UserID"] = ratings["UserID"].map(new_user_id)
    ratings["MovieID"] = ratings["MovieID"].map(new_movie_id)
    movies = movies[movies["MovieID"].isin(movie_ids)].reset_index(drop=True)
    movies["MovieID"] = movies["MovieID"].map(new_movie_id)
    return ratings, movies


def load_movielens(
    source: MovieLensSource | str | os.PathLike,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ratings and movies and renumber IDs from 0 as the original TFF tutorial does:
    :func:`read_movielens`, then :func:`remap_ids`.

    UserID and MovieID become 0..n-1 in the sorted order of the IDs that occur in
    ``ratings.dat``; ``movies`` keeps only the rated movies, with the same new MovieID
    (in order, so its index equals MovieID). Ratings keep the file's row order.
    ``source`` is a :class:`MovieLensSource` or a folder (or a parent holding ``ml-1m/``).
    """
    return remap_ids(*read_movielens(source))


# Summaries of the ratings


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
