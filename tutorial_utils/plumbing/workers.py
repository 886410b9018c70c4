"""Several TFF worker services, and the execution context that spreads clients over them.

TFF's C++ ``worker_binary`` is also a gRPC service (``worker_binary --port=N``). TFF can
split the clients of a round over several such services: its mergeable execution context
compiles a computation into "everything up to the aggregation", "merge two partial
aggregates" and "everything after", runs the first part on each worker with a share of the
clients, merges the partial aggregates, and finishes. Nothing of the algorithm changes, so
the results are those of one worker up to the order of floating-point additions.

:func:`start_local` starts N workers on free ports of this machine; :func:`connect` uses
workers already running elsewhere, given as ``host:port``. Either returns a
:class:`WorkerPool` whose context is in use until it is closed (or its ``with`` block
ends)::

    with workers.start_local(2):
        process = training.build_training_process(model_fn)
        state, history = training.train(process, clients, sampler, num_rounds=5)

Every worker a pool started is stopped when the pool closes, at interpreter exit, and with
this process if it is killed (``tutorial_utils.plumbing.runtime``). A worker that is missing, or
that dies during a round, raises :class:`runtime.WorkerUnavailableError` within a bounded
time instead of leaving TFF retrying forever.

The worker speaks insecure gRPC (no encryption, no authentication) and listens on every
network interface: anyone who can reach its port can run TensorFlow computations in it,
which can read and write its files. Keep workers on a private network.

The command line ``python -m tutorial_utils.studies.train_on_workers --workers 2`` (or ``--connect
host:port,host:port``) trains and scores FedRecon on them and prints the metrics.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

from tutorial_utils.plumbing import runtime

CONNECT_TIMEOUT_SECONDS = 30.0

_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(?P<port>[0-9]+)$")


def parse_address(text: str) -> str:
    """Checks a worker address ``host:port`` (``[ipv6]:port`` too); returns it stripped."""
    address = text.strip()
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(
            f"Not a worker address: {text!r}. Expected host:port, for example "
            f"127.0.0.1:8000 or worker-1.internal:8000, with a port from 1 to 65535."
        )
    return address


def parse_addresses(text: str) -> list[str]:
    """Splits a comma-separated list of worker addresses and checks each one."""
    addresses = [parse_address(part) for part in text.split(",")]
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        raise ValueError(f"Worker addresses given more than once: {', '.join(duplicates)}.")
    return addresses


class WorkerPool:
    """Connections to TFF workers, and TFF's mergeable context over them, in use until closed.

    ``started`` lists the worker processes this pool started (none after :func:`connect`);
    :meth:`close` stops them. TFF keeps one context stack per thread: run computations
    on the pool from the thread that created it.
    """

    def __init__(
        self,
        connections: Sequence[runtime.Connection],
        *,
        reconnect_timeout: float = runtime.RECONNECT_TIMEOUT_SECONDS,
    ):
        import tensorflow_federated as tff
        from tensorflow_federated.python.core.backends.native import compiler
        from tensorflow_federated.python.core.environments.tensorflow_frontend import (
            tensorflow_computation,
        )

        self.connections = list(connections)
        self._exit_stack = contextlib.ExitStack()
        for connection in self.connections:
            if connection.worker is not None:
                self._exit_stack.callback(connection.worker.stop)
            self._exit_stack.callback(connection.close)
        async_contexts = [
            tff.framework.AsyncExecutionContext(
                executor_fn=connection.executor_factory(reconnect_timeout),
                compiler_fn=compiler.desugar_and_transform_to_native,
                transform_args=tensorflow_computation.transform_args,
                transform_result=tensorflow_computation.transform_result,
            )
            for connection in self.connections
        ]
        self.context = tff.backends.native.create_mergeable_comp_execution_context(async_contexts)
        self._exit_stack.enter_context(runtime.installed(self.context))

    @property
    def addresses(self) -> list[str]:
        return [connection.address for connection in self.connections]

    @property
    def started(self) -> list[runtime.Worker]:
        return [c.worker for c in self.connections if c.worker is not None]

    def close(self) -> None:
        """Stops using the workers: restores the previous context, stops started workers."""
        self._exit_stack.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorkerPool({', '.join(self.addresses)})"


def start_local(num_workers: int, *, timeout: float = runtime.READY_TIMEOUT_SECONDS) -> WorkerPool:
    """Starts ``num_workers`` worker services on free ports of 127.0.0.1 and uses them."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}.")
    started, connections = [], []
    try:
        for _ in range(num_workers):
            worker = runtime.start_worker()
            started.append(worker)
            connections.append(
                runtime.connect(f"127.0.0.1:{worker.port}", worker=worker, timeout=timeout)
            )
        return WorkerPool(connections)
    except BaseException:
        for connection in connections:
            connection.close()
        for worker in started:
            worker.stop()
        raise


def connect(
    addresses: str | Sequence[str],
    *,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
    reconnect_timeout: float = runtime.RECONNECT_TIMEOUT_SECONDS,
) -> WorkerPool:
    """Uses workers already running at ``addresses`` (``"h:p,h:p"`` or a list of ``h:p``).

    Waits up to ``timeout`` seconds for each to answer. During training, a worker that
    stops answering for ``reconnect_timeout`` seconds fails the computation.
    """
    if isinstance(addresses, str):
        addresses = parse_addresses(addresses)
    else:
        addresses = parse_addresses(",".join(addresses))
    connections = []
    try:
        for address in addresses:
            connections.append(runtime.connect(address, timeout=timeout))
        return WorkerPool(connections, reconnect_timeout=reconnect_timeout)
    except BaseException:
        for connection in connections:
            connection.close()
        raise
