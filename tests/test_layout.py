"""The package's layout: a small top level, four layers that import only downwards, every
module listed in one place, none too long to read."""

import ast
import json
import re
from pathlib import Path

import pytest

from tutorial_utils.plumbing import settings

PACKAGE = settings.PACKAGE_DIR
MAX_LINES = 500
MAX_TOP_LEVEL_ENTRIES = 12
SUBPACKAGES = ("plumbing", "simulation", "exercises", "studies")
# A module may import its own layer and the layers below it. Exercises and studies share a
# rank but know nothing of each other: each builds on the core and the simulator only.
RANKS = {"plumbing": 0, "core": 1, "simulation": 2, "exercises": 3, "studies": 3}


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name under ``tutorial_utils``, e.g.
    ``clients`` or ``simulation.batches`` (a subpackage's ``__init__`` by its own name)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts == ("__init__",):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(name: str) -> str:
    head = name.split(".")[0]
    return head if head in SUBPACKAGES else "core"


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c``: the module a.b.c if there is one, else a.b itself
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("tutorial_utils."):
                name = target.removeprefix("tutorial_utils.")
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(package)
    return {name: imported(path, set(found)) - {name} for name, path in found.items()}


def layering_problems(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if name.startswith(f"{target}."):
                continue  # a subpackage's module may import its own package
            mine, theirs = layer(name), layer(target)
            if RANKS[theirs] > RANKS[mine] or (RANKS[theirs] == RANKS[mine] and theirs != mine):
                problems.append(f"{name} ({mine}) imports {target} ({theirs})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the path that closes it."""
    found, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_the_top_level_is_the_core_and_four_subpackages():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, sorted(entries)
    assert {name for name in SUBPACKAGES} <= entries
    assert all(name.endswith(".py") or name in SUBPACKAGES for name in entries)


def test_lower_layers_never_import_higher_ones():
    assert layering_problems(import_graph()) == []


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checks_see_a_wrong_import_and_a_cycle(tmp_path):
    """The two checks above, on a small package that breaks both rules."""
    (tmp_path / "plumbing").mkdir()
    (tmp_path / "studies").mkdir()
    for path in ("__init__.py", "plumbing/__init__.py", "studies/__init__.py"):
        (tmp_path / path).write_text("")
    (tmp_path / "clients.py").write_text("from tutorial_utils import model\n")
    (tmp_path / "model.py").write_text("def f():\n    from tutorial_utils import clients\n")
    (tmp_path / "plumbing" / "links.py").write_text("from tutorial_utils.studies import live\n")
    (tmp_path / "studies" / "live.py").write_text("import tutorial_utils.plumbing.links\n")
    graph = import_graph(tmp_path)
    assert layering_problems(graph) == ["plumbing.links (plumbing) imports studies.live (studies)"]
    assert sorted(map(tuple, cycles(graph))) == [
        ("clients", "model", "clients"),
        ("plumbing.links", "studies.live", "plumbing.links"),
    ]


def listed(init: Path) -> list[str]:
    return re.findall(r"^- ``([a-z_]+)``:", init.read_text(), re.MULTILINE)


def test_each_docstring_lists_its_modules_once():
    """The package's docstring lists the core modules and the subpackages; each
    subpackage's lists its modules and names the notebooks that use it."""
    everything = modules()
    top = listed(PACKAGE / "__init__.py")
    assert sorted(top) == sorted(set(top)), "a module is listed twice"
    assert set(top) == {name for name in everything if "." not in name}
    for package in SUBPACKAGES:
        init = PACKAGE / package / "__init__.py"
        names = listed(init)
        assert sorted(names) == sorted(set(names)), f"{package}: a module is listed twice"
        assert {f"{package}.{name}" for name in names} == {
            name for name in everything if name.startswith(f"{package}.")
        }
        assert re.search(r"notebooks? \d\d", init.read_text()), f"{package}: which notebook?"


def test_the_layout_page_names_every_module():
    page = (settings.project_root() / "docs" / "layout.md").read_text()
    [layout] = re.findall(r"^```\n(.*?)^```$", page, re.MULTILINE | re.DOTALL)
    missing = {name for name, path in modules().items() if f" {path.name} " not in layout}
    missing -= set(SUBPACKAGES)  # an __init__.py: the page names the subpackage's folder
    assert missing == set()
    assert all(f"  {package}/" in layout for package in SUBPACKAGES)


def test_no_module_is_longer_than_a_reader_can_hold():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_is_shipped(package):
    pyproject = (settings.project_root() / "pyproject.toml").read_text()
    assert f'"tutorial_utils.{package}"' in pyproject


MAX_CALL_ARGUMENTS = 6
MAX_NOTEBOOK_IMPORTS = 8


def notebook_code(notebook: Path) -> ast.Module:
    """A notebook's code cells as one module, without the Colab cell (it runs on Colab
    only, and ``tests/test_packaging.py`` checks it) and without shell and magic lines."""
    tree = ast.Module(body=[], type_ignores=[])
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "google.colab" in source:
            continue
        kept = [line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))]
        tree.body += ast.parse("\n".join(kept)).body
    return tree


def notebook_imports(notebook: Path) -> set[str]:
    """What a notebook imports from the package, by dotted name under ``tutorial_utils``:
    ``simulation`` for ``from tutorial_utils import simulation``, ``simulation.batches``
    for ``from tutorial_utils.simulation import batches``."""
    found = set()
    for node in ast.walk(notebook_code(notebook)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tutorial_utils"):
            package = node.module.removeprefix("tutorial_utils").lstrip(".")
            found |= {f"{package}.{alias.name}".lstrip(".") for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {
                alias.name.removeprefix("tutorial_utils.")
                for alias in node.names
                if alias.name.startswith("tutorial_utils.")
            }
    return found


def notebook_calls(notebook: Path) -> list[tuple[str, int]]:
    """Each call a notebook makes into the package (``module.function(...)``, or a name
    imported from it), with the number of arguments it passes."""
    tree = notebook_code(notebook)
    ours = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tutorial_utils"):
            ours |= {alias.asname or alias.name for alias in node.names}
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in ours:
                calls.append((ast.unparse(node.func), len(node.args) + len(node.keywords)))
    return calls


def notebooks() -> list[Path]:
    return sorted((settings.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def import_problems(notebook: Path) -> list[str]:
    """A notebook imports core modules and whole subpackages only, and few of them."""
    imports = notebook_imports(notebook)
    core = {name for name in modules() if "." not in name and name not in SUBPACKAGES}
    problems = [
        f"{notebook.stem} imports {name}: import the core module or the whole subpackage"
        for name in sorted(imports - core - set(SUBPACKAGES))
    ]
    if len(imports) > MAX_NOTEBOOK_IMPORTS:
        problems.append(f"{notebook.stem} imports {len(imports)} names: {sorted(imports)}")
    return problems


def test_notebooks_import_core_modules_and_whole_subpackages():
    """Every call then names its layer: ``simulation.FedReconSimulator``,
    ``studies.privacy.attack``, ``plumbing.runtime.start()``."""
    assert [problem for notebook in notebooks() for problem in import_problems(notebook)] == []


def test_the_import_check_sees_a_module_of_a_subpackage(tmp_path):
    notebook = tmp_path / "99_deep.ipynb"
    source = (
        "from tutorial_utils import clients, config, data, model, plotting, training\n"
        "from tutorial_utils import plumbing, studies\n"
        "from tutorial_utils.simulation import batches\n"
    )
    colab = 'if "google.colab" in sys.modules:\n    from tutorial_utils.plumbing import pins\n'
    cells = [{"cell_type": "code", "source": [text]} for text in (colab, source)]
    notebook.write_text(json.dumps({"cells": cells}))
    assert import_problems(notebook) == [
        "99_deep imports simulation.batches: import the core module or the whole subpackage",
        "99_deep imports 9 names: ['clients', 'config', 'data', 'model', 'plotting', "
        "'plumbing', 'simulation.batches', 'studies', 'training']",
    ]


def test_notebooks_pass_at_most_six_arguments_to_the_package():
    """More goes into a settings object (``config``'s, or e.g. ``experiments.Methods``)."""
    long_calls = {
        (notebook.stem, name, count)
        for notebook in notebooks()
        for name, count in notebook_calls(notebook)
        if count > MAX_CALL_ARGUMENTS
    }
    assert long_calls == set()


def test_the_call_count_sees_a_long_call(tmp_path):
    notebook = tmp_path / "99_long.ipynb"
    source = "from tutorial_utils import data\ndata.load_movielens(1, 2, 3, 4, 5, 6, seven=7)\n"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [source]}]}))
    assert notebook_calls(notebook) == [("data.load_movielens", 7)]
