"""Where MovieLens 1M comes from: a folder, the cache, a download, or the synthetic stand-in.

The tutorial needs GroupLens' MovieLens 1M ("ML-1M"): about a million ratings (1 to 5
stars) that 6040 users gave to 3706 movies. Its license forbids redistribution, so the
project never ships the files; :func:`find_movielens` locates or downloads them instead:

1. an explicit ``source`` argument, else the ``FEDRECON_DATA_DIR`` setting: a folder with
   ``ratings.dat``, ``movies.dat`` and ``users.dat`` (or its parent holding ``ml-1m/``),
   or the ``ml-1m.zip`` archive itself;
2. a copy already extracted into the cache folder (``FEDRECON_CACHE_DIR``);
3. a download of ``ml-1m.zip`` from GroupLens (``FEDRECON_ML1M_URL``) into the cache.

Every real copy is checked by its content (``movielens_files.verify_movielens``) before
use. When no real copy can be had, the default ``auto`` mode falls back to a synthetic data
set in the same file format (``synthetic_movielens.make_synthetic_movielens``) and says so
loudly. A copy that is present but wrong is always an error, never replaced by the
synthetic set. Downloading and extracting are in ``download``.

``tutorial_utils.data`` reads what :func:`find_movielens` found (``data.load_movielens``).

Summaries of the ratings used while exploring the data.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tutorial_utils.plumbing import settings
from tutorial_utils.plumbing.download import DataUnavailableError, download_ml1m, extract_ml1m
from tutorial_utils.plumbing.movielens_files import (
    DataFormatError,
    _dat_folder,
    read_movies,
    read_ratings,
    read_users,
    verify_movielens,
)
from tutorial_utils.plumbing.synthetic_movielens import make_synthetic_movielens


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
