import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from conftest import README_NOTEBOOK_COLUMNS, markdown_table
from nbclient.exceptions import CellExecutionError

from tutorial_utils.plumbing import run_notebooks


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(notebook, path)


def test_notebooks_are_found_in_numbered_order(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "notes.ipynb", "10_c.ipynb"):
        write_notebook(tmp_path / name, "1")
    assert [p.name for p in run_notebooks.notebook_paths(tmp_path)] == [
        "01_a.ipynb",
        "02_b.ipynb",
        "10_c.ipynb",
    ]


def test_execute_stores_outputs_and_runs_in_the_notebook_folder(tmp_path):
    source = tmp_path / "nb" / "01_x.ipynb"
    source.parent.mkdir()
    write_notebook(source, "import os\nprint(os.getcwd())")
    destination = tmp_path / "out" / "01_x.ipynb"
    run_notebooks.execute(source, destination)
    cell = nbformat.read(destination, as_version=4).cells[0]
    assert cell.outputs[0]["text"].strip() == str(source.parent)


def test_what_the_kernel_prints_outside_cells_goes_to_the_log(tmp_path, capfd):
    source = tmp_path / "01_noisy.ipynb"
    # As TensorFlow's C++ code does: straight to the process's stderr, past Python.
    write_notebook(source, "import os\nos.write(2, b'C++ noise\\n')\nprint('in the cell')")
    log = tmp_path / "logs" / "01_noisy.log"
    run_notebooks.execute(source, tmp_path / "out" / "01_noisy.ipynb", log=log)
    assert "C++ noise" in log.read_text()
    assert "C++ noise" not in capfd.readouterr().err
    cell = nbformat.read(tmp_path / "out" / "01_noisy.ipynb", as_version=4).cells[0]
    assert cell.outputs[0]["text"] == "in the cell\n"


def test_a_failing_notebook_writes_nothing(tmp_path):
    source = tmp_path / "01_bad.ipynb"
    write_notebook(source, "raise ValueError('broken on purpose')")
    destination = tmp_path / "out" / "01_bad.ipynb"
    with pytest.raises(CellExecutionError, match="broken on purpose"):
        run_notebooks.execute(source, destination)
    assert not destination.exists() and not destination.parent.exists()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder that main() runs in, with the data lookup stubbed out."""
    folder = tmp_path / "project"
    (folder / "notebooks").mkdir(parents=True)
    monkeypatch.setattr(run_notebooks.settings, "project_root", lambda: folder)
    monkeypatch.setattr(run_notebooks, "data_in_use", lambda: "test data")
    return folder


def test_a_cell_that_runs_too_long_times_out_and_writes_nothing(project, capsys):
    folder = project
    write_notebook(folder / "notebooks" / "01_slow.ipynb", "import time\ntime.sleep(60)")
    assert run_notebooks.main(["--in-place", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "01_slow.ipynb TIMED OUT: a cell ran for more than 2 s (raise it with --timeout)" in out
    notebook = nbformat.read(folder / "notebooks" / "01_slow.ipynb", as_version=4)
    assert notebook.cells[0].outputs == []  # the notebook was left as it was


def test_timeout_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        run_notebooks.main(["--timeout", "0"])
    assert "--timeout must be at least 1 second, got 0" in capsys.readouterr().err


def test_every_notebook_runs_even_after_a_failure_and_a_table_sums_them_up(project, capsys):
    write_notebook(project / "notebooks" / "01_good.ipynb", "print('fine')")
    write_notebook(project / "notebooks" / "02_bad.ipynb", "raise ValueError('broken on purpose')")
    write_notebook(project / "notebooks" / "03_good.ipynb", "print('also fine')")
    assert run_notebooks.main([]) == 1
    out = capsys.readouterr().out
    assert "Configuration: " in out and "Data: test data" in out
    assert re.search(r"\[1/3\] 01_good.ipynb passed in \d+ s", out)
    assert re.search(r"\[2/3\] 02_bad.ipynb FAILED in \d+ s", out)
    assert re.search(r"\[3/3\] 03_good.ipynb passed in \d+ s", out)
    table = out[out.index("notebook  ") :]
    assert re.search(r"02_bad.ipynb\s+FAILED\s+\d+", table) and "total" in table
    executed = project / "output" / "notebooks"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["01_good.ipynb", "03_good.ipynb"]
    record = json.loads((executed / "run_times.json").read_text())
    assert [(e["notebook"], e["result"], e["data"]) for e in record["notebooks"]] == [
        ("01_good.ipynb", "passed", "test data"),
        ("02_bad.ipynb", "FAILED", "test data"),
        ("03_good.ipynb", "passed", "test data"),
    ]
    assert record["notebooks"][0]["machine"]["cores"] == os.cpu_count()
    assert record["total_seconds"] == pytest.approx(
        sum(e["seconds"] for e in record["notebooks"]), abs=0.2
    )


def test_notebooks_run_side_by_side_give_the_same_record_and_the_whole_run_time(project, capsys):
    write_notebook(project / "notebooks" / "01_slow.ipynb", "import time\ntime.sleep(3)")
    write_notebook(project / "notebooks" / "02_bad.ipynb", "raise ValueError('broken on purpose')")
    write_notebook(project / "notebooks" / "03_good.ipynb", "print('fine')")
    start = time.monotonic()
    assert run_notebooks.main(["--jobs", "2"]) == 1
    wall = time.monotonic() - start
    out = capsys.readouterr().out
    # Each notebook's end is told once, under its own number, whatever the order.
    ends = [line for line in out.splitlines() if re.match(r"\[\d/3\] .* in \d+ s$", line)]
    assert sorted(line.split()[:3] for line in ends) == [
        ["[1/3]", "01_slow.ipynb", "passed"],
        ["[2/3]", "02_bad.ipynb", "FAILED"],
        ["[3/3]", "03_good.ipynb", "passed"],
    ]
    assert "[2/3] 02_bad.ipynb FAILED; nothing was written." in out
    assert "broken on purpose" in out  # the error, told where it happened
    executed = project / "output" / "notebooks"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["01_slow.ipynb", "03_good.ipynb"]
    record = json.loads((executed / "run_times.json").read_text())
    assert [(e["notebook"], e["result"]) for e in record["notebooks"]] == [
        ("01_slow.ipynb", "passed"),
        ("02_bad.ipynb", "FAILED"),
        ("03_good.ipynb", "passed"),
    ]
    whole = float(re.search(r"^whole run\s+(\d+)$", out, re.M).group(1))
    assert whole <= wall + 1 and record["notebooks"][0]["seconds"] >= 3


def test_side_by_side_the_notebooks_recorded_as_longest_start_first(project, capsys):
    for name in ("01_a", "02_b", "03_c"):
        write_notebook(project / "notebooks" / f"{name}.ipynb", "1")
    run_notebooks.write_times(
        project / "notebooks" / "run_times.json",
        {
            f"{name}.ipynb": {"notebook": f"{name}.ipynb", "seconds": seconds}
            for name, seconds in (("01_a", 5.0), ("02_b", 1.0), ("03_c", 90.0))
        },
    )
    assert run_notebooks.main(["--jobs", "2"]) == 0
    starts = [line for line in capsys.readouterr().out.splitlines() if line.endswith(" ...")]
    assert starts == ["[3/3] 03_c.ipynb ...", "[1/3] 01_a.ipynb ...", "[2/3] 02_b.ipynb ..."]


def test_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        run_notebooks.main(["--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_a_run_of_some_notebooks_updates_only_their_times(project):
    write_notebook(project / "notebooks" / "01_a.ipynb", "1")
    write_notebook(project / "notebooks" / "02_b.ipynb", "raise ValueError('not yet')")
    assert run_notebooks.main(["--in-place"]) == 1
    times = project / "notebooks" / "run_times.json"
    first = {e["notebook"]: e for e in json.loads(times.read_text())["notebooks"]}
    write_notebook(project / "notebooks" / "02_b.ipynb", "2")
    assert run_notebooks.main(["--in-place", "--only", "02"]) == 0
    second = {e["notebook"]: e for e in json.loads(times.read_text())["notebooks"]}
    assert second["01_a.ipynb"] == first["01_a.ipynb"]
    assert (first["02_b.ipynb"]["result"], second["02_b.ipynb"]["result"]) == ("FAILED", "passed")


def test_a_damaged_times_file_is_named_in_the_error(project):
    write_notebook(project / "notebooks" / "01_a.ipynb", "1")
    (project / "notebooks" / "run_times.json").write_text("{not json")
    with pytest.raises(ValueError, match="run_times.json: not a run-times file"):
        run_notebooks.main(["--in-place"])


def test_readable_seconds():
    assert [run_notebooks.readable_seconds(s) for s in (0.4, 42.2, 99.4, 99.6, 150)] == [
        "0 s",
        "42 s",
        "99 s",
        "1.7 min",
        "2.5 min",
    ]


def test_prose_words_counts_what_a_learner_reads():
    markdown = (
        '<table><td><a href="https://colab.research.google.com/x">Run in Colab</a></td></table>\n'
        "## Set up\n\nRead [the paper](https://arxiv.org/abs/2102.03448) (see https://x.org/a b)"
        " - 1 step, `tff.learning` and **bold** words."
    )
    # Run in Colab (3), Set up (2), Read the paper (3), see b (2), 1 step, tff.learning and
    # bold words (6): no tag, no address, no "##" and no "-".
    assert run_notebooks.prose_words(markdown) == 16


def test_notebook_size_counts_code_cells_and_the_words_of_markdown_cells(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# A title\n\nTwo lines\nof prose."),
        nbformat.v4.new_code_cell("# a comment is code, not prose\nx = 1"),
        nbformat.v4.new_raw_cell("raw words are not read"),
        nbformat.v4.new_code_cell(""),
        nbformat.v4.new_markdown_cell("More."),
    ]
    path = tmp_path / "01_a.ipynb"
    nbformat.write(notebook, path)
    # A title Two lines of prose (6), More (1); the empty code cell is a code cell.
    assert run_notebooks.notebook_size(path) == (2, 7)


def test_learner_minutes_adds_reading_cells_and_run_time_rounded_to_5():
    # 1000 words: 5 min; 10 cells: 10 min; 120 s: 2 min; 17 min rounds to 15.
    assert run_notebooks.learner_minutes(10, 1000, 120) == 15
    assert run_notebooks.learner_minutes(10, 1000, 210) == 20  # 18.5 min
    assert run_notebooks.learner_minutes(1, 10, 5) == 5  # never less than 5


def test_reading_table_has_a_row_a_notebook_and_their_sums(tmp_path):
    for name, cells in (("01_a.ipynb", 3), ("02_b.ipynb", 12)):
        write_notebook(tmp_path / name, *["1"] * cells)
    entries = {
        "01_a.ipynb": {"notebook": "01_a.ipynb", "seconds": 30.0},
        "02_b.ipynb": {"notebook": "02_b.ipynb", "seconds": 600.0},
    }
    run_notebooks.write_times(tmp_path / run_notebooks.TIMES_FILE, entries)
    assert run_notebooks.reading_table(tmp_path).splitlines() == [
        "| Notebook | Code cells | Words of prose | Run time | Minutes |",
        "|---|---:|---:|---:|---:|",
        "| 01_a | 3 | 0 | 30 s | 5 |",
        "| 02_b | 12 | 0 | 10.0 min | 20 |",
        "| in all | 15 | 0 | 10.5 min | 25 |",
    ]
    (tmp_path / "03_c.ipynb").write_bytes((tmp_path / "01_a.ipynb").read_bytes())
    with pytest.raises(ValueError, match="no run time for 03_c.ipynb"):
        run_notebooks.reading_table(tmp_path)


def test_the_readme_run_times_are_the_recorded_ones():
    """The README's run-time column and its machine note come from notebooks/run_times.json,
    which `make notebooks` writes when it refreshes the stored outputs."""
    root = Path(run_notebooks.__file__).resolve().parents[2]
    entries = run_notebooks.read_times(root / "notebooks" / run_notebooks.TIMES_FILE)
    readme = (root / "README.md").read_text()
    rows = {}
    for row in markdown_table(readme, README_NOTEBOOK_COLUMNS):
        link = re.fullmatch(r"\[(\d\d_\w+)\]\(notebooks/\1\.ipynb\)", row["Notebook"])
        assert link, row["Notebook"]
        rows[link.group(1)] = row["Run time*"]
    names = [p.name for p in run_notebooks.notebook_paths(root / "notebooks")]
    assert sorted(entries) == names and sorted(f"{n}.ipynb" for n in rows) == names
    for name, entry in entries.items():
        assert entry["result"] == "passed" and entry["config"] == "full", name
        assert "MovieLens 1M (GroupLens)" in entry["data"], name
        assert rows[name.removesuffix(".ipynb")] == run_notebooks.readable_seconds(
            entry["seconds"]
        ), name
    total = sum(e["seconds"] for e in entries.values())
    machine = next(iter(entries.values()))["machine"]
    [note] = [" ".join(p.split()) for p in readme.split("\n\n") if p.startswith("\\*Measured")]
    assert f"{machine['cores']} cores ({machine['cpu']})" in note
    assert f"{run_notebooks.readable_seconds(total)} in all" in note
