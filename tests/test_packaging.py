"""The pins, the Colab install cells, the links and the README agree with each other."""

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import copy_of_checkout

import tutorial_utils
from tutorial_utils.exercises import recorded
from tutorial_utils.plumbing import links, pins, run_notebooks
from tutorial_utils.simulation import speed_results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = run_notebooks.notebook_paths(ROOT / "notebooks")
EXACT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)==([^\s;#]+)")


def exact_pins(text):
    """The name==version lines of a requirements text, names normalized."""
    found = {}
    for line in text.splitlines():
        match = EXACT.match(line.strip())
        if match:
            found[pins.normalize(match.group(1))] = match.group(2)
    return found


@pytest.mark.parametrize("stack", pins.STACKS)
def test_every_exact_direct_pin_is_in_the_lock_file_with_the_same_version(stack):
    direct = exact_pins(pins.read(stack, "direct"))
    assert direct, f"no exact pins in requirements/{stack}-direct.txt"
    locked = pins.locked(stack)
    assert {name: locked.get(name) for name in direct} == direct


@pytest.mark.parametrize("stack", pins.STACKS)
def test_every_direct_requirement_is_locked_and_every_lock_line_is_exact(stack):
    resolved, no_deps, tools = pins.direct(stack)
    locked = pins.locked(stack)
    assert not set(resolved + no_deps + tools) - set(locked)
    lines = [
        line
        for line in pins.read(stack, "lock").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == len(locked) == len(exact_pins("\n".join(lines)))


def test_the_stacks_are_what_their_names_say():
    modern, reference = pins.locked("modern"), pins.locked("reference")
    assert modern["tensorflow"] == "2.20.0" and modern["tf-keras"] == "2.20.1"
    assert modern["numpy"].startswith("2.")
    assert reference["tensorflow"] == "2.14.1" and reference["numpy"] == "1.25.2"
    assert "tf-keras" not in reference
    assert modern["tensorflow-federated"] == reference["tensorflow-federated"] == "0.87.0"
    assert "tensorflow-federated" in pins.direct("modern")[1]
    assert "tensorflow-federated" in pins.direct("reference")[1]


def test_the_lock_files_ship_inside_the_package(tmp_path):
    """A wheel of the checkout carries requirements/ as tutorial_utils/requirements/, and
    results/ as tutorial_utils/results/."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(copy_of_checkout(tmp_path)),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("fedrecon_tutorial-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for stack in pins.STACKS:
        for kind in ("direct", "lock"):
            shipped = f"tutorial_utils/requirements/{stack}-{kind}.txt"
            assert shipped in names
            assert zipfile.ZipFile(wheel).read(shipped).decode() == pins.read(stack, kind)
    # So do the recorded results that the solutions notebook shows, and an installed copy
    # (as in Colab, outside any checkout) reads them.
    for path in (
        recorded.TUNING_FILE,
        recorded.SCREEN_FILE,
        recorded.SEEDS_FILE,
        speed_results.RESULTS_FILE,
    ):
        shipped = f"tutorial_utils/results/{path.name}"
        assert zipfile.ZipFile(wheel).read(shipped) == path.read_bytes()
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from tutorial_utils.exercises import recorded; "
        "from tutorial_utils.simulation import speed_results; "
        "print(recorded.RESULTS_DIR, recorded.available(), len(recorded.load_tuning()), "
        "speed_results.RESULTS_FILE, speed_results.load()['tutorial']['clients'])"
    )
    shown = subprocess.run(
        [sys.executable, "-c", check, site],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert shown[:2] == [str(site / "tutorial_utils" / "results"), "True"]
    # Notebook 05's benchmark results too.
    assert shown[3] == str(site / "tutorial_utils" / "results" / "simulation_results.json")
    assert shown[4] == str(speed_results.load()["tutorial"]["clients"])


@pytest.mark.parametrize(
    ("python", "stack"), [((3, 11), "reference"), ((3, 12), "modern"), ((3, 13), "modern")]
)
def test_colab_installs_the_locked_pins_of_its_stack(python, stack):
    assert pins.colab_stack(python) == stack
    installed = exact_pins(
        "\n".join((pins.colab_packages(python) + " " + pins.colab_no_deps_packages(python)).split())
    )
    locked = pins.locked(stack)
    assert installed == {name: locked[name] for name in installed}
    resolved, no_deps, tools = pins.direct(stack)
    # Everything but the local tools, and TFF without its dependencies.
    assert set(installed) == set(resolved + no_deps)
    assert "tensorflow-federated==0.87.0" in pins.colab_no_deps_packages(python).split()
    assert not set(tools) & set(installed)


@pytest.mark.parametrize("python", [(3, 10), (3, 14)])
def test_colab_refuses_a_python_that_runs_neither_stack(python):
    with pytest.raises(ValueError, match="use 3.11, 3.12 or 3.13"):
        pins.colab_stack(python)


def install_cell(path):
    notebook = nbformat.read(path, as_version=4)
    return next(c.source for c in notebook.cells if "google.colab" in c.source)


TFF_NOTEBOOKS = [p for p in NOTEBOOKS if "pins.colab_no_deps_packages()" in install_cell(p)]
TFF_FREE_NOTEBOOKS = [p for p in NOTEBOOKS if p not in TFF_NOTEBOOKS]


def test_notebooks_01_05_06_and_08_install_no_tff():
    assert [p.name[:2] for p in TFF_FREE_NOTEBOOKS] == ["01", "05", "06", "08"]


@pytest.mark.parametrize("path", TFF_NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_adds_the_package_and_tff_and_the_stack_only_where_untested(path):
    commands = re.findall(
        r"^\s*(!.*|from tutorial_utils\S* import .*|if .*)$", install_cell(path), re.M
    )
    assert commands == [
        'if "google.colab" in sys.modules:',
        f"!pip install --no-deps {links.package_install_url()}",
        "from tutorial_utils.plumbing import pins",
        "if not pins.colab_has_tested_stack():  # it says why, and that a restart will follow",
        "!pip install {pins.colab_packages()}",
        "!pip install --no-deps --ignore-requires-python {pins.colab_no_deps_packages()}",
    ]
    # pip's own summary stays visible: Colab offers its restart button from it.
    assert "--quiet" not in install_cell(path) and " -q" not in install_cell(path)


@pytest.mark.parametrize("path", TFF_FREE_NOTEBOOKS, ids=lambda p: p.name)
def test_tff_free_notebook_installs_only_this_package_and_never_uses_tff(path):
    cell = install_cell(path)
    assert re.findall(r"!pip install .*", cell) == [
        f"!pip install --no-deps {links.package_install_url()}"
    ]
    code = "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )
    # Notebook 05's comparison with TFF goes through `parity`, and only where TFF is
    # installed (`parity.tff_installed()`); the TFF-hidden nbval run shows it runs without.
    uses_tff = (
        r"tensorflow_federated|\btff\.|\b(training|runtime)\."
        r"|import[^\n]*\b(training|runtime)\b"
    )
    assert not re.search(uses_tff, code)


def test_the_modern_lock_is_colabs_default_runtime_plus_what_colab_lacks():
    """Every package of the modern lock that Colab's default runtime has is locked at
    Colab's version; the others are TFF's no-deps packages and the local tools' closure,
    never the libraries the notebooks import."""
    colab = pins.colab_runtime("default")
    modern = pins.locked("modern")
    assert {name: version for name, version in modern.items() if name in colab} == {
        name: colab[name] for name in modern if name in colab
    }
    added = set(modern) - set(colab)
    resolved, no_deps, tools = pins.direct("modern")
    assert set(no_deps) <= added
    assert not added & set(resolved), "a library the notebooks import is not Colab's"
    assert {"tensorflow", "tf-keras", "numpy", "pandas", "matplotlib", "jax"} <= set(colab)


def test_colab_freezes_are_read_without_their_direct_references():
    default, past = pins.colab_runtime("default"), pins.colab_runtime("2026.07")
    assert default["tensorflow"] == past["tensorflow"] == "2.20.0"
    assert default["tf-keras"] == "2.20.1" and past["tf-keras"] == "2.20.0"
    assert default["numpy"] == "2.1.3" and past["numpy"] == "2.0.2"
    assert "torch" not in default  # a direct reference (torch @ URL), not a version
    with pytest.raises(ValueError, match="no Colab runtime"):
        pins.colab_runtime("2025.07")


def fake_versions(monkeypatch, **versions):
    """This Python's installed versions as ``pins`` sees them (None: not installed)."""
    monkeypatch.setattr(pins, "_installed_version", lambda name: versions.get(name))


def test_colabs_default_runtime_is_tested_and_the_cell_says_it_adds_only(monkeypatch, capsys):
    fake_versions(monkeypatch, **{"tensorflow": "2.20.0", "tf-keras": "2.20.1"})
    assert pins.untested_packages((3, 13)) == {}
    assert pins.colab_has_tested_stack((3, 13)) is True
    said = capsys.readouterr().out
    assert "tensorflow 2.20.0, tf-keras 2.20.1" in said and "nothing installed is replaced" in said


@pytest.mark.parametrize(
    ("python", "versions", "untested"),
    [
        # Colab's 2026.07 runtime: Python 3.12, tf-keras 2.20.0.
        (
            (3, 12),
            {"tensorflow": "2.20.0", "tf-keras": "2.20.0"},
            {"tf-keras": ("2.20.0", "2.20.1")},
        ),
        # A newer Colab: TensorFlow 2.21.
        (
            (3, 13),
            {"tensorflow": "2.21.0", "tf-keras": "2.21.0"},
            {"tensorflow": ("2.21.0", "2.20.0"), "tf-keras": ("2.21.0", "2.20.1")},
        ),
        # A Python 3.11 runtime: the reference stack, TensorFlow 2.14 without tf-keras.
        (
            (3, 11),
            {"tensorflow": "2.19.0", "tf-keras": "2.19.0"},
            {"tensorflow": ("2.19.0", "2.14.1"), "tf-keras": ("2.19.0", None)},
        ),
    ],
)
def test_any_other_runtime_gets_the_tested_stack_and_is_told_a_restart_follows(
    monkeypatch, capsys, python, versions, untested
):
    fake_versions(monkeypatch, **versions)
    assert pins.untested_packages(python) == untested
    assert pins.colab_has_tested_stack(python) is False
    said = capsys.readouterr().out
    for name, (have, want) in untested.items():
        assert f"{name} {have} (tested: {want or 'none'})" in said
    assert f"Installing the {pins.colab_stack(python)} stack" in said
    assert "restart the session" in said


def test_colab_installs_the_release_of_this_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert links.PACKAGE_RELEASE == f"v{tutorial_utils.__version__}" == f"v{project['version']}"
    assert links.package_install_url().endswith(f"@{links.PACKAGE_RELEASE}")


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


def test_environment_yml_installs_the_modern_lock():
    text = (ROOT / "environment.yml").read_text()
    python = re.search(r"python=(3\.\d+)", text).group(1)
    assert pins.colab_stack(tuple(int(n) for n in python.split("."))) == "modern"
    assert "pip install --no-deps --ignore-requires-python -r requirements/modern-lock.txt" in text


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert links.colab_url(path.name) in readme, path.name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in readme and "make test" in ci
