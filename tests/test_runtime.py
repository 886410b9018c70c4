"""TFF's worker process is stopped when a script or a notebook kernel ends."""

import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("tensorflow_federated")

from conftest import wait_gone

from tutorial_utils.plumbing import runtime

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from tutorial_utils.plumbing import runtime
    import tensorflow_federated as tff

    worker = runtime.start()
    print("WORKER", worker.pid, flush=True)

    @tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
    def total(values):
        return tff.federated_sum(values)

    print("SUM", total([1, 2, 3]), flush=True)
    """
)


def worker_pid(text: str) -> int:
    return int(next(line for line in text.splitlines() if line.startswith("WORKER")).split()[1])


def test_no_worker_is_left_after_a_script():
    # Pipe stdout, as `python script.py | tee log` does: the run must end, not hang.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SUM 6" in result.stdout
    assert wait_gone(worker_pid(result.stdout), seconds=10.0)


def test_worker_dies_with_a_killed_python():
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT + "\nimport time\ntime.sleep(600)\n"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        while not any(line.startswith("SUM") for line in lines):
            line = process.stdout.readline()
            assert line, "script ended early"
            lines.append(line)
        pid = worker_pid("".join(lines))
        assert runtime.pid_alive(pid)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert wait_gone(pid, seconds=10.0)


def test_no_worker_is_left_after_a_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SCRIPT)]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs)
    assert "SUM 6" in text
    assert wait_gone(worker_pid(text), seconds=10.0)


def test_shutdown_stops_every_worker_started_here():
    worker = runtime.start_worker()
    assert worker.is_running()
    runtime.shutdown()
    assert not worker.is_running()
    assert runtime.running_workers() == []
    runtime.shutdown()  # a second call is harmless


def test_the_worker_is_started_without_python_code_in_the_forked_child():
    """With setpriv, nothing runs between fork and exec (grpcio's fork handlers can abort
    such a child); the death signal is still set, so the worker dies with Python."""
    command, preexec_fn = runtime._launch(["worker_binary", "--port=1"])
    if runtime.shutil.which("setpriv"):
        assert command[:4] == [runtime.shutil.which("setpriv"), "--pdeathsig", "TERM", "--"]
        assert preexec_fn is None
    else:
        assert preexec_fn is runtime._die_with_parent
    assert command[-2:] == ["worker_binary", "--port=1"]
