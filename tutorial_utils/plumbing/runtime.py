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

:func:`connect` opens a connection to any worker service, local or remote; executors made
from it check the worker before every attempt, so that a worker that has died or stopped
answering gives a :class:`WorkerUnavailableError` instead of TFF retrying forever.
:func:`installed` runs TFF on another context for a while (several workers:
``tutorial_utils.plumbing.workers``); :func:`start` leaves such a context in place.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

_PR_SET_PDEATHSIG = 1
READY_TIMEOUT_SECONDS = 60.0
# How long a connected worker may stay unreachable before the computation fails.
RECONNECT_TIMEOUT_SECONDS = 10.0
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


def _launch(command: list[str]) -> tuple[list[str], object]:
    """The command that starts ``command`` so that it dies with this process, and the
    ``preexec_fn`` it needs.

    Linux's ``setpriv --pdeathsig`` sets the death signal itself, so Python can start it
    without running code in the forked child: with grpcio's fork handlers active (TFF's
    connections), such a child can abort before it ever runs the worker. Without
    ``setpriv``, the signal is set from Python in the child.
    """
    if not sys.platform.startswith("linux"):
        return command, None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *command], None
    return command, _die_with_parent


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
    command, preexec_fn = _launch(
        [
            str(worker_binary_path()),
            f"--port={port}",
            f"--max_concurrent_computation_calls={max_concurrent_computation_calls}",
        ]
    )
    with log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    worker = Worker(process=process, port=port, log_path=Path(log_file.name))
    _STARTED.append(worker)
    return worker


class WorkerUnavailableError(RuntimeError):
    """A TFF worker cannot be reached, or the process serving it has ended."""


@dataclasses.dataclass
class Connection:
    """A gRPC channel to a TFF worker service at ``address`` (``host:port``).

    ``worker`` is the process behind it when this package started it, else None.
    """

    address: str
    channel: grpc.Channel
    worker: Worker | None = None
    stub: object = dataclasses.field(init=False)  # TFF's RemoteExecutorGrpcStub

    def __post_init__(self):
        import tensorflow_federated as tff

        self.stub = tff.framework.RemoteExecutorGrpcStub(self.channel)

    def wait_until_ready(self, timeout: float) -> None:
        """Returns once the worker answers; raises WorkerUnavailableError after ``timeout``."""
        import grpc

        if self.worker is not None and not self.worker.is_running():
            raise WorkerUnavailableError(
                f"The TFF worker at {self.address} (pid {self.worker.pid}) has exited with "
                f"code {self.worker.process.returncode}; its log is {self.worker.log_path}."
            )
        if self.stub.is_ready:
            return
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            if self.worker is not None:
                self.worker.stop()
                raise WorkerUnavailableError(
                    f"The TFF worker at {self.address} (pid {self.worker.pid}) did not answer "
                    f"within {timeout:.0f} s and was stopped; its log is "
                    f"{self.worker.log_path}."
                ) from None
            raise WorkerUnavailableError(
                f"No TFF worker answers at {self.address} (waited {timeout:.0f} s). Check that "
                f"`worker_binary --port=PORT` runs there and that this machine can reach it "
                f"(address, firewall, SSH tunnel)."
            ) from None

    def executor_factory(self, reconnect_timeout: float = RECONNECT_TIMEOUT_SECONDS):
        """TFF's executor factory for this worker, checking the worker before each attempt.

        TFF retries a computation whenever the worker is unavailable, without limit. It
        asks this factory for a new executor before every attempt; the check turns a dead
        or unreachable worker into a WorkerUnavailableError within ``reconnect_timeout``.
        """
        import tensorflow_federated as tff

        def executor_fn(cardinalities):
            self.wait_until_ready(reconnect_timeout)
            # As TFF's own local context does: computations without client values run
            # with zero clients.
            cardinalities.setdefault(tff.CLIENTS, 0)
            executor = tff.framework.RemoteExecutor(self.stub)
            executor.set_cardinalities(cardinalities)
            return executor

        return tff.framework.ResourceManagingExecutorFactory(executor_fn)

    def close(self) -> None:
        self.channel.close()


def connect(
    address: str, *, worker: Worker | None = None, timeout: float = READY_TIMEOUT_SECONDS
) -> Connection:
    """Connects to the TFF worker service at ``address`` and waits until it answers."""
    import grpc

    connection = Connection(address, grpc.insecure_channel(address, _GRPC_OPTIONS), worker)
    try:
        connection.wait_until_ready(timeout)
    except WorkerUnavailableError:
        connection.close()
        raise
    return connection


_STARTED: list[Worker] = []
_LOCAL: Worker | None = None
_INSTALLED: list = []  # contexts put in place by `installed`, innermost last


def start(*, max_concurrent_computation_calls: int = -1) -> Worker | None:
    """Makes TFF run on a local C++ worker owned by this package; returns that worker.

    Idempotent: a running worker is reused. Replaces TFF's default context, which would
    start a worker of its own that nobody stops. While a context put in place by
    :func:`installed` is in use, does nothing and returns None.
    """
    global _LOCAL
    if _INSTALLED:
        return None
    if _LOCAL is not None and _LOCAL.is_running():
        return _LOCAL

    import tensorflow_federated as tff
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )

    worker = start_worker(max_concurrent_computation_calls=max_concurrent_computation_calls)
    connection = connect(f"127.0.0.1:{worker.port}", worker=worker)
    context = tff.framework.SyncExecutionContext(
        executor_fn=connection.executor_factory(),
        compiler_fn=compiler.desugar_and_transform_to_native,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    tff.framework.set_default_context(context)
    _LOCAL = worker
    return worker


@contextlib.contextmanager
def installed(context):
    """Runs TFF computations on ``context`` inside the ``with`` block.

    The context goes on top of TFF's context stack; :func:`start`, which the training
    helpers call, leaves it there instead of starting a local worker.
    """
    import tensorflow_federated as tff

    with tff.framework.get_context_stack().install(context):
        _INSTALLED.append(context)
        try:
            yield context
        finally:
            _INSTALLED.remove(context)


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
