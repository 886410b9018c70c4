"""Tests for tutorial_utils.plumbing.movielens_files: parsing the .dat files and verifying a
real copy.

The tests marked ``real`` need MovieLens 1M and read it from ``FEDRECON_DATA_DIR``; they are
skipped when that is unset or missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tutorial_utils.plumbing import movielens_files

GOOD_RATINGS = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
GOOD_MOVIES = (
    "10::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
    "30::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
)
GOOD_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"


def _write(path: Path, text: str, encoding: str = "ascii") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def test_read_ratings_parses_the_ml1m_format(tmp_path: Path) -> None:
    ratings = movielens_files.read_ratings(_write(tmp_path / "ratings.dat", GOOD_RATINGS))
    assert list(ratings.columns) == ["UserID", "MovieID", "Rating", "Timestamp"]
    assert ratings.dtypes.eq("int64").all()
    assert ratings.values.tolist() == [
        [1, 10, 5, 978300760],
        [1, 20, 3, 978302109],
        [2, 10, 4, 978301968],
    ]


def test_read_movies_keeps_colons_in_titles_and_latin1(tmp_path: Path) -> None:
    movies = movielens_files.read_movies(_write(tmp_path / "movies.dat", GOOD_MOVIES, "iso-8859-1"))
    assert movies["MovieID"].tolist() == [10, 20, 30]
    assert movies["Title"][1] == "Star Wars: Episode IV - A New Hope (1977)"
    assert movies["Title"][2] == "Cité des enfants perdus, La (1995)"
    assert movies["Genres"][0] == "Animation|Children's|Comedy"


def test_read_users_parses_the_ml1m_format(tmp_path: Path) -> None:
    users = movielens_files.read_users(_write(tmp_path / "users.dat", GOOD_USERS))
    assert list(users.columns) == ["UserID", "Gender", "Age", "Occupation", "Zip-code"]
    assert users.iloc[1].tolist() == [2, "M", 56, 16, "70072"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1\t10\t5\t978300760\n", 1, "tabs"),
        ("1::10::5::978300760\n1,20,3,978302109\n", 2, "commas"),
        ("1::10::5::978300760\n1::20::3\n2::10::4::978301968\n", 2, "found 3"),
        ("1::10::5::978300760\n1::20::3::978302109::7\n", 2, "found 5"),
        ("1::10::5::978300760\n\n2::10::4::978301968\n", 2, "found 1"),
        ("1::10::5::978300760\n1::20::3::978302109\nx2::10::4::978301968\n", 3, "UserID 'x2'"),
        ("1::10::5::978300760\n1::2.5::3::978302109\n", 2, "MovieID '2.5'"),
        ("1::10::5::978300760\n1::20::0::978302109\n", 2, "Rating 0"),
        ("1::10::5::978300760\n1::20::3::9\n1::30::2::1\n2::10::6::978301968\n", 4, "Rating 6"),
        ("1::10::5::978300760\n0::20::3::978302109\n", 2, "UserID 0"),
        ("1::10::5::978300760\n1::20::3::978302109\n2::1O::4::978301968\n", 3, "MovieID '1O'"),
    ],
)
def test_bad_ratings_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = _write(tmp_path / "ratings.dat", text)
    with pytest.raises(movielens_files.DataFormatError) as caught:
        movielens_files.read_ratings(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"line {line}:" in message
    assert words in message


def test_movies_line_with_missing_field_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "movies.dat", "10::Toy Story (1995)::Comedy\n20::Heat (1995)\n")
    with pytest.raises(
        movielens_files.DataFormatError, match=r"movies\.dat: line 2: expected 3 fields"
    ):
        movielens_files.read_movies(path)


def test_non_ascii_bytes_in_ratings_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::10::5::978300760\n1::2\xe9::3::978302109\n")
    with pytest.raises(movielens_files.DataFormatError, match=r"ratings\.dat: line 2: MovieID '2"):
        movielens_files.read_ratings(path)


def test_missing_and_empty_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(movielens_files.DataFormatError, match=r"ratings\.dat: file not found"):
        movielens_files.read_ratings(tmp_path / "ratings.dat")
    empty = _write(tmp_path / "ratings.dat", "\n")
    with pytest.raises(movielens_files.DataFormatError, match=r"ratings\.dat: file is empty"):
        movielens_files.read_ratings(empty)


# --------------------------------------------------------------------------------------
# Verifying a real copy (FEDRECON_DATA_DIR)
# --------------------------------------------------------------------------------------


def real_ml1m_folder() -> Path:
    """The real ML-1M folder named by FEDRECON_DATA_DIR; skips the test when it is not there."""
    value = os.environ.get("FEDRECON_DATA_DIR", "").strip()
    if not value:
        pytest.skip("FEDRECON_DATA_DIR is not set: no real MovieLens 1M to test against")
    folder = Path(value).expanduser()
    if (folder / "ml-1m").is_dir():
        folder = folder / "ml-1m"
    if not (folder / "ratings.dat").is_file():
        pytest.skip(f"FEDRECON_DATA_DIR={value} holds no ratings.dat")
    return folder


@pytest.fixture(scope="module")
def real_dir() -> Path:
    """The real ML-1M folder named by FEDRECON_DATA_DIR; skips when it is not there."""
    return real_ml1m_folder()


def test_real_data_verifies(real_dir: Path) -> None:
    movielens_files.verify_movielens(real_dir)


def test_real_copy_missing_a_line_fails_verification(tmp_path: Path, real_dir: Path) -> None:
    copy = tmp_path / "ml-1m"
    copy.mkdir()
    for name in ("movies.dat", "users.dat"):
        shutil.copyfile(real_dir / name, copy / name)
    lines = (real_dir / "ratings.dat").read_bytes().splitlines(keepends=True)
    (copy / "ratings.dat").write_bytes(b"".join(lines[:500] + lines[501:]))
    with pytest.raises(movielens_files.DataFormatError) as caught:
        movielens_files.verify_movielens(copy)
    assert "ratings.dat" in str(caught.value)
    message = str(caught.value)
    assert "expected 1,000,209 lines" in message and "found 1,000,208" in message
