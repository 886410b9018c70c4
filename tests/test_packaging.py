"""The pins, the Colab install cells, the links and the README agree with each other."""

import re
from pathlib import Path

import nbformat
import pytest

from tutorial_utils import links, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = run_notebooks.notebook_paths(ROOT / "notebooks")
PIN = re.compile(r"^\s*-?\s*([A-Za-z0-9_.\-]+)\s*={1,2}\s*([0-9][^\s#]*)")


def pins(lines):
    found = {}
    for line in lines:
        match = PIN.match(line.split("#")[0])
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


DIRECT = pins((ROOT / "requirements/direct.txt").read_text().splitlines())
LOCK = pins((ROOT / "requirements/lock.txt").read_text().splitlines())


def test_every_direct_pin_is_in_the_lock_file_with_the_same_version():
    assert DIRECT, "no pins found in requirements/direct.txt"
    assert {name: LOCK.get(name) for name in DIRECT} == DIRECT


def test_lock_file_pins_every_line():
    lines = [l for l in (ROOT / "requirements/lock.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert len(lines) == len(LOCK), [l for l in lines if PIN.match(l) is None]


def test_environment_yml_agrees_with_the_pip_pins():
    conda = pins((ROOT / "environment.yml").read_text().splitlines())
    conda.pop("python")
    assert conda, "no pins found in environment.yml"
    assert {name: DIRECT.get(name) for name in conda} == conda
    # Everything but the test and notebook tools, and TFF itself (installed with --no-deps).
    missing = set(DIRECT) - set(conda) - {"tensorflow-federated"}
    assert not missing


def install_cell(path):
    notebook = nbformat.read(path, as_version=4)
    return next(c.source for c in notebook.cells if "google.colab" in c.source)


# A notebook either installs the pinned TFF stack in Colab, or runs without TFF (on stock
# Colab, Python 3.12): then it installs this package only and never uses TFF, and
# `make test-py312` executes it in an environment without TFF.
TFF_NOTEBOOKS = [p for p in NOTEBOOKS if "tensorflow-federated==" in install_cell(p)]
TFF_FREE_NOTEBOOKS = [p for p in NOTEBOOKS if p not in TFF_NOTEBOOKS]


@pytest.mark.parametrize("path", TFF_NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_cell_uses_exactly_the_pinned_versions(path):
    cell = install_cell(path)
    assert "tensorflow-federated==0.87.0" in cell and "--no-deps" in cell
    assert links.package_install_url() in cell
    installed = pins(re.findall(r"\S+==\S+", cell))
    assert installed, "no pins in the install cell"
    assert {name: DIRECT.get(name) for name in installed} == installed


@pytest.mark.parametrize("path", TFF_FREE_NOTEBOOKS, ids=lambda p: p.name)
def test_tff_free_notebook_installs_only_this_package_and_never_uses_tff(path):
    cell = install_cell(path)
    assert re.findall(r"!pip install .*", cell) == [
        f"!pip install --quiet {links.package_install_url()}"]
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                     if c.cell_type == "code")
    uses_tff = (r"tensorflow_federated|\btff\.|\b(training|runtime)\."
                r"|import[^\n]*\b(training|runtime)\b")
    assert not re.search(uses_tff, code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_title_buttons_overview_and_setup(path):
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].source.startswith("# ") and cells[0].source.count("\n") == 0
    assert cells[1].source == links.button_bar(path.name)
    assert cells[2].source.startswith("## Overview")
    assert cells[3].source.startswith("## Setup")
    # TFF notebooks check that TFF can run here; TFF-free ones print the versions in use.
    check = "environment.describe()" if path in TFF_FREE_NOTEBOOKS else "environment.check("
    assert check in cells[6].source


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert links.colab_url(path.name) in readme, path.name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in readme and "make test" in ci
