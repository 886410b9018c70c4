"""The environment variables that configure a run, read in one place.

``FEDRECON_DATA_DIR``
    A folder (or ``ml-1m.zip``) that already holds MovieLens 1M. When set, it is used
    instead of a download.
``FEDRECON_CACHE_DIR``
    Where a downloaded ``ml-1m.zip`` is verified and extracted. Default: ``data/`` in the
    project checkout (git-ignored), or ``~/.cache/fedrecon-tutorial`` outside a checkout.
``FEDRECON_DATASET``
    ``auto`` (default): real MovieLens 1M if it can be found or downloaded, otherwise the
    synthetic stand-in, announced loudly. ``movielens``: real data or an error.
    ``synthetic``: the synthetic stand-in, on purpose.
``FEDRECON_ML1M_URL``
    Where to download ``ml-1m.zip`` from (default: GroupLens).
``FEDRECON_CONFIG``
    ``full`` (default): the tutorial's real parameters. ``smoke``: a tiny configuration
    that only checks the notebooks execute.
``FEDRECON_OUTPUT_DIR``
    Where figures are saved as PNG. Default: ``output/figures`` in the project checkout.
``FEDRECON_EMNIST``
    The handwriting of notebook 04's exercise 4. ``synthetic`` (default): an offline
    stand-in built from TFF's synthetic digits. ``real``: the federated EMNIST, which TFF
    downloads (network access needed).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_CHECKOUT_ROOT = PACKAGE_DIR.parent

GROUPLENS_ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"

DATASET_CHOICES = ("auto", "movielens", "synthetic")
CONFIG_CHOICES = ("full", "smoke")
EMNIST_CHOICES = ("synthetic", "real")


def in_checkout() -> bool:
    """True when the package runs from a clone of the project (not an installed copy)."""
    return (_CHECKOUT_ROOT / "pyproject.toml").is_file() and (_CHECKOUT_ROOT / "notebooks").is_dir()


def project_root() -> Path:
    """The root of the project checkout; only meaningful when ``in_checkout()``."""
    return _CHECKOUT_ROOT


def results_dir() -> Path:
    """What the scripts and benchmarks recorded: the project's ``results/`` in a checkout;
    installed (e.g. in Colab), the copy the package carries as ``tutorial_utils.results``
    (pyproject.toml)."""
    return _CHECKOUT_ROOT / "results" if in_checkout() else PACKAGE_DIR / "results"


def _choice(name: str, choices, default: str) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise ValueError(
            f"Environment variable {name}={value!r} is not one of {', '.join(choices)}."
        )
    return value


def data_dir() -> Path | None:
    """The folder or zip named by ``FEDRECON_DATA_DIR``, or None when it is not set."""
    value = os.environ.get("FEDRECON_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where downloads are kept (``FEDRECON_CACHE_DIR`` overrides the default)."""
    value = os.environ.get("FEDRECON_CACHE_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    if in_checkout():
        return _CHECKOUT_ROOT / "data"
    return Path.home() / ".cache" / "fedrecon-tutorial"


def dataset_choice() -> str:
    """``auto``, ``movielens`` or ``synthetic`` (``FEDRECON_DATASET``)."""
    return _choice("FEDRECON_DATASET", DATASET_CHOICES, "auto")


def ml1m_url() -> str:
    """Where ``ml-1m.zip`` is downloaded from (``FEDRECON_ML1M_URL``)."""
    return os.environ.get("FEDRECON_ML1M_URL", "").strip() or GROUPLENS_ML1M_URL


def run_config() -> str:
    """``full`` or ``smoke`` (``FEDRECON_CONFIG``)."""
    return _choice("FEDRECON_CONFIG", CONFIG_CHOICES, "full")


def emnist_choice() -> str:
    """``synthetic`` (default, offline) or ``real`` (downloads EMNIST), from ``FEDRECON_EMNIST``."""
    return _choice("FEDRECON_EMNIST", EMNIST_CHOICES, "synthetic")


def output_dir() -> Path:
    """Where figures are written (``FEDRECON_OUTPUT_DIR``)."""
    value = os.environ.get("FEDRECON_OUTPUT_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    if in_checkout():
        return _CHECKOUT_ROOT / "output" / "figures"
    return Path.cwd() / "figures"
