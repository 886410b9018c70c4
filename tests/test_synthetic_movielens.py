"""Tests for tutorial_utils.plumbing.synthetic_movielens: the stand-in for MovieLens 1M."""

from __future__ import annotations

from pathlib import Path

import pytest

from tutorial_utils.plumbing import movielens_files, synthetic_movielens


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic set with the default size, shared by the tests that only read it."""
    return synthetic_movielens.make_synthetic_movielens(
        tmp_path_factory.mktemp("synthetic") / "ml-1m"
    )


def test_synthetic_set_is_deterministic(tmp_path: Path, synthetic_dir: Path) -> None:
    again = synthetic_movielens.make_synthetic_movielens(tmp_path / "again")
    other_seed = synthetic_movielens.make_synthetic_movielens(tmp_path / "other", seed=1)
    names = ["ratings.dat", "movies.dat", "users.dat", "README.txt"]
    for name in names:
        assert (again / name).read_bytes() == (synthetic_dir / name).read_bytes(), name
    assert (other_seed / "ratings.dat").read_bytes() != (again / "ratings.dat").read_bytes()
    assert sorted(path.name for path in again.iterdir()) == sorted(names)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_synthetic_set_has_the_ml1m_format(synthetic_dir: Path) -> None:
    ratings = movielens_files.read_ratings(synthetic_dir / "ratings.dat")
    movies = movielens_files.read_movies(synthetic_dir / "movies.dat")
    users = movielens_files.read_users(synthetic_dir / "users.dat")
    assert len(users) == 600 and users["UserID"].tolist() == list(range(1, 601))
    assert len(movies) == 400 and movies["Title"][16].startswith("Synthetic Movie 17 (")
    assert movies["Title"].str.fullmatch(r"Synthetic Movie \d+ \(\d{4}\)").all()
    genre_lists = movies["Genres"].str.split("|")
    assert genre_lists.map(len).between(1, 3).all()
    assert set(genre_lists.explode()) <= set(movielens_files.GENRES)
    assert set(users["Gender"]) == {"M", "F"}
    assert ratings["UserID"].between(1, 600).all() and ratings["MovieID"].between(1, 400).all()
    assert not ratings.duplicated(["UserID", "MovieID"]).any()
    assert "SYNTHETIC" in (synthetic_dir / "README.txt").read_text()


def test_synthetic_ratings_are_plausible(synthetic_dir: Path) -> None:
    ratings = movielens_files.read_ratings(synthetic_dir / "ratings.dat")
    assert sorted(ratings["Rating"].unique()) == [1, 2, 3, 4, 5]
    assert 3.0 < ratings["Rating"].mean() < 4.0
    activity = ratings.groupby("UserID").size()
    assert activity.min() >= 20
    assert activity.max() >= 4 * activity.median()  # heavy tail
    popularity = ratings.groupby("MovieID").size()
    assert popularity.max() >= 5 * popularity.min()  # skewed popularity


def test_make_synthetic_refuses_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        synthetic_movielens.make_synthetic_movielens(tmp_path / "taken")
