"""The README and the pages of docs/: their links lead somewhere, and the notebooks' sizes
and a learner's minutes are those of the notebooks as stored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import README_NOTEBOOK_COLUMNS, markdown_table

from tutorial_utils.plumbing import links, run_notebooks, settings

ROOT = settings.project_root()
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "CONTRIBUTING.md",
    ROOT / "results" / "README.md",
]
READING_COLUMNS = ["Notebook", "Code cells", "Words of prose", "Run time", "Minutes"]
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_code_blocks(markdown: str) -> str:
    """``markdown`` without its fenced code blocks (whose lines are neither links nor
    headings)."""
    return re.sub(r"^```.*?^```$", "", markdown, flags=re.M | re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without Markdown's marks (link targets,
    HTML tags), lower case, every character but letters, digits, ``_``, ``-`` and spaces
    dropped, spaces turned into ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on ``page``; a repeated heading gets ``-1``, ``-2``, ... as
    on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+?)#*$", without_code_blocks(page.read_text()), re.M):
        anchor = github_anchor(heading)
        found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    """The targets of the links of ``page`` that point inside the project."""
    targets = LINK.findall(without_code_blocks(page.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_github_anchor_follows_githubs_rules():
    assert github_anchor("The two stacks, and why they install with `--no-deps`") == (
        "the-two-stacks-and-why-they-install-with---no-deps"
    )
    assert github_anchor("Exercise 1, tuned") == "exercise-1-tuned"
    assert github_anchor("What `run_notebooks.py` does") == "what-run_notebookspy-does"
    assert github_anchor("TFF's worker processes") == "tffs-worker-processes"


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Setup\n\n```bash\n# not a heading\n```\n\n## Setup\n")
    assert anchors(page) == {"title", "setup", "setup-1"}


def test_relative_links_leave_out_addresses_and_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "[a](docs/a.md#x) [b](https://example.org) [`c`](../c/) [d](#here)\n"
        "```\n[e](not/a/link.md)\n```\n"
    )
    assert relative_links(page) == ["docs/a.md#x", "../c/", "#here"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_a_heading(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(destination):
            broken.append(f"{target}: no heading of {destination.name} has this anchor")
    assert broken == []


def test_the_notebooks_page_counts_the_notebooks_as_stored():
    """docs/notebooks.md's table of code cells, words of prose, run times and a learner's
    minutes is the one computed from the notebooks and notebooks/run_times.json."""
    expected = run_notebooks.reading_table(ROOT / "notebooks")
    page = (ROOT / "docs" / "notebooks.md").read_text()
    assert expected in page, (
        "The table of docs/notebooks.md ('How long each takes') is not the notebooks' as "
        f"stored. Replace it with:\n\n{expected}\n"
    )


def test_the_notebooks_page_states_the_rule_the_code_applies():
    page = " ".join((ROOT / "docs" / "notebooks.md").read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"read at {run_notebooks.WORDS_PER_MINUTE} words a minute" in page
    assert f"plus {run_notebooks.MINUTES_PER_CODE_CELL} minute a code cell" in page
    assert f"nearest multiple of {run_notebooks.ROUND_TO_MINUTES} minutes" in page
    assert f"at {run_notebooks.WORDS_PER_MINUTE} words a minute" in readme
    assert f"rounded to {run_notebooks.ROUND_TO_MINUTES} minutes" in readme


def test_the_readme_minutes_are_the_notebooks_pages():
    page = markdown_table((ROOT / "docs" / "notebooks.md").read_text(), READING_COLUMNS)
    minutes = {row["Notebook"]: row["Minutes"] for row in page if row["Notebook"] != "in all"}
    readme = markdown_table((ROOT / "README.md").read_text(), README_NOTEBOOK_COLUMNS)
    shown = {
        re.match(r"\[(\w+)\]", row["Notebook"]).group(1): row["Minutes to read†"] for row in readme
    }
    expected = "\n".join(f"{name}: {value}" for name, value in minutes.items())
    assert shown == minutes, (
        "The README's column 'Minutes to read†' differs from docs/notebooks.md. It should "
        f"read, notebook by notebook:\n{expected}"
    )


def test_the_readme_opens_notebook_01_in_colab_first():
    readme = (ROOT / "README.md").read_text()
    intro = readme.split("\n## ", 1)[0]
    [line] = [p for p in intro.split("\n\n") if p.startswith("**Start in Colab:**")]
    assert f"]({links.colab_url('01_data_exploration.ipynb')})" in line
