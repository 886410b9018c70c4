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
this process if it is killed (``tutorial_utils.runtime``). A worker that is missing, or
that dies during a round, raises :class:`runtime.WorkerUnavailableError` within a bounded
time instead of leaving TFF retrying forever.

The worker speaks insecure gRPC (no encryption, no authentication) and listens on every
network interface: anyone who can reach its port can run TensorFlow computations in it,
which can read and write its files. Keep workers on a private network.

Command line: ``python -m tutorial_utils.workers --workers 2`` (or ``--connect
host:port,host:port``) trains and evaluates FedRecon on them and prints the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections.abc import Sequence

from tutorial_utils import runtime
from tutorial_utils.runtime import WorkerUnavailableError

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


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _number(kind, minimum):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _number(int, 1)


def _addresses(text: str) -> list[str]:
    try:
        return parse_addresses(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser():
    from tutorial_utils import config

    defaults = config.current()
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils.workers",
        description="Train and evaluate FedRecon (matrix factorization on MovieLens 1M) "
        "with the clients of every round spread over several TFF workers.",
        epilog="The workers speak insecure gRPC on every interface: keep them on a "
        "private network.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--workers", type=_positive_int, metavar="N", help="start N local workers")
    where.add_argument(
        "--connect",
        type=_addresses,
        metavar="HOST:PORT,...",
        help="use workers already running (worker_binary --port=PORT)",
    )
    parser.add_argument("--rounds", type=_positive_int, default=defaults.num_rounds)
    parser.add_argument(
        "--clients-per-round", type=_positive_int, default=defaults.clients_per_round
    )
    parser.add_argument(
        "--max-clients",
        type=_number(int, 0),
        default=defaults.max_clients or 0,
        help="users loaded as clients, the first ones by id; 0 for all (default: %(default)s)",
    )
    parser.add_argument("--latent-factors", type=_positive_int, default=defaults.num_latent_factors)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--timeout",
        type=_number(float, 0.1),
        default=CONNECT_TIMEOUT_SECONDS,
        help="seconds to wait for each worker to answer (default: %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Trains for ``args.rounds`` rounds on the workers, then evaluates; prints as it goes."""
    import numpy as np
    import tensorflow as tf

    from tutorial_utils import config, data, datasets, model, training

    defaults = config.current()
    np.random.seed(args.seed)
    tf.keras.utils.set_random_seed(args.seed)
    if args.connect:
        pool = connect(args.connect, timeout=args.timeout)
    else:
        pool = start_local(args.workers, timeout=args.timeout)
    with pool:
        for connection in pool.connections:
            started = f" (pid {connection.worker.pid})" if connection.worker else ""
            print(f"Worker: {connection.address}{started}")
        ratings, movies = data.load_movielens(data.find_movielens())
        clients = datasets.RatingClients(
            ratings,
            batch_size=defaults.batch_size,
            max_examples_per_user=defaults.max_examples_per_user,
            max_clients=args.max_clients or None,
        )
        train_ids, val_ids, test_ids = datasets.split_clients(clients.client_ids, seed=args.seed)
        sampler = datasets.ClientSampler(train_ids, args.clients_per_round, seed=args.seed)
        print(f"Users: {len(train_ids)} train, {len(val_ids)} validation, {len(test_ids)} test")
        model_fn = model.reconstruction_model_fn(len(movies), args.latent_factors)
        training_process = training.build_training_process(model_fn)
        evaluation_process = training.build_evaluation_process(model_fn)
        start = time.perf_counter()
        state, history = training.train(
            training_process, clients, sampler, args.rounds, progress=False
        )
        seconds = time.perf_counter() - start
        print(history.to_string(float_format="{:.4f}".format))
        print(f"{args.rounds} rounds of {args.clients_per_round} clients in {seconds:.1f} s")
        weights = training_process.get_model_weights(state)
        for name, ids in (("Validation", val_ids), ("Test", test_ids)):
            datasets_of_users = clients.create_tf_datasets(ids)
            metrics = training.evaluate(evaluation_process, weights, datasets_of_users)
            print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (WorkerUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
