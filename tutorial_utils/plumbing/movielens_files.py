"""Read and verify MovieLens 1M's ``::``-separated files.

``ratings.dat``, ``movies.dat`` and ``users.dat``: their layouts, the fast parser, the
report of the first bad line, the bounds checks, and :func:`verify_movielens`, which tells
GroupLens' copy from any other by content. Also :class:`DataFormatError`, raised for a
file that is missing, corrupt or not what it should be, and :data:`GENRES`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

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


class DataFormatError(ValueError):
    """A data file is missing, corrupt or not what it should be.

    The message names the file (and the 1-based line number when there is one) and says
    what is wrong.
    """


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
# The folder that holds the files
# --------------------------------------------------------------------------------------


def _dat_folder(path: Path) -> Path:
    """``path`` itself when it holds ``ratings.dat``, else its ``ml-1m`` subfolder if any."""
    if not (path / "ratings.dat").exists() and (path / "ml-1m").is_dir():
        return path / "ml-1m"
    return path
