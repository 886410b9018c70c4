"""Tests for tutorial_utils.data: parsing, verification, download, extraction, fallback.

Nothing here touches the network beyond a server on 127.0.0.1 started by the test. The
tests marked ``real`` need MovieLens 1M and read it from ``FEDRECON_DATA_DIR``; they are
skipped when that is unset or missing.
"""

from __future__ import annotations

import collections
import hashlib
import http.server
import os
import shutil
import socket
import stat
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tutorial_utils import data

GOOD_RATINGS = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
GOOD_MOVIES = (
    "10::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
    "30::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
)
GOOD_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test gets its own cache, no data folder, and no URL off this machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDRECON_CACHE_DIR", str(cache))
    monkeypatch.delenv("FEDRECON_DATA_DIR", raising=False)
    monkeypatch.delenv("FEDRECON_DATASET", raising=False)
    monkeypatch.setenv("FEDRECON_ML1M_URL", f"http://127.0.0.1:{_dead_port()}/ml-1m.zip")
    return cache


def _dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write(path: Path, text: str, encoding: str = "ascii") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def test_read_ratings_parses_the_ml1m_format(tmp_path: Path) -> None:
    ratings = data.read_ratings(_write(tmp_path / "ratings.dat", GOOD_RATINGS))
    assert list(ratings.columns) == ["UserID", "MovieID", "Rating", "Timestamp"]
    assert ratings.dtypes.eq("int64").all()
    assert ratings.values.tolist() == [
        [1, 10, 5, 978300760],
        [1, 20, 3, 978302109],
        [2, 10, 4, 978301968],
    ]


def test_read_movies_keeps_colons_in_titles_and_latin1(tmp_path: Path) -> None:
    movies = data.read_movies(_write(tmp_path / "movies.dat", GOOD_MOVIES, "iso-8859-1"))
    assert movies["MovieID"].tolist() == [10, 20, 30]
    assert movies["Title"][1] == "Star Wars: Episode IV - A New Hope (1977)"
    assert movies["Title"][2] == "Cité des enfants perdus, La (1995)"
    assert movies["Genres"][0] == "Animation|Children's|Comedy"


def test_read_users_parses_the_ml1m_format(tmp_path: Path) -> None:
    users = data.read_users(_write(tmp_path / "users.dat", GOOD_USERS))
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
    with pytest.raises(data.DataFormatError) as caught:
        data.read_ratings(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"line {line}:" in message
    assert words in message


def test_movies_line_with_missing_field_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "movies.dat", "10::Toy Story (1995)::Comedy\n20::Heat (1995)\n")
    with pytest.raises(data.DataFormatError, match=r"movies\.dat: line 2: expected 3 fields"):
        data.read_movies(path)


def test_non_ascii_bytes_in_ratings_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::10::5::978300760\n1::2\xe9::3::978302109\n")
    with pytest.raises(data.DataFormatError, match=r"ratings\.dat: line 2: MovieID '2"):
        data.read_ratings(path)


def test_missing_and_empty_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(data.DataFormatError, match=r"ratings\.dat: file not found"):
        data.read_ratings(tmp_path / "ratings.dat")
    empty = _write(tmp_path / "ratings.dat", "\n")
    with pytest.raises(data.DataFormatError, match=r"ratings\.dat: file is empty"):
        data.read_ratings(empty)


# --------------------------------------------------------------------------------------
# The synthetic stand-in
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic set with the default size, shared by the tests that only read it."""
    return data.make_synthetic_movielens(tmp_path_factory.mktemp("synthetic") / "ml-1m")


def test_synthetic_set_is_deterministic(tmp_path: Path, synthetic_dir: Path) -> None:
    again = data.make_synthetic_movielens(tmp_path / "again")
    other_seed = data.make_synthetic_movielens(tmp_path / "other", seed=1)
    names = ["ratings.dat", "movies.dat", "users.dat", "README.txt"]
    for name in names:
        assert (again / name).read_bytes() == (synthetic_dir / name).read_bytes(), name
    assert (other_seed / "ratings.dat").read_bytes() != (again / "ratings.dat").read_bytes()
    assert sorted(path.name for path in again.iterdir()) == sorted(names)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_synthetic_set_has_the_ml1m_format(synthetic_dir: Path) -> None:
    ratings = data.read_ratings(synthetic_dir / "ratings.dat")
    movies = data.read_movies(synthetic_dir / "movies.dat")
    users = data.read_users(synthetic_dir / "users.dat")
    assert len(users) == 600 and users["UserID"].tolist() == list(range(1, 601))
    assert len(movies) == 400 and movies["Title"][16].startswith("Synthetic Movie 17 (")
    assert movies["Title"].str.fullmatch(r"Synthetic Movie \d+ \(\d{4}\)").all()
    genre_lists = movies["Genres"].str.split("|")
    assert genre_lists.map(len).between(1, 3).all()
    assert set(genre_lists.explode()) <= set(data.GENRES)
    assert set(users["Gender"]) == {"M", "F"}
    assert ratings["UserID"].between(1, 600).all() and ratings["MovieID"].between(1, 400).all()
    assert not ratings.duplicated(["UserID", "MovieID"]).any()
    assert "SYNTHETIC" in (synthetic_dir / "README.txt").read_text()


def test_synthetic_ratings_are_plausible(synthetic_dir: Path) -> None:
    ratings = data.read_ratings(synthetic_dir / "ratings.dat")
    assert sorted(ratings["Rating"].unique()) == [1, 2, 3, 4, 5]
    assert 3.0 < ratings["Rating"].mean() < 4.0
    activity = ratings.groupby("UserID").size()
    assert activity.min() >= 20
    assert activity.max() >= 4 * activity.median()  # heavy tail
    popularity = ratings.groupby("MovieID").size()
    assert popularity.max() >= 5 * popularity.min()  # skewed popularity


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


def test_make_synthetic_refuses_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        data.make_synthetic_movielens(tmp_path / "taken")


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


def _zip_folder(folder: Path, zip_path: Path, prefix: str = "ml-1m/") -> Path:
    """Zip the .dat files of ``folder`` under ``prefix`` (stored, for speed)."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in ("ratings.dat", "movies.dat", "users.dat"):
            archive.write(folder / name, prefix + name)
    return zip_path


def test_corrupt_zip_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "ml-1m.zip"
    bogus.write_bytes(b"this is not a zip archive" * 10)
    dest = tmp_path / "dest"
    with pytest.raises(data.DataFormatError, match=r"ml-1m\.zip: not a valid zip"):
        data.extract_ml1m(bogus, dest)
    assert list(dest.iterdir()) == []


def test_zip_with_bad_crc_is_rejected(tmp_path: Path) -> None:
    zip_path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-1m/ratings.dat", GOOD_RATINGS)
    content = zip_path.read_bytes()
    zip_path.write_bytes(content.replace(b"978300760", b"978300761"))
    with pytest.raises(data.DataFormatError) as caught:
        data.extract_ml1m(zip_path, tmp_path / "dest")
    assert "ml-1m.zip" in str(caught.value) and "ml-1m/ratings.dat" in str(caught.value)


def _symlink_member(name: str) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name)
    member.external_attr = (stat.S_IFLNK | 0o777) << 16
    return member


@pytest.mark.parametrize(
    "member",
    [
        zipfile.ZipInfo("ml-1m/../../evil.dat"),
        zipfile.ZipInfo("../evil.dat"),
        zipfile.ZipInfo("/tmp/evil.dat"),
        _symlink_member("ml-1m/evil.dat"),
    ],
    ids=["nested-dotdot", "dotdot", "absolute", "symlink"],
)
def test_zip_slip_members_are_rejected(tmp_path: Path, member: zipfile.ZipInfo) -> None:
    zip_path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", GOOD_RATINGS)
        archive.writestr(member, "../../outside")
    dest = tmp_path / "dest"
    with pytest.raises(data.DataFormatError) as caught:
        data.extract_ml1m(zip_path, dest)
    assert "ml-1m.zip" in str(caught.value) and member.filename in str(caught.value)
    assert list(dest.iterdir()) == []
    assert not list(tmp_path.rglob("evil.dat"))


def test_zip_without_movielens_content_leaves_nothing(tmp_path: Path, synthetic_dir: Path) -> None:
    zip_path = _zip_folder(synthetic_dir, tmp_path / "ml-1m.zip")
    dest = tmp_path / "dest"
    with pytest.raises(data.DataFormatError, match=r"ml-1m\.zip: does not hold MovieLens 1M"):
        data.extract_ml1m(zip_path, dest)
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------------------
# Download from a server on 127.0.0.1
# --------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; paths starting with /truncated promise more than they send."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = self.path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        announced = len(body) + (1000 if self.path.startswith("/truncated/") else 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server(tmp_path: Path, synthetic_dir: Path) -> Iterator[tuple[str, bytes]]:
    """A server on 127.0.0.1 serving a small ml-1m.zip; yields (base URL, zip bytes)."""
    zip_bytes = _zip_folder(synthetic_dir, tmp_path / "served.zip").read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"ml-1m.zip": zip_bytes}  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", zip_bytes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_happy_path(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, zip_bytes = server
    cache = tmp_path / "downloads"
    md5 = hashlib.md5(zip_bytes).hexdigest()
    path = data.download_ml1m(f"{base}/ml-1m.zip", cache, md5=md5, progress=True)
    assert path == cache / "ml-1m.zip"
    assert path.read_bytes() == zip_bytes
    assert [p.name for p in cache.iterdir()] == ["ml-1m.zip"]


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, _ = server
    cache = tmp_path / "downloads"
    with pytest.raises(data.DataFormatError) as caught:
        data.download_ml1m(f"{base}/ml-1m.zip", cache, md5="0" * 32, progress=False)
    assert "ml-1m.zip" in str(caught.value) and "md5" in str(caught.value)
    assert list(cache.iterdir()) == []


def test_truncated_download_leaves_nothing(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, zip_bytes = server
    cache = tmp_path / "downloads"
    with pytest.raises(data.DataFormatError, match="truncated") as caught:
        data.download_ml1m(f"{base}/truncated/ml-1m.zip", cache, md5=None, progress=False)
    assert "ml-1m.zip" in str(caught.value)
    assert f"of {len(zip_bytes) + 1000:,} bytes" in str(caught.value)
    assert list(cache.iterdir()) == []


def test_http_errors_are_unavailable(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, _ = server
    cache = tmp_path / "downloads"
    with pytest.raises(data.DataUnavailableError, match="HTTP 404"):
        data.download_ml1m(f"{base}/missing.zip", cache, progress=False)
    with pytest.raises(data.DataUnavailableError, match="FEDRECON_DATA_DIR"):
        data.download_ml1m(f"http://127.0.0.1:{_dead_port()}/ml-1m.zip", cache, progress=False)
    assert list(cache.iterdir()) == []


def test_plain_http_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to open a connection")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)
    with pytest.raises(ValueError, match="only https"):
        data.download_ml1m("http://example.com/ml-1m.zip", tmp_path, progress=False)
    with pytest.raises(ValueError, match="only https"):
        data.download_ml1m("ftp://127.0.0.1/ml-1m.zip", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


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
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Path, server: tuple[str, bytes]
) -> None:
    base, _ = server  # serves a synthetic zip, so GroupLens' md5 cannot match
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
def real_frames(real_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return data.load_movielens(real_dir)


def test_real_data_verifies(real_dir: Path) -> None:
    data.verify_movielens(real_dir)


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


def test_real_copy_missing_a_line_fails_verification(tmp_path: Path, real_dir: Path) -> None:
    copy = tmp_path / "ml-1m"
    copy.mkdir()
    for name in ("movies.dat", "users.dat"):
        shutil.copyfile(real_dir / name, copy / name)
    lines = (real_dir / "ratings.dat").read_bytes().splitlines(keepends=True)
    (copy / "ratings.dat").write_bytes(b"".join(lines[:500] + lines[501:]))
    with pytest.raises(data.DataFormatError) as caught:
        data.verify_movielens(copy)
    assert "ratings.dat" in str(caught.value)
    message = str(caught.value)
    assert "expected 1,000,209 lines" in message and "found 1,000,208" in message


def test_real_zip_is_extracted_into_the_cache(
    tmp_path: Path, real_dir: Path, isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zip_path = _zip_folder(real_dir, tmp_path / "ml-1m.zip")
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
