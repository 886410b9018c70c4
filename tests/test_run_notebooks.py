import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from tutorial_utils import run_notebooks


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(notebook, path)


def test_notebooks_are_found_in_numbered_order(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "notes.ipynb", "10_c.ipynb"):
        write_notebook(tmp_path / name, "1")
    assert [p.name for p in run_notebooks.notebook_paths(tmp_path)] == [
        "01_a.ipynb", "02_b.ipynb", "10_c.ipynb",
    ]


def test_execute_stores_outputs_and_runs_in_the_notebook_folder(tmp_path):
    source = tmp_path / "nb" / "01_x.ipynb"
    source.parent.mkdir()
    write_notebook(source, "import os\nprint(os.getcwd())")
    destination = tmp_path / "out" / "01_x.ipynb"
    run_notebooks.execute(source, destination)
    cell = nbformat.read(destination, as_version=4).cells[0]
    assert cell.outputs[0]["text"].strip() == str(source.parent)


def test_a_failing_notebook_writes_nothing(tmp_path):
    source = tmp_path / "01_bad.ipynb"
    write_notebook(source, "raise ValueError('broken on purpose')")
    destination = tmp_path / "out" / "01_bad.ipynb"
    with pytest.raises(CellExecutionError, match="broken on purpose"):
        run_notebooks.execute(source, destination)
    assert not destination.exists() and not destination.parent.exists()


def test_a_cell_that_runs_too_long_times_out_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "project"
    (folder / "notebooks").mkdir(parents=True)
    write_notebook(folder / "notebooks" / "01_slow.ipynb", "import time\ntime.sleep(60)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_notebooks.settings, "project_root", lambda: folder)
        assert run_notebooks.main(["--in-place", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "01_slow.ipynb TIMED OUT: a cell ran for more than 2 s (raise it with --timeout)" in out
    notebook = nbformat.read(folder / "notebooks" / "01_slow.ipynb", as_version=4)
    assert notebook.cells[0].outputs == []  # the notebook was left as it was


def test_timeout_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        run_notebooks.main(["--timeout", "0"])
    assert "--timeout must be at least 1 second, got 0" in capsys.readouterr().err
