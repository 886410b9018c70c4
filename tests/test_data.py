"""Tests for tutorial_utils.data: finding the data for a run, the fallback, and loading.

Nothing here touches the network beyond a server on 127.0.0.1 started by the test. The
tests marked ``real`` need MovieLens 1M and read it from ``FEDRECON_DATA_DIR``; they are
skipped when that is unset or missing.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pandas as pd
import pytest
from test_download import dead_port, serving_zip_of, zip_folder
from test_movielens_files import real_ml1m_folder

from tutorial_utils import data
from tutorial_utils.plumbing import synthetic_movielens


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test gets its own cache, no data folder, and no URL off this machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDRECON_CACHE_DIR", str(cache))
    monkeypatch.delenv("FEDRECON_DATA_DIR", raising=False)
    monkeypatch.delenv("FEDRECON_DATASET", raising=False)
    monkeypatch.setenv("FEDRECON_ML1M_URL", f"http://127.0.0.1:{dead_port()}/ml-1m.zip")
    return cache


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic set with the default size, shared by the tests that only read it."""
    return synthetic_movielens.make_synthetic_movielens(
        tmp_path_factory.mktemp("synthetic") / "ml-1m"
    )


# --------------------------------------------------------------------------------------
# load_movielens on the synthetic stand-in
# --------------------------------------------------------------------------------------


def test_synthetic_users_have_different_favourite_genres(synthetic_dir: Path) -> None:
    ratings, movies = data.load_movielens(synthetic_dir)
    favourites = {_top_genres(ratings, movies, user)[0][0] for user in range(100)}
    assert len(favourites) >= 4


def test_synthetic_load_renumbers_from_zero(synthetic_dir: Path) -> None:
    ratings, movies = data.load_movielens(synthetic_dir)
    assert ratings["UserID"].min() == 0 and ratings["UserID"].max() == 599
    rated = ratings["MovieID"].nunique()
    assert sorted(ratings["MovieID"].unique()) == list(range(rated))
    assert movies["MovieID"].tolist() == list(range(rated))
    assert movies["MovieID"].dtype == "int64"


def test_load_accepts_a_folder_holding_ml1m(synthetic_dir: Path) -> None:
    assert synthetic_dir.name == "ml-1m"
    from_parent, _ = data.load_movielens(synthetic_dir.parent)
    from_folder, _ = data.load_movielens(synthetic_dir)
    pd.testing.assert_frame_equal(from_parent, from_folder)


# --------------------------------------------------------------------------------------
# find_movielens: where the data come from, and the fallback
# --------------------------------------------------------------------------------------


def test_auto_falls_back_to_synthetic_loudly(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = data.find_movielens(progress=False)
    assert source.is_synthetic and source.kind == "synthetic"
    assert source.directory == isolated_settings / "synthetic-ml-1m"
    out = capsys.readouterr().out
    assert "REAL MOVIELENS 1M DATA WAS NOT FOUND" in out
    assert "FEDRECON_DATA_DIR" in out and "SYNTHETIC STAND-IN" in out
    assert f"Data: {source.description}" in out
    assert source.description.startswith("SYNTHETIC stand-in for MovieLens 1M")


def test_movielens_mode_explains_how_to_provide_data(isolated_settings: Path) -> None:
    with pytest.raises(data.DataUnavailableError) as caught:
        data.find_movielens(choice="movielens", progress=False)
    message = str(caught.value)
    assert "FEDRECON_DATA_DIR" in message and "FEDRECON_DATASET=synthetic" in message
    assert str(isolated_settings / "ml-1m.zip") in message
    assert not (isolated_settings / "synthetic-ml-1m").exists()


def test_synthetic_mode_builds_once_and_reuses(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDRECON_DATASET", "synthetic")
    first = data.find_movielens()
    stamp = (first.directory / "ratings.dat").stat().st_mtime_ns
    second = data.find_movielens()
    assert first == second and first.is_synthetic
    assert (second.directory / "ratings.dat").stat().st_mtime_ns == stamp
    assert "NOT FOUND" not in capsys.readouterr().out


def test_wrong_local_data_is_never_replaced_by_synthetic(
    monkeypatch: pytest.MonkeyPatch, synthetic_dir: Path
) -> None:
    monkeypatch.setenv("FEDRECON_DATA_DIR", str(synthetic_dir))
    for choice in ("auto", "movielens"):
        with pytest.raises(data.DataFormatError, match=r"movies\.dat: sha256 is"):
            data.find_movielens(choice=choice, progress=False)


def test_missing_data_dir_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDRECON_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataFormatError, match="nowhere: does not exist"):
        data.find_movielens(progress=False)
    with pytest.raises(data.DataFormatError, match=r"ratings\.dat: file not found"):
        data.find_movielens(tmp_path, progress=False)


def test_download_with_wrong_checksum_is_not_replaced(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Path, synthetic_dir: Path, tmp_path: Path
) -> None:
    # The server serves a synthetic zip, so GroupLens' md5 cannot match.
    with serving_zip_of(synthetic_dir, tmp_path) as (base, _):
        monkeypatch.setenv("FEDRECON_ML1M_URL", f"{base}/ml-1m.zip")
        with pytest.raises(data.DataFormatError, match="md5"):
            data.find_movielens(progress=False)
        assert list(isolated_settings.iterdir()) == []


# --------------------------------------------------------------------------------------
# Real MovieLens 1M (FEDRECON_DATA_DIR)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_dir() -> Path:
    """The real ML-1M folder named by FEDRECON_DATA_DIR; skips when it is not there."""
    return real_ml1m_folder()


@pytest.fixture(scope="module")
def real_frames(real_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return data.load_movielens(real_dir)


def test_real_data_loads_with_the_tutorial_facts(
    real_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    ratings, movies = real_frames
    assert len(ratings) == 1_000_209
    assert ratings["UserID"].nunique() == 6040 and ratings["UserID"].max() == 6039
    assert ratings["MovieID"].nunique() == 3706 and ratings["MovieID"].max() == 3705
    assert ratings["Rating"].mean() == pytest.approx(3.581564453029317, abs=1e-12)
    assert ratings["Rating"].median() == 4.0
    assert len(movies) == 3706 and movies["MovieID"].dtype == "int64"
    assert movies["MovieID"].tolist() == list(range(3706))
    # First line of ratings.dat is 1::1193::5: user 0; 1193 is the 1105th rated id.
    assert ratings.iloc[0][["UserID", "MovieID", "Rating"]].tolist() == [0, 1104, 5]


def _top_genres(ratings: pd.DataFrame, movies: pd.DataFrame, user: int) -> list[tuple[str, int]]:
    """The tutorial's count: genres of the user's rated movies, in ratings file order."""
    rated = ratings.loc[ratings["UserID"] == user, ["MovieID"]]
    genres = rated.merge(movies, on="MovieID", how="left")["Genres"]
    return collections.Counter(g for text in genres for g in text.split("|")).most_common(5)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (
            0,
            [("Drama", 21), ("Children's", 20), ("Animation", 18), ("Musical", 14), ("Comedy", 14)],
        ),
        (10, [("Comedy", 84), ("Drama", 54), ("Romance", 22), ("Thriller", 18), ("Action", 9)]),
        (19, [("Action", 17), ("Sci-Fi", 9), ("Thriller", 9), ("Drama", 6), ("Crime", 5)]),
    ],
)
def test_real_data_top_genres(
    real_frames: tuple[pd.DataFrame, pd.DataFrame], user: int, expected: list[tuple[str, int]]
) -> None:
    assert _top_genres(*real_frames, user) == expected


def test_real_zip_is_extracted_into_the_cache(
    tmp_path: Path, real_dir: Path, isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zip_path = zip_folder(real_dir, tmp_path / "ml-1m.zip")
    source = data.find_movielens(zip_path, choice="movielens", progress=False)
    assert source.kind == "movielens" and not source.is_synthetic
    assert source.directory == isolated_settings / "ml-1m"
    assert sorted(p.name for p in isolated_settings.iterdir()) == ["ml-1m"]
    # A second run (now without the zip) finds the verified copy in the cache.
    zip_path.unlink()
    again = data.find_movielens(choice="movielens", progress=False)
    assert again.directory == source.directory
    assert "Data: MovieLens 1M (GroupLens), from" in capsys.readouterr().out


def test_real_data_dir_is_used_as_is(
    monkeypatch: pytest.MonkeyPatch, real_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDRECON_DATA_DIR", str(real_dir))
    source = data.find_movielens(progress=False)
    assert source.directory == real_dir and source.kind == "movielens"
    assert capsys.readouterr().out.strip() == f"Data: MovieLens 1M (GroupLens), from {real_dir}"


def test_remap_ids_numbers_the_rated_ids_in_sorted_order_and_drops_unrated_movies() -> None:
    ratings = pd.DataFrame(
        {"UserID": [7, 3, 7], "MovieID": [50, 10, 30], "Rating": [5, 3, 4], "Timestamp": [1, 2, 3]}
    )
    movies = pd.DataFrame(
        {"MovieID": [10, 20, 30, 50], "Title": list("abcd"), "Genres": ["Drama"] * 4}
    )
    new_ratings, new_movies = data.remap_ids(ratings, movies)
    assert new_ratings["UserID"].tolist() == [1, 0, 1]
    assert new_ratings["MovieID"].tolist() == [2, 0, 1]
    assert new_ratings["Rating"].tolist() == [5, 3, 4]
    assert new_movies["MovieID"].tolist() == [0, 1, 2]
    assert new_movies["Title"].tolist() == ["a", "c", "d"]
    assert ratings["UserID"].tolist() == [7, 3, 7]  # the tables given are unchanged


def test_load_is_read_then_remap(synthetic_dir: Path) -> None:
    loaded = data.load_movielens(synthetic_dir)
    remapped = data.remap_ids(*data.read_movielens(synthetic_dir))
    for ours, theirs in zip(loaded, remapped):
        pd.testing.assert_frame_equal(ours, theirs)


def test_summary_and_top_genres():
    ratings = pd.DataFrame(
        {"UserID": [0, 0, 0, 1], "MovieID": [0, 1, 2, 2], "Rating": [5, 3, 4, 1]}
    )
    movies = pd.DataFrame(
        {
            "MovieID": [0, 1, 2],
            "Title": ["a", "b", "c"],
            "Genres": ["Drama|Comedy", "Comedy", "Action"],
        }
    )
    assert data.summary(ratings) == {
        "users": 2,
        "movies": 3,
        "ratings": 4,
        "mean rating": 3.25,
        "median rating": 3.5,
    }
    assert data.top_genres(ratings, movies, 0) == [
        ("Comedy", 2),
        ("Drama", 1),
        ("Action", 1),
    ]
    assert data.top_genres(ratings, movies, 1, n=1) == [("Action", 1)]
    assert data.genre_counts(["A|B", "B"]) == {"A": 1, "B": 2}
