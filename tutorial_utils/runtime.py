"""TFF's execution context and the C++ worker process behind it.

TFF 0.87 runs federated computations in a C++ ``worker_binary`` that it starts as a
subprocess on first use. That subprocess is never stopped by TFF: after ``python script.py``
it keeps running (adopted by PID 1) and holds the script's stdout open, so a pipeline such
as ``python script.py | tee log`` never finishes.

This module starts the worker itself, so that it knows the process it owns, and stops it:

- at interpreter exit (``atexit``), which covers scripts and notebook kernels that shut
  down normally;
- when the Python process dies abruptly (Linux ``PR_SET_PDEATHSIG``), which covers a
  killed kernel.

Call :func:`start` once before building TFF computations (the training helpers do it
for you). Only processes started here are ever signalled, by PID.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT_SECONDS = 60.0
_STOP_TIMEOUT_SECONDS = 10.0
_GRPC_OPTIONS = [
    ("grpc.max_message_length", 2 * 1000 * 1000 * 1000),
    ("grpc.max_receive_message_length", 2 * 1000 * 1000 * 1000),
    ("grpc.max_send_message_length", 2 * 1000 * 1000 * 1000),
]


def worker_binary_path() -> Path:
    """Where the installed tensorflow-federated keeps its C++ worker."""
    import tensorflow_federated as tff

    path = Path(tff.__file__).resolve().parent / "data" / "worker_binary"
    if not path.is_file():
        raise RuntimeError(f"TFF's worker binary is missing: expected it at {path}.")
    return path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclasses.dataclass
class Worker:
    """A ``worker_binary`` process started by this package."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> None:
        """Stops the worker: SIGINT, then SIGKILL if it has not ended within ``timeout``."""
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(port: int | None = None, *, max_concurrent_computation_calls: int = -1) -> Worker:
    """Starts a ``worker_binary`` on ``port`` (a free one when None) and returns it.

    The worker's own log goes to a file in the temporary folder, never to this process's
    stdout, so it cannot hold a pipe open. It is stopped at exit and dies with this process.
    """
    import portpicker

    port = port or portpicker.pick_unused_port()
    log_file = tempfile.NamedTemporaryFile(
        prefix=f"tff-worker-{port}-", suffix=".log", delete=False
    )
    with log_file:
        process = subprocess.Popen(
            [
                str(worker_binary_path()),
                f"--port={port}",
                f"--max_concurrent_computation_calls={max_concurrent_computation_calls}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    worker = Worker(process=process, port=port, log_path=Path(log_file.name))
    _STARTED.append(worker)
    return worker


def _wait_until_ready(stub, worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not stub.is_ready:
        if not worker.is_running():
            raise RuntimeError(
                f"TFF worker (pid {worker.pid}) exited with code {worker.process.returncode} "
                f"before it was ready; its log is {worker.log_path}."
            )
        if time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(
                f"TFF worker on port {worker.port} was not ready after {timeout:.0f} s; "
                f"its log is {worker.log_path}."
            )
        time.sleep(0.1)


_STARTED: list[Worker] = []
_LOCAL: Worker | None = None


def start(*, max_concurrent_computation_calls: int = -1) -> Worker:
    """Makes TFF run on a local C++ worker owned by this package; returns that worker.

    Idempotent: a running worker is reused. Replaces TFF's default context, which would
    start a worker of its own that nobody stops.
    """
    global _LOCAL
    if _LOCAL is not None and _LOCAL.is_running():
        return _LOCAL

    import grpc
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )

    worker = start_worker(max_concurrent_computation_calls=max_concurrent_computation_calls)
    channel = grpc.insecure_channel(f"localhost:{worker.port}", _GRPC_OPTIONS)
    stub = tff.framework.RemoteExecutorGrpcStub(channel)
    _wait_until_ready(stub, worker, _READY_TIMEOUT_SECONDS)

    def executor_fn(cardinalities):
        # As TFF's own local context does: computations without client values run
        # with zero clients.
        cardinalities.setdefault(tff.CLIENTS, 0)
        executor = tff.framework.RemoteExecutor(stub)
        executor.set_cardinalities(cardinalities)
        return executor

    context = tff.framework.SyncExecutionContext(
        executor_fn=tff.framework.ResourceManagingExecutorFactory(executor_fn),
        compiler_fn=compiler.desugar_and_transform_to_native,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    tff.framework.set_default_context(context)
    _LOCAL = worker
    return worker


def running_workers() -> list[Worker]:
    """The workers this package started that are still running."""
    return [worker for worker in _STARTED if worker.is_running()]


def shutdown() -> None:
    """Stops every worker this package started. Safe to call more than once."""
    global _LOCAL
    for worker in _STARTED:
        worker.stop()
    _STARTED.clear()
    _LOCAL = None


atexit.register(shutdown)


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (used by tests on workers we started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
