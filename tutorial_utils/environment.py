"""Checks that the running Python can use the tutorial, with advice in plain words."""

from __future__ import annotations

import importlib.util
import platform
import sys

TFF_VERSION = "0.87.0"

ADVICE_PYTHON = (
    "TensorFlow Federated {tff} needs Python 3.9, 3.10 or 3.11; this is Python {python}. "
    "Stock Google Colab now runs Python 3.12, where TFF {tff} cannot be installed. "
    "Run the tutorial on your own Linux machine with Python 3.11 (the README's two "
    "commands set everything up), or in a Colab runtime whose Python is 3.11."
)
ADVICE_PLATFORM = (
    "TensorFlow Federated {tff} ships wheels for Linux x86_64 only; this is {system} {machine}. "
    "On macOS or Windows, use a Linux machine or container (on Windows: WSL 2 with "
    "Ubuntu), or Google Colab with a Python 3.11 runtime."
)
ADVICE_MISSING = (
    "TensorFlow Federated is not installed in this Python ({executable}). From the project "
    "folder run `make tutorial` (it creates .venv with every pinned package) and select "
    "that environment's kernel, or in Colab run the install cell at the top of the notebook."
)


class EnvironmentProblem(RuntimeError):
    """The running Python cannot run the TFF parts of the tutorial; the message says why."""


def problems() -> list[str]:
    """What stops TFF from working here, each as advice; empty when all is well."""
    found = []
    if sys.version_info >= (3, 12) or sys.version_info < (3, 9):
        found.append(ADVICE_PYTHON.format(tff=TFF_VERSION, python=platform.python_version()))
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        found.append(
            ADVICE_PLATFORM.format(
                tff=TFF_VERSION, system=platform.system(), machine=platform.machine()
            )
        )
    if not found and importlib.util.find_spec("tensorflow_federated") is None:
        found.append(ADVICE_MISSING.format(executable=sys.executable))
    return found


def check(require_tff: bool = True) -> str:
    """Returns a one-line description of the versions in use, or explains what to do.

    With ``require_tff`` a problem raises :class:`EnvironmentProblem`; without it, the
    advice is printed and the notebook goes on (its TFF-free parts still run).
    """
    found = problems()
    if found:
        message = "\n\n".join(found)
        if require_tff:
            raise EnvironmentProblem(message)
        print("Note: " + message + "\n")
    return describe()


def describe() -> str:
    """Python, TensorFlow, TFF and NumPy versions on one line."""
    import numpy as np
    import tensorflow as tf

    if importlib.util.find_spec("tensorflow_federated") is not None:
        import tensorflow_federated as tff

        tff_version = tff.__version__
    else:
        tff_version = "not installed"
    return (
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"TensorFlow Federated {tff_version}, NumPy {np.__version__}"
    )
