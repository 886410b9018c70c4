"""Find, download, verify and load MovieLens 1M, or build a synthetic stand-in.

The tutorial needs GroupLens' MovieLens 1M ("ML-1M"): about a million ratings (1 to 5
stars) that 6040 users gave to 3706 movies. Its license forbids redistribution, so the
project never ships the files; :func:`find_movielens` locates or downloads them instead:

1. an explicit ``source`` argument, else the ``FEDRECON_DATA_DIR`` setting: a folder with
   ``ratings.dat``, ``movies.dat`` and ``users.dat`` (or its parent holding ``ml-1m/``),
   or the ``ml-1m.zip`` archive itself;
2. a copy already extracted into the cache folder (``FEDRECON_CACHE_DIR``);
3. a download of ``ml-1m.zip`` from GroupLens (``FEDRECON_ML1M_URL``) into the cache.

Every real copy is checked by its content (:func:`verify_movielens`) before use. When no
real copy can be had, the default ``auto`` mode falls back to a synthetic data set in the
same file format (:func:`make_synthetic_movielens`) and says so loudly. A copy that is
present but wrong is always an error, never replaced by the synthetic set.

:func:`load_movielens` then reads the files and renumbers users and movies from 0, exactly
as the original TensorFlow Federated tutorial does.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import http.client
import io
import os
import re
import shutil
import ssl
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, NoReturn

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tutorial_utils import settings

ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
"""GroupLens' published md5 checksum of ``ml-1m.zip``."""

ML1M_PAGE = "https://grouplens.org/datasets/movielens/1m/"

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The 18 genres that ML-1M's ``movies.dat`` uses."""

_EXPECTED_SHA256 = {
    "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
}
_EXPECTED_RATINGS_LINES = 1_000_209
_EXPECTED_USERS = 6040
_EXPECTED_MOVIES = 3706

_FIELD_SEPARATOR = "::"
# The C parser of pandas only splits on single characters, so "::" is swapped for this
# control character (which the files never contain) before parsing.
_PARSER_SEPARATOR = b"\x1f"
# movies.dat's encoding; ratings.dat and users.dat are plain ASCII, a subset of it.
_ENCODING = "iso-8859-1"
_INTEGER = re.compile(r"[+-]?\d+")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_DOWNLOAD_CHUNK = 1 << 16
# Failures of the connection (not of the disk), reported as "data unavailable".
_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
)


class DataFormatError(ValueError):
    """A data file is missing, corrupt or not what it should be.

    The message names the file (and the 1-based line number when there is one) and says
    what is wrong.
    """


class DataUnavailableError(RuntimeError):
    """MovieLens 1M could not be found or downloaded; the message says how to provide it."""


@dataclasses.dataclass(frozen=True)
class MovieLensSource:
    """Where the ML-1M files used by a run live, and whether they are the real ones."""

    directory: Path
    """The folder holding ``ratings.dat``, ``movies.dat`` and ``users.dat``."""
    kind: str
    """``"movielens"`` for GroupLens' data, ``"synthetic"`` for the stand-in."""
    description: str
    """One line for humans saying what the data are and where they are."""

    @property
    def is_synthetic(self) -> bool:
        """True for the synthetic stand-in, False for real MovieLens 1M."""
        return self.kind == "synthetic"


# --------------------------------------------------------------------------------------
# Reading the "::"-separated files
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The columns of one ML-1M file and the checks its values must pass."""

    columns: tuple[str, ...]
    integer_columns: tuple[str, ...]
    bounds: tuple[tuple[str, int, int | None], ...]  # (column, minimum, maximum or None)


_RATINGS = _Layout(
    columns=("UserID", "MovieID", "Rating", "Timestamp"),
    integer_columns=("UserID", "MovieID", "Rating", "Timestamp"),
    bounds=(("UserID", 1, None), ("MovieID", 1, None), ("Rating", 1, 5)),
)
_MOVIES = _Layout(
    columns=("MovieID", "Title", "Genres"),
    integer_columns=("MovieID",),
    bounds=(("MovieID", 1, None),),
)
_USERS = _Layout(
    columns=("UserID", "Gender", "Age", "Occupation", "Zip-code"),
    integer_columns=("UserID", "Age", "Occupation"),
    bounds=(("UserID", 1, None),),
)


def read_ratings(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``ratings.dat``: columns UserID, MovieID, Rating, Timestamp (all int64).

    Raises :class:`DataFormatError` naming the file and line for a missing or empty file,
    a line that is not four ``::``-separated fields, a non-integer value, a non-positive
    id or a rating outside 1..5.
    """
    return _read_dat(Path(path), _RATINGS)


def read_movies(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``movies.dat`` (ISO-8859-1): columns MovieID (int64), Title, Genres."""
    return _read_dat(Path(path), _MOVIES)


def read_users(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``users.dat``: columns UserID, Gender, Age, Occupation, Zip-code."""
    return _read_dat(Path(path), _USERS)


def _read_dat(path: Path, layout: _Layout) -> pd.DataFrame:
    """Parse one ML-1M file quickly, and explain exactly what is wrong if it is malformed."""
    raw = _read_bytes(path)
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty")
    if _PARSER_SEPARATOR in raw:
        line = raw.count(b"\n", 0, raw.index(_PARSER_SEPARATOR)) + 1
        raise DataFormatError(f"{path}: line {line}: contains the control character 0x1F")
    data = raw.replace(_FIELD_SEPARATOR.encode(), _PARSER_SEPARATOR)
    try:
        frame = _parse_fields(data, layout)
    except (ValueError, OverflowError) as error:
        _raise_first_bad_line(path, raw, layout, f"cannot be parsed ({error})")
    # Lines with too many fields are parser errors; too few show up as a separator deficit.
    if data.count(_PARSER_SEPARATOR) != (len(layout.columns) - 1) * len(frame):
        _raise_first_bad_line(path, raw, layout, "some lines have too few fields")
    _check_bounds(path, frame, layout)
    return frame


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file is a :class:`DataFormatError`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None


def _parse_fields(data: bytes, layout: _Layout) -> pd.DataFrame:
    """Split ``data`` (with the parser separator) into the layout's columns, fast."""
    dtypes = {
        column: np.int64 if column in layout.integer_columns else str for column in layout.columns
    }
    return pd.read_csv(
        io.BytesIO(data),
        sep=_PARSER_SEPARATOR.decode(),
        header=None,
        names=list(layout.columns),
        dtype=dtypes,
        engine="c",
        encoding=_ENCODING,
        quoting=csv.QUOTE_NONE,
        na_filter=False,
        skip_blank_lines=False,
    )


def _raise_first_bad_line(path: Path, raw: bytes, layout: _Layout, reason: str) -> NoReturn:
    """Re-read the text line by line (slow, only after a failure) and report the first bad line.

    ``reason`` is the message when no single line can be blamed.
    """
    for number, line in enumerate(raw.decode(_ENCODING).splitlines(), start=1):
        problem = _line_problem(line, layout)
        if problem:
            raise DataFormatError(f"{path}: line {number}: {problem}")
    raise DataFormatError(f"{path}: {reason}")


def _line_problem(line: str, layout: _Layout) -> str | None:
    """What is wrong with one line of an ML-1M file, or None when it is well formed."""
    fields = line.split(_FIELD_SEPARATOR)
    if len(fields) != len(layout.columns):
        return (
            f"expected {len(layout.columns)} fields separated by '::' "
            f"({', '.join(layout.columns)}), found {len(fields)}{_separator_hint(line)}"
        )
    for column, value in zip(layout.columns, fields):
        if column in layout.integer_columns and not _INTEGER.fullmatch(value):
            return f"{column} {value!r} is not an integer"
    return None


def _separator_hint(line: str) -> str:
    """A hint for a line that was split with the wrong separator."""
    for separator, name in (("\t", "tabs"), (",", "commas"), (";", "semicolons")):
        if separator in line:
            return f"; the line seems to be separated by {name}, ML-1M uses '::'"
    return ""


def _check_bounds(path: Path, frame: pd.DataFrame, layout: _Layout) -> None:
    """Raise for the first value outside its allowed range, naming the line."""
    for column, low, high in layout.bounds:
        values = frame[column].to_numpy()
        bad = values < low if high is None else (values < low) | (values > high)
        if bad.any():
            row = int(bad.argmax())
            allowed = f">= {low}" if high is None else f"in {low}..{high}"
            raise DataFormatError(
                f"{path}: line {row + 1}: {column} {values[row]} is not {allowed}"
            )


# --------------------------------------------------------------------------------------
# Verifying a real copy
# --------------------------------------------------------------------------------------


def verify_movielens(directory: str | os.PathLike) -> None:
    """Check that ``directory`` holds GroupLens' MovieLens 1M, by content.

    ``movies.dat`` and ``users.dat`` must match GroupLens' sha256; ``ratings.dat`` must
    have 1,000,209 lines from 6040 distinct users about 3706 distinct movies. (The file's
    own hash is not checked, so a copy whose unused timestamps differ is accepted.)
    Raises :class:`DataFormatError` naming the file and the expected and found values.
    """
    directory = Path(directory)
    ratings_path = directory / "ratings.dat"
    ratings = read_ratings(ratings_path)
    for name, expected in _EXPECTED_SHA256.items():
        path = directory / name
        found = _sha256(path)
        if found != expected:
            raise DataFormatError(
                f"{path}: sha256 is {found}, expected {expected} (GroupLens' MovieLens 1M {name})"
            )
    facts = (
        ("lines", len(ratings), _EXPECTED_RATINGS_LINES),
        ("distinct users", ratings["UserID"].nunique(), _EXPECTED_USERS),
        ("distinct movies", ratings["MovieID"].nunique(), _EXPECTED_MOVIES),
    )
    for what, found, expected in facts:
        if found != expected:
            raise DataFormatError(
                f"{ratings_path}: expected {expected:,} {what} as in MovieLens 1M, found {found:,}"
            )


def _sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks; a missing file is a :class:`DataFormatError`."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Downloading and extracting ml-1m.zip
# --------------------------------------------------------------------------------------


def download_ml1m(
    url: str,
    cache_dir: str | os.PathLike,
    *,
    md5: str | None = ML1M_ZIP_MD5,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``cache_dir/ml-1m.zip`` and return that path.

    The bytes go to a temporary file in ``cache_dir`` that is renamed into place only
    after the download is complete and its md5 matches (``md5=None`` skips the check), so
    ``ml-1m.zip`` is never partial. Only ``https://`` URLs are accepted (plain ``http://``
    only for 127.0.0.1 and localhost, for tests).

    Raises :class:`DataUnavailableError` when the server cannot be reached or answers
    with an error, and :class:`DataFormatError` when the download is shorter than its
    Content-Length or its md5 is wrong. The partial file is removed in every case.
    """
    _check_url(url)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / "ml-1m.zip"
    handle, partial_name = tempfile.mkstemp(dir=cache_dir, prefix=".ml-1m.zip.", suffix=".part")
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            digest = _fetch(url, stream, target, progress=progress, timeout=timeout)
        if md5 is not None and digest != md5.lower():
            raise DataFormatError(
                f"{target}: md5 of the download from {url} is {digest}, expected {md5}; "
                "the download was discarded"
            )
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _check_url(url: str) -> None:
    """Refuse anything but https, except plain http to this machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return
    raise ValueError(
        f"Refusing to download {url!r}: only https:// URLs are allowed "
        "(http:// only for 127.0.0.1 and localhost)."
    )


def _fetch(url: str, stream: BinaryIO, target: Path, *, progress: bool, timeout: float) -> str:
    """Copy the response body of ``url`` into ``stream``; return its md5 hex digest."""
    if progress:
        print(f"Downloading MovieLens 1M from {url}")
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    expected: int | None = None
    try:
        with _opener(url).open(url, timeout=timeout) as response:
            _check_url(response.geturl())  # a redirect must not leave https either
            length = response.headers.get("Content-Length")
            expected = int(length) if length else None
            with tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
                disable=not progress,
            ) as bar:
                for chunk in iter(lambda: response.read(_DOWNLOAD_CHUNK), b""):
                    stream.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as error:
        raise _truncated(target, url, received, expected) from error
    except urllib.error.HTTPError as error:
        raise _unavailable(
            f"{url} answered HTTP {error.code} {error.reason}", url, target.parent
        ) from error
    except _NETWORK_ERRORS as error:
        reason = getattr(error, "reason", error)
        raise _unavailable(f"downloading {url} failed ({reason})", url, target.parent) from error
    if expected is not None and received != expected:
        raise _truncated(target, url, received, expected)
    return digest.hexdigest()


def _opener(url: str) -> urllib.request.OpenerDirector:
    """urllib's opener; requests to this machine never go through a proxy."""
    if urllib.parse.urlsplit(url).hostname in _LOOPBACK_HOSTS:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _truncated(target: Path, url: str, received: int, expected: int | None) -> DataFormatError:
    """The error for a download that ended before all its bytes arrived."""
    if expected is None:
        amount = f"{received:,} bytes before the transfer broke off"
    else:
        amount = f"{received:,} of {expected:,} bytes"
    return DataFormatError(
        f"{target}: the download from {url} was truncated: received {amount}; "
        "the partial file was discarded"
    )


def extract_ml1m(zip_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Safely extract ``ml-1m.zip`` into ``dest_dir/ml-1m`` and return that folder.

    The archive is checked first: every member's CRC must match, and no member may have
    an absolute path, a ``..`` component or be a symbolic link. The files are extracted
    into a temporary folder inside ``dest_dir``, verified with :func:`verify_movielens`
    and only then renamed to ``dest_dir/ml-1m``; on any failure the temporary folder is
    removed. If another process finished the same extraction first, its folder is kept.
    Raises :class:`DataFormatError` naming the archive (and member) when something is wrong.
    """
    zip_path = Path(zip_path)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / "ml-1m"
    workspace = _new_workspace(dest_dir / ".ml-1m.extract")
    try:
        _safe_extract(zip_path, workspace)
        folder = _dat_folder(workspace)
        try:
            verify_movielens(folder)
        except DataFormatError as error:
            raise DataFormatError(f"{zip_path}: does not hold MovieLens 1M: {error}") from error
        _move_into_place(folder, target)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return target


def _safe_extract(zip_path: Path, destination: Path) -> None:
    """Check every member of the archive, then extract it into ``destination``."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                _check_member(zip_path, member)
            corrupt = archive.testzip()
            if corrupt is not None:
                raise DataFormatError(
                    f"{zip_path}: member {corrupt!r} is corrupt (CRC check failed)"
                )
            archive.extractall(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataFormatError(f"{zip_path}: not a valid zip archive ({error})") from error


def _check_member(zip_path: Path, member: zipfile.ZipInfo) -> None:
    """Reject members that are links or whose path could land outside the destination."""
    name = member.filename
    if stat.S_ISLNK(member.external_attr >> 16):
        raise DataFormatError(
            f"{zip_path}: member {name!r} is a symbolic link; refusing to extract"
        )
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or PureWindowsPath(name).drive or ".." in path.parts:
        raise DataFormatError(
            f"{zip_path}: member {name!r} would be written outside the destination "
            "folder; refusing to extract"
        )


def _new_workspace(stem: Path) -> Path:
    """Create a fresh, uniquely named folder ``stem-<random>`` (with the usual permissions)."""
    workspace = stem.with_name(f"{stem.name}-{uuid.uuid4().hex}")
    workspace.mkdir()
    return workspace


def _move_into_place(folder: Path, target: Path) -> bool:
    """Rename a finished folder to ``target``; False if another process created it first."""
    try:
        folder.rename(target)
    except OSError:
        if target.is_dir():
            return False
        raise
    return True


def _dat_folder(path: Path) -> Path:
    """``path`` itself when it holds ``ratings.dat``, else its ``ml-1m`` subfolder if any."""
    if not (path / "ratings.dat").exists() and (path / "ml-1m").is_dir():
        return path / "ml-1m"
    return path


# --------------------------------------------------------------------------------------
# Finding the data for a run
# --------------------------------------------------------------------------------------


def find_movielens(
    source: str | os.PathLike | None = None,
    *,
    choice: str | None = None,
    progress: bool = True,
) -> MovieLensSource:
    """Locate the data for a run, print which data it is, and return it.

    ``choice`` (default: the ``FEDRECON_DATASET`` setting) is ``"auto"``, ``"movielens"``
    or ``"synthetic"``. Real data come from ``source``, else ``FEDRECON_DATA_DIR``, else
    the cache folder, else a download; they are verified by content before use.

    - ``"movielens"``: raises :class:`DataUnavailableError` with instructions when no real
      copy can be had.
    - ``"auto"``: in that case prints a banner and returns the synthetic stand-in.
    - ``"synthetic"``: returns the synthetic stand-in (built once, then cached).

    A copy that exists but fails verification raises :class:`DataFormatError` in every
    mode: wrong data is never silently swapped for synthetic data.
    """
    choice = (choice or settings.dataset_choice()).strip().lower()
    if choice not in settings.DATASET_CHOICES:
        raise ValueError(f"choice={choice!r} is not one of {', '.join(settings.DATASET_CHOICES)}")
    if choice == "synthetic":
        found = _synthetic_source()
    else:
        try:
            found = _real_source(source, progress=progress)
        except DataUnavailableError as error:
            if choice == "movielens":
                raise
            print(_fallback_banner(error))
            found = _synthetic_source()
    print(f"Data: {found.description}")
    return found


def _real_source(source: str | os.PathLike | None, *, progress: bool) -> MovieLensSource:
    """Real ML-1M from the first place that has it, in the documented order."""
    cache = settings.cache_dir()
    given = Path(source).expanduser() if source is not None else settings.data_dir()
    if given is not None:
        folder = _given_folder(given, cache)
    elif (cache / "ml-1m").is_dir():
        folder = _verified_cache(cache / "ml-1m")
    else:
        zip_path = cache / "ml-1m.zip"
        if not zip_path.is_file():
            download_ml1m(settings.ml1m_url(), cache, progress=progress)
        folder = extract_ml1m(zip_path, cache)
    return MovieLensSource(
        directory=folder,
        kind="movielens",
        description=f"MovieLens 1M (GroupLens), from {folder}",
    )


def _given_folder(given: Path, cache: Path) -> Path:
    """The verified ML-1M folder for a user-given folder or zip (extracted into ``cache``)."""
    if not given.exists():
        raise DataFormatError(
            f"{given}: does not exist (it was given as the MovieLens 1M location, "
            "by argument or FEDRECON_DATA_DIR)"
        )
    if given.is_file():
        if (cache / "ml-1m").is_dir():
            return _verified_cache(cache / "ml-1m")
        return extract_ml1m(given, cache)
    folder = _dat_folder(given)
    verify_movielens(folder)
    return folder


def _verified_cache(folder: Path) -> Path:
    """A previously extracted copy, verified again; a bad one says how to start over."""
    try:
        verify_movielens(folder)
    except DataFormatError as error:
        raise DataFormatError(
            f"{error} -- the cached copy in {folder} is damaged; delete that folder "
            "to extract or download it again"
        ) from error
    return folder


def _synthetic_source() -> MovieLensSource:
    """The synthetic stand-in in the cache folder, built on first use, checked to parse."""
    folder = settings.cache_dir() / "synthetic-ml-1m"
    if not folder.is_dir():
        try:
            make_synthetic_movielens(folder)
        except FileExistsError:
            pass  # another process built it at the same moment
    read_ratings(folder / "ratings.dat")
    read_movies(folder / "movies.dat")
    read_users(folder / "users.dat")
    return MovieLensSource(
        directory=folder,
        kind="synthetic",
        description=f"SYNTHETIC stand-in for MovieLens 1M (not real ratings), in {folder}",
    )


def _how_to_provide(url: str, cache: Path) -> str:
    """Step-by-step instructions for making real ML-1M available."""
    return "\n".join(
        [
            "Provide MovieLens 1M in one of these ways:",
            "  1. Set FEDRECON_DATA_DIR to a folder holding ratings.dat, movies.dat and",
            "     users.dat (or to the ml-1m.zip file itself).",
            f"  2. Download ml-1m.zip from {ML1M_PAGE}",
            f"     and place it at {cache / 'ml-1m.zip'}",
            "     (or set FEDRECON_CACHE_DIR to the folder that holds it).",
            f"  3. Let this machine reach {url}",
            "     (or set FEDRECON_ML1M_URL to a reachable https:// mirror).",
            "To use the synthetic stand-in on purpose, set FEDRECON_DATASET=synthetic.",
        ]
    )


def _unavailable(reason: str, url: str, cache: Path) -> DataUnavailableError:
    """A :class:`DataUnavailableError` with the reason and the instructions."""
    return DataUnavailableError(
        f"MovieLens 1M is not available: {reason}.\n{_how_to_provide(url, cache)}"
    )


def _fallback_banner(error: DataUnavailableError) -> str:
    """The loud notice printed when ``auto`` mode falls back to synthetic data."""
    rule = "#" * 78
    body = [
        "REAL MOVIELENS 1M DATA WAS NOT FOUND.",
        "",
        *str(error).splitlines(),
        "",
        "CONTINUING WITH THE SYNTHETIC STAND-IN: these are NOT real ratings, so numbers",
        "and plots will differ from the tutorial's text.",
        "Set FEDRECON_DATASET=movielens to make missing data an error instead.",
    ]
    return "\n".join([rule, *(f"# {line}".rstrip() for line in body), rule])


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_movielens(
    source: MovieLensSource | str | os.PathLike,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ratings and movies and renumber ids from 0 as the original TFF tutorial does.

    UserID and MovieID become 0..n-1 in the sorted order of the ids that occur in
    ``ratings.dat``; ``movies`` keeps only the rated movies, with the same new MovieID
    (in order, so its index equals MovieID). Ratings keep the file's row order.
    ``source`` is a :class:`MovieLensSource` or a folder (or a parent holding ``ml-1m/``).
    """
    if isinstance(source, MovieLensSource):
        folder = source.directory
    else:
        folder = _dat_folder(Path(source).expanduser())
    ratings = read_ratings(folder / "ratings.dat")
    movies = read_movies(folder / "movies.dat")
    user_codes, _ = pd.factorize(ratings["UserID"], sort=True)
    movie_codes, rated_ids = pd.factorize(ratings["MovieID"], sort=True)
    ratings["UserID"] = user_codes.astype(np.int64)
    ratings["MovieID"] = movie_codes.astype(np.int64)
    movies = movies[movies["MovieID"].isin(rated_ids)].reset_index(drop=True)
    movies["MovieID"] = np.searchsorted(rated_ids.to_numpy(), movies["MovieID"]).astype(np.int64)
    return ratings, movies


# --------------------------------------------------------------------------------------
# The synthetic stand-in
# --------------------------------------------------------------------------------------

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
        "Generated by tutorial_utils.data.make_synthetic_movielens("
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
