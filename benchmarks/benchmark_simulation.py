"""FedRecon rounds on MovieLens 1M: TensorFlow Federated against the vectorized simulator.

    FEDRECON_DATA_DIR=/path/to/ml-1m python benchmarks/benchmark_simulation.py [--skip-tff]

The data are found as everywhere in the tutorial (``data.find_movielens``:
``FEDRECON_DATA_DIR``, else the cache folder, else a download); the benchmark needs the
real MovieLens 1M, not the synthetic stand-in. In one process, this measures:

- rounds per second at 50 clients a round with the tutorial's settings (TFF's default
  split), for TFF (after a warm-up round) and for the simulator (after warm-up rounds
  that compile its programs), and the ratio;
- the paper's protocol with the simulator: 80% of the users (4832) for training, 100
  clients a round, 500 rounds, reconstruction for up to 5 epochs capped at 50 steps,
  post-reconstruction 1 epoch capped at 50 steps, split data (``config.PAPER_PROTOCOL``);
  its wall time (compilation included), and the metrics on the 604 test users before and
  after training, with ``build_fed_recon_eval``'s default split and with the run's
  evaluation split (``run.eval_split``), both with disjoint reconstruction and evaluation
  halves. TFF's time for the same protocol is estimated from a few of its rounds;
- one round over every training user;
- peak memory (maximum resident set size) of this process once the data are loaded,
  after the simulator's part and after TFF's, and of TFF's worker process. (TensorFlow
  has no memory statistics for the CPU device, so the process's are the measure.)

Every round's batches are drawn as part of the round: ``create_tf_datasets`` for TFF,
:meth:`batches.PackedClients.round_batches` for the simulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from pathlib import Path

import pandas as pd

from tutorial_utils import clients, config, data, reporting, simulator, splits
from tutorial_utils.config import FedReconRun

TUTORIAL_CLIENTS_PER_ROUND = 50
PAPER = config.PAPER_PROTOCOL


def peak_rss_mib() -> float:
    """This process's maximum resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peak_rss_mib(pid: int) -> float:
    """A running process's peak resident set size (``VmHWM``, Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"No VmHWM for process {pid}.")


def simulator_seconds_per_round(fedrecon, packed, sampler, rounds: int, warmup: int) -> float:
    for _ in range(warmup):
        fedrecon.run_round(packed, sampler.sample())
    start = time.perf_counter()
    for _ in range(rounds):
        fedrecon.run_round(packed, sampler.sample())
    return (time.perf_counter() - start) / rounds


def tff_seconds_per_round(rating_clients, sampler, num_items: int, run: FedReconRun, rounds: int):
    """Mean time of ``rounds`` TFF rounds of ``run`` (its rates and training split) after
    one warm-up round."""
    from tutorial_utils import model, training

    process = training.build_training_process(
        model.reconstruction_model_fn(num_items, run.num_latent_factors),
        run,
        splits.tff_split_fn(run.train_split),
    )
    state = process.initialize()
    state, _ = process.next(state, rating_clients.create_tf_datasets(sampler.sample()))
    start = time.perf_counter()
    for _ in range(rounds):
        state, _ = process.next(state, rating_clients.create_tf_datasets(sampler.sample()))
    return (time.perf_counter() - start) / rounds


def metrics_text(metrics: dict) -> str:
    rmse = f", RMSE {metrics['rmse']:.4f}" if "rmse" in metrics else ""
    return f"loss {metrics['loss']:.4f}{rmse}, accuracy {metrics['rating_accuracy']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tff", action="store_true", help="time the simulator only")
    parser.add_argument(
        "--rounds", type=int, default=PAPER.run.num_rounds, help="rounds of the paper's protocol"
    )
    parser.add_argument(
        "--clients-per-round",
        type=int,
        default=PAPER.run.clients_per_round,
        help="clients a round in the paper's protocol",
    )
    parser.add_argument("--tff-rounds", type=int, default=5, help="timed TFF rounds")
    parser.add_argument(
        "--simulator-rounds", type=int, default=100, help="timed simulator rounds at 50 clients"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    source = data.find_movielens(choice="movielens")
    start = time.perf_counter()
    ratings, movies = data.load_movielens(source)
    users = clients.user_split(
        ratings,
        batch_size=PAPER.run.batch_size,
        max_examples_per_user=PAPER.max_examples_per_user,
        seed=PAPER.seed,
    )
    packed = users.packed()
    train_ids, test_ids = users.train_ids, users.test_ids
    num_items = len(movies)
    load_seconds = time.perf_counter() - start
    loaded_rss = peak_rss_mib()
    print(
        f"{source.description}: {len(ratings)} ratings, {len(users.clients)} users "
        f"({len(train_ids)} train, {len(test_ids)} test), {num_items} movies; "
        f"loaded and packed in {load_seconds:.2f} s"
    )

    # The tutorial's round: 50 clients, TFF's default split.
    tutorial = config.WALKTHROUGH_RUN
    fedrecon = simulator.FedReconSimulator(tutorial, num_items, seed=args.seed)
    sampler = clients.ClientSampler(train_ids, TUTORIAL_CLIENTS_PER_ROUND, seed=args.seed)
    sim_tutorial = simulator_seconds_per_round(
        fedrecon, packed, sampler, args.simulator_rounds, warmup=20
    )

    # The paper's protocol. Evaluation keeps reconstruction and evaluation data disjoint.
    paper = dataclasses.replace(
        PAPER.run, num_rounds=args.rounds, clients_per_round=args.clients_per_round
    )
    fedrecon = simulator.FedReconSimulator(paper, num_items, seed=args.seed)
    disjoint = {"reshuffle_each_pass": False, "seed": args.seed}
    before = fedrecon.evaluate(packed, test_ids, splits.DatasetSplit(), **disjoint)
    sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=args.seed)
    start = time.perf_counter()
    for _ in range(paper.num_rounds):
        last_round = fedrecon.run_round(packed, sampler.sample())
    sim_protocol = time.perf_counter() - start
    after = fedrecon.evaluate(packed, test_ids, splits.DatasetSplit(), **disjoint)
    after_paper_split = fedrecon.evaluate(packed, test_ids, **disjoint)

    # One round over every training user (the first one includes compilation).
    start = time.perf_counter()
    fedrecon.run_round(packed, train_ids)
    all_users_first = time.perf_counter() - start
    start = time.perf_counter()
    fedrecon.run_round(packed, train_ids)
    all_users = time.perf_counter() - start
    simulator_rss = peak_rss_mib()

    tff_tutorial = tff_protocol = None
    if not args.skip_tff:
        from tutorial_utils import runtime

        sampler = clients.ClientSampler(train_ids, TUTORIAL_CLIENTS_PER_ROUND, seed=args.seed)
        tff_tutorial = tff_seconds_per_round(
            users.clients, sampler, num_items, tutorial, args.tff_rounds
        )
        sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=args.seed)
        tff_protocol = paper.num_rounds * tff_seconds_per_round(
            users.clients, sampler, num_items, paper, args.tff_rounds
        )
        tff_rss = peak_rss_mib()
        worker_rss = max(worker_peak_rss_mib(w.pid) for w in runtime.running_workers())

    def cell(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    def speedup(tff_value, simulator_value):
        return "-" if tff_value is None else f"{tff_value / simulator_value:.0f}x"

    per_round = TUTORIAL_CLIENTS_PER_ROUND
    rows = [
        (
            f"one round, {per_round} clients, default split (s)",
            cell(tff_tutorial, 3),
            cell(sim_tutorial, 4),
            speedup(tff_tutorial, sim_tutorial),
        ),
        (
            f"rounds per second, {per_round} clients",
            cell(tff_tutorial and 1 / tff_tutorial, 2),
            cell(1 / sim_tutorial, 0),
            "",
        ),
        (
            f"paper protocol: {paper.num_rounds} rounds x {paper.clients_per_round} clients (s)",
            cell(tff_protocol, 0) + (" (estimated)" if tff_protocol else ""),
            cell(sim_protocol, 1),
            speedup(tff_protocol, sim_protocol),
        ),
        (
            f"one round over all {len(train_ids)} training users (s)",
            "-",
            f"{all_users:.2f} ({all_users_first:.2f} with compilation)",
            "",
        ),
        (
            "peak RSS of this process (MiB)",
            "-" if tff_tutorial is None else f"{tff_rss:.0f} (after TFF)",
            f"{simulator_rss:.0f} (before TFF; {loaded_rss:.0f} with the data loaded)",
            "",
        ),
    ]
    if tff_tutorial is not None:
        rows.append(("peak RSS of TFF's worker process (MiB)", f"{worker_rss:.0f}", "-", ""))

    print(f"\nSimulator, paper protocol: last round {metrics_text(last_round)}")
    print(f"Test users ({len(test_ids)}) before training: {metrics_text(before)}")
    print(
        f"Test users ({len(test_ids)}) after {paper.num_rounds} rounds: {metrics_text(after)}; "
        f"with the run's evaluation split: {metrics_text(after_paper_split)}"
    )
    table = pd.DataFrame(rows, columns=["measure", "TFF 0.87", "simulator", "speed-up"])
    print("\n" + reporting.markdown_table(table, align="lrrr"))


if __name__ == "__main__":
    main()
