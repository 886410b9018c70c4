"""The package's layout: every module listed in one place, none too long to read."""

import re

from tutorial_utils import settings

PACKAGE = settings.PACKAGE_DIR
MAX_LINES = 500


def modules() -> set[str]:
    return {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def test_the_package_docstring_lists_every_module_once():
    text = (PACKAGE / "__init__.py").read_text()
    listed = re.findall(r"^- ``([a-z_]+)``:", text, re.MULTILINE)
    assert sorted(listed) == sorted(set(listed)), "a module is listed twice"
    assert set(listed) == modules()


def test_the_layout_page_names_every_module():
    page = (settings.project_root() / "docs" / "layout.md").read_text()
    [layout] = re.findall(r"^```\n(.*?)^```$", page, re.MULTILINE | re.DOTALL)
    assert {name for name in modules() if f"  {name}.py " not in layout} == set()


def test_no_module_is_longer_than_a_reader_can_hold():
    lengths = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
