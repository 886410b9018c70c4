"""The notebooks' Colab cell, run on environments built from Colab's own package lists.

Google publishes every package a Colab runtime has (``requirements/colab-*.txt`` are
copies). Each case builds a new environment with that runtime's Python, its pip, and,
under its list as pip constraints, every package of the modern lock that the runtime has:
the tutorial's whole stack at Colab's versions. A stand-in ``google.colab`` imports NumPy
at start-up, as Colab's own module does, so a cell that replaced NumPy would need a
restart here too. Then notebook 03 runs with its install cell as written, but for where
the package comes from (a copy of this checkout instead of GitHub):

- on the default runtime (Python 3.13), the cell adds this package and TFF's, changes no
  installed package, asks for no restart, and the notebook runs to the end;
- on the past runtime 2026.07 (Python 3.12, tf-keras 2.20.0), the cell says it installs
  the tested stack and that a restart follows; the environment check then asks for the
  restart; after it (a new kernel), the notebook runs to the end.

What each install cell downloaded and how long it took is written to
``output/colab/<runtime>.json`` ("Where it runs" in docs/colab-and-stacks.md quotes it). The
environments take a few GB, so this runs once, in ``make test`` on the modern stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from conftest import copy_of_checkout

from tutorial_utils.plumbing import environment, links, pins

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_training_and_evaluation.ipynb"
MEASURED = ROOT / "output" / "colab"
# Colab's own module, imported at start-up as Colab does (it imports NumPy); jax looks for
# google.colab.output. Only google/colab is created, so google.protobuf still resolves.
STAND_IN = {
    "sitecustomize.py": "import google.colab\n",
    "google/colab/__init__.py": "import numpy  # as Colab's own module does at start-up\n",
    "google/colab/output.py": "",
}
RUNTIMES = {"default": (3, 13), "2026.07": (3, 12)}
# What pip prints for each file it downloads: "Downloading name.whl (71.0 MB)".
DOWNLOAD = re.compile(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)")
UNIT_MB = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}


def find_python(version: tuple[int, int]) -> str | None:
    """A Python ``version`` to build the environment with: the PATH, else pyenv."""
    name = f"python{version[0]}.{version[1]}"
    candidates = [
        shutil.which(name),
        *sorted(
            str(p)
            for p in Path.home().glob(f".pyenv/versions/{version[0]}.{version[1]}.*/bin/{name}")
        ),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(version):
            return candidate
    return None


pytestmark = pytest.mark.skipif(
    environment.stack() != "modern",
    reason="runs once, in the modern stack's tests (it builds its own environments)",
)


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def installed(python: str) -> dict[str, str]:
    """Every installed distribution and its version, names normalized."""
    listed = json.loads(run([python, "-m", "pip", "list", "--format", "json"]).stdout)
    return {pins.normalize(p["name"]): p["version"] for p in listed}


def colab_like(tmp_path: Path, runtime: str) -> tuple[str, dict]:
    """A new environment of Colab's ``runtime``; returns its python and the environment
    variables of its kernels."""
    python = find_python(RUNTIMES[runtime])
    if python is None:
        pytest.skip(f"no Python {RUNTIMES[runtime]} on this machine")
    colab = pins.colab_runtime(runtime)
    venv = tmp_path / f"colab-{runtime}"
    run([python, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", f"pip=={colab['pip']}"], timeout=600)
    constraints = tmp_path / f"colab-{runtime}-constraints.txt"
    constraints.write_text(pins.colab_constraints(runtime))
    wanted = sorted(set(pins.locked("modern")) & set(colab))
    run(
        [python, "-m", "pip", "install", "--quiet", "-c", str(constraints), *wanted],
        timeout=3600,
    )
    have = installed(python)
    assert {name: have.get(name) for name in wanted} == {name: colab[name] for name in wanted}

    stand_in = tmp_path / "stand_in"
    for name, text in STAND_IN.items():
        (stand_in / name).parent.mkdir(parents=True, exist_ok=True)
        (stand_in / name).write_text(text)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(stand_in),
        "FEDRECON_CONFIG": "smoke",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "FEDRECON_OUTPUT_DIR": str(tmp_path / "figures"),
        # A pip cache of its own: what the cell downloads is what a new runtime downloads.
        "PIP_CACHE_DIR": str(tmp_path / f"pip-cache-{runtime}"),
    }
    for name in ("TF_USE_LEGACY_KERAS", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    return python, env


def notebook_with_local_package(tmp_path: Path) -> Path:
    """Notebook 03 exactly as committed, but for where its install cell gets the package."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = notebook.cells[4]
    assert links.package_install_url() in cell.source
    cell.source = cell.source.replace(links.package_install_url(), str(copy_of_checkout(tmp_path)))
    path = tmp_path / NOTEBOOK.name
    nbformat.write(notebook, path)
    return path


EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
cells = int(sys.argv[3])
if cells:
    nb.cells = nb.cells[:cells]
NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=bool(cells),
               resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


def execute(python: str, env: dict, path: Path, cells: int = 0) -> list:
    """Runs the notebook at ``path`` in a new kernel (its first ``cells`` cells, errors
    kept in the outputs, or all of it) and stores what ran there; returns its cells."""
    run(
        [python, "-c", EXECUTE, str(path), str(NOTEBOOK.parent), str(cells)],
        env=env,
        timeout=3600,
        cwd=path.parent,
    )
    return nbformat.read(path, as_version=4).cells


def text(cell) -> str:
    return "\n".join(
        output.get("text", "") + output.get("evalue", "") for output in cell.get("outputs", [])
    )


def measure(cell, runtime: str, before: dict, after: dict) -> dict:
    """What the install cell downloaded (MB, from pip's own lines), its seconds, and
    what it changed; written to output/colab/<runtime>.json."""
    timing = cell.metadata.get("execution", {})
    start, end = (
        datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
        for key in ("iopub.execute_input", "shell.execute_reply")
    )
    measured = {
        "runtime": runtime,
        "download_mb": round(
            sum(float(n) * UNIT_MB[unit] for n, unit in DOWNLOAD.findall(text(cell))), 1
        ),
        "seconds": round((end - start).total_seconds(), 1),
        "added": {name: after[name] for name in sorted(set(after) - set(before))},
        "changed": {
            name: [before[name], after[name]]
            for name in sorted(set(before) & set(after))
            if before[name] != after[name]
        },
        "removed": sorted(set(before) - set(after)),
    }
    MEASURED.mkdir(parents=True, exist_ok=True)
    (MEASURED / f"{runtime}.json").write_text(json.dumps(measured, indent=1) + "\n")
    return measured


def test_on_colabs_default_runtime_the_cell_adds_tff_and_replaces_nothing(tmp_path):
    python, env = colab_like(tmp_path, "default")
    before = installed(python)
    cells = execute(python, env, notebook_with_local_package(tmp_path))
    after = installed(python)

    said = text(cells[4])
    assert "nothing installed is replaced" in said and "restart" not in said.lower()
    assert "Successfully installed" in said  # pip's own summary, not hidden
    measured = measure(cells[4], "default", before, after)
    assert measured["changed"] == {} and measured["removed"] == []
    no_deps = dict(pin.split("==") for pin in pins.colab_no_deps_packages((3, 13)).split())
    assert measured["added"] == {
        **no_deps,
        "fedrecon-tutorial": links.PACKAGE_RELEASE.lstrip("v"),
    }
    # The same kernel goes on: no restart was needed.
    outputs = "\n".join(text(cell) for cell in cells)
    assert "TensorFlow Federated 0.87.0" in outputs and "(modern stack)" in outputs
    assert "Final Test:" in outputs


def test_on_colabs_2026_07_runtime_the_cell_installs_the_tested_stack_then_a_restart(tmp_path):
    python, env = colab_like(tmp_path, "2026.07")
    before = installed(python)
    path = notebook_with_local_package(tmp_path)

    # The install cell and the environment check, in the kernel Colab started.
    first = execute(python, env, Path(shutil.copy(path, tmp_path / "first.ipynb")), cells=7)
    after = installed(python)
    said = text(first[4])
    assert "tf-keras 2.20.0 (tested: 2.20.1)" in said
    assert "Installing the modern stack" in said and "restart the session" in said
    assert "Successfully installed" in said  # Colab offers its restart from this summary
    measured = measure(first[4], "2026.07", before, after)
    modern = pins.locked("modern")
    assert measured["changed"] and measured["removed"] == []
    assert {name: new for name, (old, new) in measured["changed"].items()} == {
        name: modern[name] for name in measured["changed"]
    }
    assert measured["changed"]["tf-keras"] == ["2.20.0", "2.20.1"]
    # Without the restart, the check says what to do.
    assert "Restart the runtime" in text(first[6])

    # After the restart: a new kernel runs the whole notebook; the cell now only adds.
    cells = execute(python, env, path)
    assert "nothing installed is replaced" in text(cells[4])
    assert installed(python) == after
    outputs = "\n".join(text(cell) for cell in cells)
    assert "TensorFlow Federated 0.87.0" in outputs and "(modern stack)" in outputs
    assert "Final Test:" in outputs
