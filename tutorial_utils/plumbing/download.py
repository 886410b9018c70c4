"""Download GroupLens' ``ml-1m.zip`` and extract it safely.

:func:`download_ml1m` accepts only https URLs (plain http only to this machine), writes
to a temporary file and checks the md5 before renaming it into place; :func:`extract_ml1m`
refuses corrupt archives, links and members that would land outside the destination, and
verifies the content before renaming the folder into place (the helpers that create a
fresh folder and rename it into place serve ``synthetic_movielens`` too). Also
:class:`DataUnavailableError`, raised when the data cannot be had, with the instructions
for providing them.
"""

from __future__ import annotations

import hashlib
import http.client
import os
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
from typing import BinaryIO

from tqdm.auto import tqdm

from tutorial_utils.plumbing.movielens_files import DataFormatError, _dat_folder, verify_movielens

ML1M_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
"""GroupLens' published md5 checksum of ``ml-1m.zip``."""

ML1M_PAGE = "https://grouplens.org/datasets/movielens/1m/"

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


class DataUnavailableError(RuntimeError):
    """MovieLens 1M could not be found or downloaded; the message says how to provide it."""


# --------------------------------------------------------------------------------------
# Downloading ml-1m.zip
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


# --------------------------------------------------------------------------------------
# Extracting it
# --------------------------------------------------------------------------------------


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
