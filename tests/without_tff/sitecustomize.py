"""Hides TensorFlow Federated from this Python, as if it were not installed.

`make test-without-tff` puts this folder on PYTHONPATH, so that Python (and every notebook
kernel it starts) imports this file at start-up: notebooks 05 and 06 and the modules they
use must then run as they do on a Python without TFF.
"""

import sys


class _HideTFF:
    """Refuses to find ``tensorflow_federated`` and its submodules."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "tensorflow_federated" or name.startswith("tensorflow_federated."):
            raise ModuleNotFoundError(
                f"No module named {name!r} (hidden by tests/without_tff)", name=name
            )
        return None


sys.meta_path.insert(0, _HideTFF())
