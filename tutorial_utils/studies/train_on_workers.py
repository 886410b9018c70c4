"""Command line: train and score FedRecon with every round's clients spread over TFF workers.

    python -m tutorial_utils.studies.train_on_workers --workers 2 [--rounds 20 \
        --clients-per-round 50]
    python -m tutorial_utils.studies.train_on_workers --connect 10.0.0.5:8000,10.0.0.6:8000

The run is the walkthrough's (``config.current()``), scored as every run of the tutorial is
(``runs.train_and_score``: validation and test users on disjoint halves). The workers are
``tutorial_utils.plumbing.workers``' pools: insecure gRPC, to be kept on a private network.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from tutorial_utils.plumbing import workers
from tutorial_utils.plumbing.runtime import WorkerUnavailableError


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
        return workers.parse_addresses(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser():
    from tutorial_utils import config

    defaults = config.current()
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils.studies.train_on_workers",
        description="Train and score FedRecon (matrix factorization on MovieLens 1M) "
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
    parser.add_argument("--rounds", type=_positive_int, default=defaults.run.num_rounds)
    parser.add_argument(
        "--clients-per-round", type=_positive_int, default=defaults.run.clients_per_round
    )
    parser.add_argument(
        "--max-clients",
        type=_number(int, 0),
        default=defaults.max_clients or 0,
        help="users loaded as clients, the first ones by id; 0 for all (default: %(default)s)",
    )
    parser.add_argument(
        "--latent-factors", type=_positive_int, default=defaults.run.num_latent_factors
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--timeout",
        type=_number(float, 0.1),
        default=workers.CONNECT_TIMEOUT_SECONDS,
        help="seconds to wait for each worker to answer (default: %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Trains for ``args.rounds`` rounds on the workers, then scores; prints as it goes."""
    from tutorial_utils import config, data
    from tutorial_utils.simulation import runs

    base = dataclasses.replace(config.current(), max_clients=args.max_clients or None)
    run_ = dataclasses.replace(
        base.run,
        num_rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        num_latent_factors=args.latent_factors,
    )
    if args.connect:
        pool = workers.connect(args.connect, timeout=args.timeout)
    else:
        pool = workers.start_local(args.workers, timeout=args.timeout)
    with pool:
        for connection in pool.connections:
            started = f" (pid {connection.worker.pid})" if connection.worker else ""
            print(f"Worker: {connection.address}{started}")
        source = data.find_movielens()
        ratings, movies = data.load_movielens(source)
        result = runs.train_and_score(
            run_,
            runs.MovieLensData(source, ratings, movies),
            base=base,
            seed=args.seed,
            progress=False,
        )
    print(result.history.to_string(float_format="{:.4f}".format))
    print(f"{args.rounds} rounds of {args.clients_per_round} clients in {result.seconds:.1f} s")
    for name, metrics in (("Validation", result.validation), ("Test", result.test)):
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
