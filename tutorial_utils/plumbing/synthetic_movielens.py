"""A synthetic stand-in for MovieLens 1M, in the exact file format of the real data.

:func:`make_synthetic_movielens` draws users, movies and ratings from a random low-rank
model with genre tastes, and writes ``ratings.dat``, ``movies.dat``, ``users.dat`` and a
README that says the data are not real.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tutorial_utils.plumbing.download import ML1M_PAGE, _move_into_place, _new_workspace
from tutorial_utils.plumbing.movielens_files import _RATINGS, GENRES

# Relative genre frequencies, roughly as in ML-1M's movies.dat (Drama and Comedy lead).
_GENRE_WEIGHTS = np.array(
    [50, 28, 11, 25, 120, 21, 13, 160, 7, 4, 34, 11, 11, 47, 28, 49, 14, 7], dtype=float
)
_RANK = 5  # dimension of the hidden user and movie factors
_MEAN_SCORE = 3.0  # before clipping and the users' preference for movies they like
_TASTE = 3.0  # how strongly users pick movies that match their taste
_FIRST_TIMESTAMP, _LAST_TIMESTAMP = 956_703_932, 1_046_454_590  # ML-1M's time span
_AGES, _AGE_SHARES = (1, 18, 25, 35, 45, 50, 56), (0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06)


def make_synthetic_movielens(
    directory: str | os.PathLike,
    *,
    num_users: int = 600,
    num_movies: int = 400,
    seed: int = 0,
) -> Path:
    """Write a synthetic data set in ML-1M's exact file format into ``directory``.

    It stands in for MovieLens 1M where the real data are unavailable; it is NOT real.
    Each movie has 1-3 genres; each user rates at least 20 movies, with a heavy-tailed
    number of ratings, chosen with a skewed popularity and the user's taste. Ratings are
    ``clip(round(mean + user bias + movie bias + user . movie + noise), 1, 5)`` with
    rank-5 factors; movie factors come from their genres, so users have visible genre
    preferences. The same arguments always give byte-identical files.

    The files are written to a temporary folder and renamed to ``directory``, which must
    not exist yet (:class:`FileExistsError` otherwise). Returns ``directory``.
    """
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory}: already exists; not overwriting it")
    if num_movies < 20:
        raise ValueError("num_movies must be at least 20 (every user rates at least 20 movies)")
    rng = np.random.default_rng(seed)
    movie_genres = _draw_movie_genres(rng, num_movies)
    ratings = _draw_ratings(rng, movie_genres, num_users)
    files = {
        "ratings.dat": _ratings_text(ratings).encode("ascii"),
        "movies.dat": _movies_text(rng, movie_genres).encode("iso-8859-1"),
        "users.dat": _users_text(rng, num_users).encode("ascii"),
        "README.txt": _readme_text(num_users, num_movies, seed, len(ratings)).encode("ascii"),
    }
    _write_folder(directory, files)
    return directory


def _draw_movie_genres(rng: np.random.Generator, num_movies: int) -> list[np.ndarray]:
    """1-3 distinct genre indices per movie, common genres more likely.

    The square root flattens ML-1M's genre frequencies a little, so that the rarer genres
    have enough movies to be some users' favourites.
    """
    shares = np.sqrt(_GENRE_WEIGHTS)
    shares /= shares.sum()
    counts = rng.choice([1, 2, 3], size=num_movies, p=[0.5, 0.37, 0.13])
    return [np.sort(rng.choice(len(GENRES), size=k, replace=False, p=shares)) for k in counts]


def _draw_ratings(
    rng: np.random.Generator, movie_genres: list[np.ndarray], num_users: int
) -> pd.DataFrame:
    """Who rates what and how, from a low-rank model; rows grouped by user, 1-based ids."""
    num_movies = len(movie_genres)
    genre_factors = rng.normal(0.0, 0.7, size=(len(GENRES), _RANK))
    movie_factors = np.stack([genre_factors[g].mean(axis=0) for g in movie_genres])
    movie_factors += rng.normal(0.0, 0.2, size=movie_factors.shape)
    user_factors = rng.normal(0.0, 0.6, size=(num_users, _RANK))
    user_bias = rng.normal(0.0, 0.35, size=num_users)
    popularity = rng.permutation(1.0 / np.arange(1, num_movies + 1) ** 1.2)
    log_popularity = np.log(popularity)
    # Popular movies are rated a little higher, as in the real data.
    movie_bias = 0.2 * (log_popularity - log_popularity.mean()) / log_popularity.std()
    movie_bias += rng.normal(0.0, 0.3, size=num_movies)
    activity = 20 + np.rint(rng.lognormal(np.log(45.0), 1.0, size=num_users)).astype(int)
    activity = np.minimum(activity, num_movies)

    frames = []
    for user in range(num_users):
        affinity = movie_factors @ user_factors[user]
        taste = _softmax(log_popularity + _TASTE * affinity)
        chosen = rng.choice(num_movies, size=activity[user], replace=False, p=taste)
        score = _MEAN_SCORE + user_bias[user] + movie_bias[chosen] + affinity[chosen]
        score += rng.normal(0.0, 0.9, size=len(chosen))
        frames.append(
            pd.DataFrame(
                {
                    "UserID": user + 1,
                    "MovieID": chosen + 1,
                    "Rating": np.clip(np.rint(score), 1, 5).astype(np.int64),
                    "Timestamp": _draw_timestamps(rng, len(chosen)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities proportional to ``exp(logits)``."""
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _draw_timestamps(rng: np.random.Generator, count: int) -> np.ndarray:
    """Unix times of one user's ratings: a start date and a burst of activity after it."""
    start = rng.integers(_FIRST_TIMESTAMP, _LAST_TIMESTAMP - 86_400)
    span = 3_600 + rng.exponential(30 * 86_400)
    times = start + rng.uniform(0.0, span, size=count).astype(np.int64)
    return np.minimum(times, _LAST_TIMESTAMP)


def _ratings_text(ratings: pd.DataFrame) -> str:
    """``UserID::MovieID::Rating::Timestamp`` lines."""
    rows = zip(*(ratings[column].tolist() for column in _RATINGS.columns))
    return "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows)


def _movies_text(rng: np.random.Generator, movie_genres: list[np.ndarray]) -> str:
    """``MovieID::Title (Year)::Genre|Genre`` lines, mostly 1990s release years."""
    years = 2000 - np.minimum(rng.exponential(9.0, size=len(movie_genres)), 80).astype(int)
    return "".join(
        f"{number}::Synthetic Movie {number} ({year})::{'|'.join(GENRES[g] for g in genres)}\n"
        for number, (year, genres) in enumerate(zip(years, movie_genres), start=1)
    )


def _users_text(rng: np.random.Generator, num_users: int) -> str:
    """``UserID::Gender::Age::Occupation::Zip-code`` lines with ML-1M's codes."""
    genders = rng.choice(["M", "F"], size=num_users, p=[0.72, 0.28])
    ages = rng.choice(_AGES, size=num_users, p=_AGE_SHARES)
    occupations = rng.integers(0, 21, size=num_users)
    zips = rng.integers(0, 100_000, size=num_users)
    return "".join(
        f"{number}::{gender}::{age}::{occupation}::{zip_code:05d}\n"
        for number, (gender, age, occupation, zip_code) in enumerate(
            zip(genders, ages, occupations, zips), start=1
        )
    )


def _readme_text(num_users: int, num_movies: int, seed: int, num_ratings: int) -> str:
    """The README that marks the folder as synthetic."""
    return (
        "SYNTHETIC stand-in for MovieLens 1M -- NOT real ratings.\n"
        "\n"
        "Generated by tutorial_utils.plumbing.synthetic_movielens.make_synthetic_movielens("
        f"num_users={num_users}, num_movies={num_movies}, seed={seed}):\n"
        f"{num_ratings} ratings in the MovieLens 1M file format (ratings.dat, movies.dat,\n"
        "users.dat), drawn from a random low-rank model. It lets the tutorial run where\n"
        "the real data cannot be obtained; results on it say nothing about real users.\n"
        f"Real MovieLens 1M: {ML1M_PAGE}\n"
    )


def _write_folder(directory: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary sibling folder, then rename it to ``directory``."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    workspace = _new_workspace(directory.parent / f".{directory.name}.tmp")
    try:
        for name, content in files.items():
            (workspace / name).write_bytes(content)
        if not _move_into_place(workspace, directory):
            raise FileExistsError(f"{directory}: was created by another process meanwhile")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
