"""Links to the notebooks on GitHub and in Colab, all made from one setting.

Change ``GITHUB_REPOSITORY`` (and ``GITHUB_BRANCH``) when the project moves; the tests
check that every notebook's button bar and the README's table use these links.
``PACKAGE_RELEASE`` is the release tag of ``tutorial_utils`` that the notebooks' Colab
cells install: ``v`` and the package version (a test keeps them equal).
"""

from __future__ import annotations

GITHUB_REPOSITORY = "fedrecon-tutorial/fedrecon-tutorial"
GITHUB_BRANCH = "main"
PACKAGE_RELEASE = "v0.2.0"


def github_url(notebook: str) -> str:
    """The notebook's page on GitHub, e.g. for ``"01_data_exploration.ipynb"``."""
    return f"https://github.com/{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/notebooks/{notebook}"


def colab_url(notebook: str) -> str:
    """The notebook opened in Google Colab straight from GitHub."""
    return (
        "https://colab.research.google.com/github/"
        f"{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/notebooks/{notebook}"
    )


def package_install_url() -> str:
    """What ``pip install`` takes to install ``tutorial_utils`` from GitHub at its release
    tag (used in Colab)."""
    return f"git+https://github.com/{GITHUB_REPOSITORY}@{PACKAGE_RELEASE}"


def button_bar(notebook: str) -> str:
    """The Markdown of a notebook's button bar: Run in Colab, View on GitHub."""
    return (
        f'<table class="tfo-notebook-buttons" align="left">\n'
        f'  <td><a target="_blank" href="{colab_url(notebook)}">Run in Google Colab</a></td>\n'
        f'  <td><a target="_blank" href="{github_url(notebook)}">View source on GitHub</a></td>\n'
        f"</table>"
    )
