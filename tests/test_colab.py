"""Notebook 03's Colab set-up, run as on stock Colab: a fresh Python 3.13, the install
cell's own commands, then the whole notebook.

The closest this machine gets to Colab: a new Python 3.13 environment holding what Colab
brings (Jupyter's kernel, NumPy, pandas, Matplotlib, setuptools, at today's releases), a
stand-in ``google.colab`` package so that the install cell runs, and this package
installed from a copy of the checkout instead of GitHub. It builds an environment of
about 2 GB, so it runs once, in ``make test`` on the modern stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import copy_of_checkout

from tutorial_utils import environment, links, pins

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_training_and_evaluation.ipynb"
# What a stock Colab runtime already has, in the part that matters here.
COLAB_BASE = ["ipykernel", "nbclient", "nbformat", "numpy", "pandas", "matplotlib", "setuptools"]
# Colab's own module, imported at start-up as Colab does; jax imports google.colab.output.
STAND_IN = {
    "sitecustomize.py": "import google.colab\n",
    "google/colab/__init__.py": "",
    "google/colab/output.py": "",
}


def python313() -> str | None:
    """A Python 3.13 to build the environment with: FEDRECON_COLAB_PYTHON, else the PATH,
    else pyenv."""
    candidates = [
        os.environ.get("FEDRECON_COLAB_PYTHON"),
        shutil.which("python3.13"),
        *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python3.13")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 13)":
            return candidate
    return None


PYTHON313 = python313()
pytestmark = [
    pytest.mark.skipif(PYTHON313 is None, reason="no Python 3.13 on this machine"),
    pytest.mark.skipif(
        environment.stack() != "modern",
        reason="runs once, in the modern stack's tests (it builds its own Python 3.13)",
    ),
]


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_notebook_03_runs_on_python_313_with_the_install_cell_commands(tmp_path):
    venv = tmp_path / "colab"
    run([PYTHON313, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", *COLAB_BASE], timeout=1800)
    stand_in = tmp_path / "stand_in"
    for name, text in STAND_IN.items():
        (stand_in / name).parent.mkdir(parents=True, exist_ok=True)
        (stand_in / name).write_text(text)

    # The notebook exactly as committed, but for where the package comes from.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    install = next(c for c in notebook.cells if "google.colab" in c.source)
    assert links.package_install_url() in install.source
    install.source = install.source.replace(
        links.package_install_url(), str(copy_of_checkout(tmp_path))
    )
    path = tmp_path / NOTEBOOK.name
    nbformat.write(notebook, path)

    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(stand_in),
        "FEDRECON_CONFIG": "smoke",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "FEDRECON_OUTPUT_DIR": str(tmp_path / "figures"),
    }
    env.pop("TF_USE_LEGACY_KERAS", None)
    env.pop("VIRTUAL_ENV", None)
    execute = (
        "import sys, nbformat\nfrom nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(nb, timeout=1800, kernel_name='python3',"
        " resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "nbformat.write(nb, sys.argv[1])\n"
    )
    run(
        [python, "-c", execute, str(path), str(NOTEBOOK.parent)],
        env=env,
        timeout=3600,
        cwd=tmp_path,
    )

    executed = nbformat.read(path, as_version=4)
    outputs = "\n".join(
        output.get("text", "")
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "TensorFlow Federated 0.87.0" in outputs and "(modern stack)" in outputs
    assert "Final Test:" in outputs

    # What the install cell left is what the lock file says, for every pin it installs.
    frozen = json.loads(run([python, "-m", "pip", "list", "--format", "json"]).stdout)
    installed = {pins.normalize(p["name"]): p["version"] for p in frozen}
    wanted = pins.colab_packages((3, 13)).split() + pins.colab_no_deps_packages((3, 13)).split()
    for pin in wanted:
        name, version = pin.split("==")
        assert installed.get(name) == version, pin
    assert installed.get("fedrecon-tutorial") == links.PACKAGE_RELEASE.lstrip("v")
