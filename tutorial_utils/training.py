"""Federated Reconstruction with TFF 0.87: building the processes, training, evaluating.

TFF 0.87 names (the walkthrough's older names in brackets):

- ``tff.learning.algorithms.build_fed_recon``
  (``tff.learning.reconstruction.build_training_process``)
- ``tff.learning.algorithms.build_fed_recon_eval``
  (``tff.learning.reconstruction.build_federated_evaluation``)
- ``tff.learning.models.ReconstructionModel.from_keras_model_and_layers``
  (``tff.learning.reconstruction.from_keras_model``)
- ``tff.learning.optimizers.build_sgdm(lr)`` (``lambda: tf.keras.optimizers.SGD(lr)``)

TFF's execution context and the C++ worker process behind it.

TFF 0.87 runs federated computations in a C++ ``worker_binary`` that it starts as a
subprocess on first use. That subprocess is never stopped by TFF: after ``python script.py``
it keeps running (adopted by PID 1) and holds the script's stdout open, so a pipeline such
as ``python script.py | tee log`` never finishes.

This module starts the worker itself, so that it knows the process it owns, and stops it:

- at interpreter exit (``atexit``), which covers scripts and notebook kernels that shut
  down normally;
- when the Python process dies abruptly (Linux ``PR_SET_PDEATHSIG``), which covers a
  killed kernel.

Call :func:`start_runtime` once before building TFF computations (the training helpers do it
for you). Only processes started here are ever signalled, by PID.

:func:`connect` opens a connection to any worker service, local or remote; executors made
from it check the worker before every attempt, so that a worker that has died or stopped
answering gives a :class:`WorkerUnavailableError` instead of TFF retrying forever.
:func:`installed` runs TFF on another context for a while (several workers:
``tutorial_utils.studies.workers``); :func:`start_runtime` leaves such a context in place.
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tutorial_utils import model
from tutorial_utils.config import WALKTHROUGH_RUN, FedReconRun
from tutorial_utils.plumbing import rounds

if TYPE_CHECKING:
    import grpc


def build_training_process(
    model_fn: Callable,
    run: FedReconRun = WALKTHROUGH_RUN,
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
    **options,
):
    """``tff.learning.algorithms.build_fed_recon`` with SGD at ``run``'s three rates.

    ``model_fn`` returns any ``tff.learning.models.ReconstructionModel``; the loss and the
    metrics are matrix factorization's unless ``loss_fn`` and ``metrics_fn`` say otherwise.
    ``dataset_split_fn`` is TFF's default unless given, e.g.
    ``clients.tff_split_fn(run.train_split)``. ``options`` go to ``build_fed_recon`` as they
    are, e.g. ``model_aggregator_factory`` and ``client_weighting`` (``dp_training``).
    """
    import tensorflow_federated as tff

    start_runtime()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_fed_recon(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        server_optimizer_fn=sgd(run.server_lr),
        client_optimizer_fn=sgd(run.client_lr),
        reconstruction_optimizer_fn=sgd(run.reconstruction_lr),
        dataset_split_fn=dataset_split_fn,
        **options,
    )


def build_evaluation_process(
    model_fn: Callable,
    run: FedReconRun = WALKTHROUGH_RUN,
    dataset_split_fn: Callable | None = None,
    *,
    loss_fn: Callable = model.loss_fn,
    metrics_fn: Callable | None = model.metrics_fn,
):
    """``tff.learning.algorithms.build_fed_recon_eval``: reconstruct at ``run``'s
    reconstruction rate, then evaluate.

    A model without local variables skips reconstruction and is scored on the second part
    of each client's data: that is how a fully global model is scored on the same examples
    as a partially local one.
    """
    import tensorflow_federated as tff

    start_runtime()
    return tff.learning.algorithms.build_fed_recon_eval(
        model_fn,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        reconstruction_optimizer_fn=tff.learning.optimizers.build_sgdm(run.reconstruction_lr),
        dataset_split_fn=dataset_split_fn,
    )


def build_fed_avg_process(model_fn: Callable, run: FedReconRun = WALKTHROUGH_RUN):
    """Plain federated averaging (``build_weighted_fed_avg``): every variable is global.

    ``model_fn`` returns a ``tff.learning.models.VariableModel`` (for instance from
    ``tff.learning.models.from_keras_model``); ``run.reconstruction_lr`` is unused.
    """
    import tensorflow_federated as tff

    start_runtime()
    sgd = tff.learning.optimizers.build_sgdm
    return tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=sgd(run.client_lr),
        server_optimizer_fn=sgd(run.server_lr),
    )


def round_metrics(metrics) -> dict[str, float]:
    """Loss and rating accuracy from the metrics of a training round, as plain floats."""
    train = metrics["client_work"]["train"]
    return {name: float(value) for name, value in train.items()}


def evaluate(evaluation_process, model_weights, client_datasets) -> dict[str, float]:
    """Evaluates ``model_weights`` on ``client_datasets``: loss and rating accuracy."""
    state = evaluation_process.initialize()
    state = evaluation_process.set_model_weights(state, model_weights)
    _, metrics = evaluation_process.next(state, client_datasets)
    current = metrics["client_work"]["eval"]["current_round_metrics"]
    return {name: float(value) for name, value in current.items()}


def train(
    training_process,
    clients,
    sampler,
    num_rounds: int,
    *,
    state=None,
    evaluate: Callable[[object], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "Training",
) -> tuple[object, pd.DataFrame]:
    """Runs ``num_rounds`` rounds, each on the clients ``sampler`` draws: the loop that
    notebook 03 writes out (sample, ``training_process.next``, keep
    ``metrics["client_work"]["train"]``), through :func:`rounds.run_rounds` for the
    progress bar and the optional evaluations.

    ``clients`` makes the datasets of a round from their ids: a ``clients.RatingClients``
    (its ``create_tf_datasets``) or any function ``ids -> list of datasets``. Works for
    any TFF learning process (FedRecon, FedAvg). Returns the final state and a table with
    one row of training metrics per round, numbered from 1. With ``evaluate(state)`` and
    ``eval_every``, validation metrics are added every ``eval_every`` rounds and after the
    last one (``val_<metric>`` columns).
    """
    create_datasets = getattr(clients, "create_tf_datasets", clients)
    current = {"state": training_process.initialize() if state is None else state}

    def next_round(client_ids):
        current["state"], metrics = training_process.next(
            current["state"], create_datasets(client_ids)
        )
        return round_metrics(metrics)

    history = rounds.run_rounds(
        next_round,
        sampler,
        num_rounds,
        evaluate=None if evaluate is None else lambda: evaluate(current["state"]),
        eval_every=eval_every,
        progress=progress,
        desc=desc,
    )
    return current["state"], history


# TFF's runtime: the worker process and the execution context


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


def start_runtime(*, max_concurrent_computation_calls: int = -1) -> Worker | None:
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

    The context goes on top of TFF's context stack; :func:`start_runtime`, which the training
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


def shutdown_runtime() -> None:
    """Stops every worker this package started. Safe to call more than once."""
    global _LOCAL
    for worker in _STARTED:
        worker.stop()
    _STARTED.clear()
    _LOCAL = None


atexit.register(shutdown_runtime)


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (used by tests on workers we started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
