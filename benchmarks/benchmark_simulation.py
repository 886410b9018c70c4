"""FedRecon rounds on MovieLens 1M: TensorFlow Federated against the vectorized simulator.

    FEDRECON_DATA_DIR=/path/to/ml-1m python benchmarks/benchmark_simulation.py [--skip-tff]

The data are found as everywhere in the tutorial (``data.find_movielens``:
``FEDRECON_DATA_DIR``, else the cache folder, else a download); the benchmark needs the
real MovieLens 1M, not the synthetic stand-in. In one process, this measures:

- rounds per second at 50 clients a round with the tutorial's settings (TFF's default
  split): TFF (after a warm-up round), the simulator one round a call (``run_round``, after
  warm-up rounds that compile) and many rounds a call (``many_rounds.run_rounds``);
- the paper's protocol (``config.PAPER_PROTOCOL``, the MovieLens baseline of the paper's
  code, google-research/federated ``reconstruction/``: 100 of the 4832 training users a
  round, 500 rounds, reconstruction up to 5 epochs capped at 50 steps, post-reconstruction 1
  epoch capped at 50 steps, split data), on clients prepared as that code prepares them
  (``tutorial_utils.simulation.paper_protocol``: a seeded shuffle of each user's ratings, the first
  300 kept, one fixed order), with ``many_rounds.run_rounds``: its wall time with
  compilation and again without, and the test score after it, computed as notebook 05
  computes it (``paper_protocol.test_scores``, the same seeds: the same run and numbers);
  TFF's time for it, estimated as the rounds times the median of ``--tff-rounds`` of its
  rounds (after a warm-up round), on the tutorial's clients (``users.clients``);
- where a round of the protocol spends its time (:func:`profile`);
- one round over every training user, with compilation and without;
- peak memory (maximum resident set size) of this process once the data are loaded, after
  the simulator's part and after TFF's, and of TFF's worker process. (TensorFlow has no
  memory statistics for the CPU device, so the process's are the measure.)

The machine may be shared, so most times without compilation are medians: of the timed TFF
rounds, and of ``REPEATS`` calls of each many-rounds measurement (the paper's protocol is
run ``REPEATS`` times more, from the same seed). The simulator's time one round a call is
the mean of ``--simulator-rounds`` calls, and the profile's times are means of its rounds.

Every round's batches are drawn as part of the round: ``create_tf_datasets`` for TFF,
the simulator's own batches otherwise. The results go to ``results/simulation_results.json``
and, from it, to the speed table of docs/speed.md (``tutorial_utils.simulation.speed_results``);
notebook 05 prints the same file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tutorial_utils import clients, config, data, plotting
from tutorial_utils.config import FedReconRun
from tutorial_utils.plumbing import environment, markdown, runtime
from tutorial_utils.simulation import (
    batches,
    many_rounds,
    program_inputs,
    round_math,
    simulator,
    speed_results,
)
from tutorial_utils.simulation import paper_protocol as protocols

TUTORIAL_CLIENTS_PER_ROUND = 50
PAPER = config.PAPER_PROTOCOL
REPEATS = 3  # timed calls of every simulator measurement; the median is reported


def peak_rss_mib() -> float:
    """This process's maximum resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peak_rss_mib(pid: int) -> float:
    """A running process's peak resident set size (``VmHWM``, Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"No VmHWM for process {pid}.")


def per_round_seconds(fedrecon, packed, sampler, rounds: int, warmup: int) -> float:
    """Mean time of ``rounds`` calls of ``run_round``, after ``warmup`` that compile."""
    for _ in range(warmup):
        fedrecon.run_round(packed, sampler.sample())
    start = time.perf_counter()
    for _ in range(rounds):
        fedrecon.run_round(packed, sampler.sample())
    return (time.perf_counter() - start) / rounds


def median_seconds(work, repeats: int = REPEATS) -> float:
    """The median wall time of ``repeats`` calls of ``work()``: on a machine that other
    jobs share, one slow call does not make the figure."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def many_rounds_seconds(fedrecon, packed, sampler, rounds: int) -> float:
    """Time a round of :func:`many_rounds.run_rounds` on ``rounds`` rounds (the median of
    :data:`REPEATS` calls), after the same rounds' clients once, which compiles the
    programs of their shapes."""
    client_ids = [sampler.sample() for _ in range(rounds)]
    many_rounds.run_rounds(fedrecon, packed, client_ids)
    return median_seconds(lambda: many_rounds.run_rounds(fedrecon, packed, client_ids)) / rounds


def profile(fedrecon, packed, sampler, rounds: int) -> dict:
    """Where a round's time goes (ms a round), one round a call and many rounds a call.

    One round a call, as ``run_round`` does it: the random draws (the shuffle keys, then
    the user embeddings), the batches and local item rows made from them
    (``PackedClients.training_inputs``), turning the arguments into tensors, and the
    compiled program (run to completion). The rounds are timed on a second pass over the
    same clients, when every shape is compiled; the first call of the first pass, less a
    round's program, is the compilation. Many rounds a call: the same ``rounds`` rounds'
    host work in one pass, their transfer, and one program (again after one call that
    compiles). Packing the clients (which numbers every client's local item rows once) is
    timed too.
    """
    run = fedrecon.run
    start = time.perf_counter()
    batches.PackedClients(packed.client_ids, *packed_arrays(packed))
    packing_seconds = time.perf_counter() - start
    client_ids = [sampler.sample() for _ in range(rounds)]
    clock = {}
    for timed in (False, True):  # the first pass compiles the rounds' shapes
        clock = {"host_draws_ms": 0.0, "host_inputs_ms": 0.0, "transfer_ms": 0.0}
        clock["program_ms"] = 0.0
        for round_num, round_ids in enumerate(client_ids):
            start = time.perf_counter()
            rows = packed.rows(round_ids)
            keys = packed.shuffle_keys(len(rows), run.train_split, fedrecon.rng)
            users = fedrecon.draw_users(len(rows))
            drawn = time.perf_counter()
            stacked = packed.training_inputs(
                [rows], [keys], run.train_split, run.batch_size, fedrecon.num_items
            )
            inputs = program_inputs.RoundInputs(*(array[0] for array in stacked))
            made = time.perf_counter()
            arguments = fedrecon.training_arguments(inputs, users)
            transferred = time.perf_counter()
            fedrecon._item_matrix, sums = round_math.compiled_training_round(*arguments)
            sums.numpy()
            done = time.perf_counter()
            if not timed and round_num == 0:
                first_call = done - transferred
            clock["host_draws_ms"] += drawn - start
            clock["host_inputs_ms"] += made - drawn
            clock["transfer_ms"] += transferred - made
            clock["program_ms"] += done - transferred
    result = {name: 1000 * value / rounds for name, value in clock.items()}
    result["compilation_seconds"] = first_call - result["program_ms"] / 1000
    result["packing_seconds"] = packing_seconds
    for _ in range(2):  # the first call compiles the program of the rounds' shape
        start = time.perf_counter()
        inputs, users = many_rounds.many_round_inputs(fedrecon, packed, client_ids)
        drawn = time.perf_counter()
        arguments = many_rounds.program_arguments(fedrecon, inputs, users, rounds)
        transferred = time.perf_counter()
        many_rounds.run_program(fedrecon, arguments)
        done = time.perf_counter()
    result["many_host_ms"] = 1000 * (drawn - start) / rounds
    result["many_transfer_ms"] = 1000 * (transferred - drawn) / rounds
    result["many_program_ms"] = 1000 * (done - transferred) / rounds
    return {"clients": len(client_ids[0]), "rounds": rounds, **result}


def packed_arrays(packed) -> tuple[list, list]:
    """Every client's ratings as ``PackedClients`` takes them: item ids and ratings."""
    return (
        [items[:count] for items, count in zip(packed.items, packed.counts)],
        [ratings[:count] for ratings, count in zip(packed.ratings, packed.counts)],
    )


def tff_seconds_per_round(rating_clients, sampler, num_items: int, run: FedReconRun, rounds: int):
    """The median time of ``rounds`` TFF rounds of ``run`` (its rates and training split)
    after one warm-up round."""
    from tutorial_utils import model, training

    process = training.build_training_process(
        model.reconstruction_model_fn(num_items, run.num_latent_factors),
        run,
        clients.tff_split_fn(run.train_split),
    )
    state = process.initialize()
    state, _ = process.next(state, rating_clients.create_tf_datasets(sampler.sample()))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        state, _ = process.next(state, rating_clients.create_tf_datasets(sampler.sample()))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def metrics_text(metrics: dict) -> str:
    rmse = f", RMSE {metrics['rmse']:.4f}" if "rmse" in metrics else ""
    return f"loss {metrics['loss']:.4f}{rmse}, accuracy {metrics['rating_accuracy']:.4f}"


def paper_protocol(paper, num_items, packed, train_ids, seed: int) -> tuple:
    """The paper's rounds with :func:`many_rounds.run_rounds` on ``packed`` (the paper's
    clients): the simulator and its wall time. The rounds' clients are drawn before the
    clock starts, by the sampler ``paper_protocol.train`` uses (the same seed, the same
    rounds)."""
    protocol = dataclasses.replace(PAPER, run=paper, seed=seed)
    fedrecon = protocols.new_simulator(protocol, num_items)
    sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=seed)
    client_ids = [sampler.sample() for _ in range(paper.num_rounds)]
    start = time.perf_counter()
    history = many_rounds.run_rounds(fedrecon, packed, client_ids)
    return fedrecon, history, time.perf_counter() - start


SCALING_CLIENTS = (50, 100, 200, 500, 1000, 2000, 4832)
SCALING_FACTORS = (10, 25, 50, 100, 200)


def rounds_per_second(run, num_items, packed, train_ids, seed: int) -> float:
    """Rounds per second of :func:`many_rounds.run_rounds` with ``run``, after as many
    rounds that compile (fewer rounds for larger ones: about 5000 clients in all)."""
    rounds = max(2, min(50, 5000 // run.clients_per_round))
    fedrecon = simulator.FedReconSimulator(run, num_items, seed=seed)
    sampler = clients.ClientSampler(train_ids, run.clients_per_round, seed=seed)
    return 1 / many_rounds_seconds(fedrecon, packed, sampler, rounds)


def scaling(paper, num_items, packed, train_ids, seed: int) -> dict:
    """Rounds per second of the paper's protocol against clients a round (at its latent
    factors) and against latent factors (at its clients a round)."""
    sizes = [c for c in SCALING_CLIENTS if c <= len(train_ids)]
    by_clients = [
        rounds_per_second(
            dataclasses.replace(paper, clients_per_round=c), num_items, packed, train_ids, seed
        )
        for c in tqdm(sizes, desc="Scaling: clients a round")
    ]
    by_factors = [
        rounds_per_second(
            dataclasses.replace(paper, num_latent_factors=k), num_items, packed, train_ids, seed
        )
        for k in tqdm(SCALING_FACTORS, desc="Scaling: latent factors")
    ]
    return {
        "clients": sizes,
        "clients_rounds_per_second": by_clients,
        "factors": list(SCALING_FACTORS),
        "factors_rounds_per_second": by_factors,
        "factors_clients": paper.clients_per_round,
        "clients_factors": paper.num_latent_factors,
    }


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
        "--simulator-rounds", type=int, default=200, help="timed simulator rounds at 50 clients"
    )
    parser.add_argument("--profile-rounds", type=int, default=50, help="rounds of the profile")
    parser.add_argument("--seed", type=int, default=0, help="seed of the timing runs")
    parser.add_argument(
        "--protocol-only",
        action="store_true",
        help="run the paper's protocol only (its times and test score, and TFF's estimate "
        "for it) and update that section of an existing results file",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=speed_results.RESULTS_FILE,
        help="the results file; writing the default one also rewrites docs/speed.md's table",
    )
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
    packed = batches.PackedClients.from_rating_clients(users.clients)
    train_ids, test_ids = users.train_ids, users.test_ids
    num_items = len(movies)
    load_seconds = time.perf_counter() - start
    loaded_rss = peak_rss_mib()
    print(
        f"{source.description}: {len(ratings)} ratings, {len(users.clients)} users "
        f"({len(train_ids)} train, {len(test_ids)} test), {num_items} movies; "
        f"loaded and packed in {load_seconds:.2f} s"
    )

    # The paper's protocol, on the paper's clients, with notebook 05's seed: once with
    # compilation, then again (same shapes) without.
    paper = dataclasses.replace(
        PAPER.run, num_rounds=args.rounds, clients_per_round=args.clients_per_round
    )
    paper_clients = protocols.paper_clients(ratings, PAPER.max_examples_per_user)
    paper_train, _, paper_test = protocols.split_users(paper_clients.client_ids, PAPER.seed)
    _, _, protocol_first = paper_protocol(paper, num_items, paper_clients, paper_train, PAPER.seed)
    protocol_times = []
    for _ in range(REPEATS):  # the same rounds, the same results
        fedrecon, history, seconds = paper_protocol(
            paper, num_items, paper_clients, paper_train, PAPER.seed
        )
        protocol_times.append(seconds)
    protocol = float(np.median(protocol_times))
    scores = protocols.test_scores(fedrecon, paper_clients, paper_test, PAPER.seed)
    protocol_results = {
        "rounds": paper.num_rounds,
        "clients": paper.clients_per_round,
        "seconds_with_compilation": protocol_first,
        "seconds_after_compilation": protocol,
        "per_round_seconds": protocol / paper.num_rounds,
        "test_clients": int(scores["users"].iloc[0]),
        "test_rmse": float(scores["rmse"].iloc[0]),
        "test_rating_accuracy": float(scores["rating_accuracy"].iloc[0]),
        "all_test_clients": int(scores["users"].iloc[1]),
        "all_test_rmse": float(scores["rmse"].iloc[1]),
        "all_test_rating_accuracy": float(scores["rating_accuracy"].iloc[1]),
    }
    print(f"\nSimulator, paper protocol: last round {metrics_text(history[-1])}")
    print(scores.round(4).to_string())
    protocol_results["tff_rounds_timed"] = args.tff_rounds
    if args.protocol_only:
        # TFF's estimate for the protocol is timed in this process too, so that the
        # protocol's speed-up compares two times of one run.
        results = json.loads(args.results.read_text())  # checked once updated
        protocol_results["tff_seconds_estimated"] = None
        if not args.skip_tff:
            sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=args.seed)
            protocol_results["tff_seconds_estimated"] = paper.num_rounds * tff_seconds_per_round(
                users.clients, sampler, num_items, paper, args.tff_rounds
            )
        results["paper_protocol"] = protocol_results
        results["run"]["protocol_date"] = time.strftime("%Y-%m-%d", time.gmtime())
        results["run"]["protocol_environment"] = environment.describe()
        write_results(speed_results.check(results, "the updated results"), args.results)
        return
    # The tutorial's round: 50 clients, TFF's default split.
    tutorial = config.WALKTHROUGH_RUN
    per_round = TUTORIAL_CLIENTS_PER_ROUND
    sampler = clients.ClientSampler(train_ids, per_round, seed=args.seed)
    fedrecon = simulator.FedReconSimulator(tutorial, num_items, seed=args.seed)
    sim_tutorial = per_round_seconds(fedrecon, packed, sampler, args.simulator_rounds, warmup=20)
    fedrecon = simulator.FedReconSimulator(tutorial, num_items, seed=args.seed)
    many_tutorial = many_rounds_seconds(fedrecon, packed, sampler, args.simulator_rounds)

    sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=args.seed + 1)
    where = profile(fedrecon.snapshot(), packed, sampler, args.profile_rounds)

    # One round over every training user (the first one includes compilation).
    every = fedrecon.snapshot()
    start = time.perf_counter()
    many_rounds.run_rounds(every, packed, [train_ids])
    all_users_first = time.perf_counter() - start
    all_users = median_seconds(lambda: many_rounds.run_rounds(every, packed, [train_ids]))
    simulator_rss = peak_rss_mib()
    grows = scaling(paper, num_items, packed, train_ids, args.seed)

    tff_tutorial = tff_protocol = tff_rss = worker_rss = None
    if not args.skip_tff:
        sampler = clients.ClientSampler(train_ids, per_round, seed=args.seed)
        tff_tutorial = tff_seconds_per_round(
            users.clients, sampler, num_items, tutorial, args.tff_rounds
        )
        sampler = clients.ClientSampler(train_ids, paper.clients_per_round, seed=args.seed)
        tff_protocol = paper.num_rounds * tff_seconds_per_round(
            users.clients, sampler, num_items, paper, args.tff_rounds
        )
        tff_rss = peak_rss_mib()
        worker_rss = max(worker_peak_rss_mib(w.pid) for w in runtime.running_workers())

    results = speed_results.check(
        {
            "run": {
                "command": "FEDRECON_DATA_DIR=/path/to/ml-1m .venv/bin/python "
                "benchmarks/benchmark_simulation.py",
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
                "protocol_date": time.strftime("%Y-%m-%d", time.gmtime()),
                "protocol_environment": environment.describe(),
                "environment": environment.describe(),
                "cpus": os.cpu_count(),
            },
            "tutorial": {
                "clients": per_round,
                "tff_seconds": tff_tutorial,
                "per_round_seconds": sim_tutorial,
                "many_rounds_seconds": many_tutorial,
            },
            "paper_protocol": {**protocol_results, "tff_seconds_estimated": tff_protocol},
            "all_users": {
                "clients": len(train_ids),
                "seconds": all_users,
                "seconds_with_compilation": all_users_first,
            },
            "profile": where,
            "scaling": grows,
            "memory_mib": {
                "data_loaded": loaded_rss,
                "simulator": simulator_rss,
                "tff_process": tff_rss,
                "tff_worker": worker_rss,
            },
        },
        "the benchmark's results",
    )
    write_results(results, args.results)


def write_results(results: dict, path: Path) -> None:
    """Prints the tables of ``results``, writes them to ``path`` and the scaling plot beside
    it, and, for the default file, the speed table of docs/speed.md."""
    print("\n" + markdown.markdown_table(speed_results.speed_table(results), align="lrrr"))
    print(
        "\n"
        + markdown.markdown_table(
            speed_results.profile_table(results), index=True, float_format="{:.2f}", align="lrr"
        )
    )
    print(
        "\n"
        + markdown.markdown_table(
            speed_results.scaling_table(results), float_format="{:.2f}", align="rrrr"
        )
    )
    print(f"compilation of a new shape: {results['profile']['compilation_seconds']:.2f} s")
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nWrote {path}")
    # The default file's plot goes where docs/speed.md names it, beside this script.
    if path == speed_results.RESULTS_FILE:
        figure = Path(__file__).with_name("simulation_scaling.png")
    else:
        figure = path.with_name(path.stem.replace("results", "scaling") + ".png")
    plotting.speed_scaling(results["scaling"]).savefig(figure, dpi=100, bbox_inches="tight")
    print(f"Wrote {figure}")
    if path == speed_results.RESULTS_FILE:
        speed_results.update_speed_page(results)
        print(f"Rewrote the speed table of {speed_results.SPEED_PAGE}")


if __name__ == "__main__":
    main()
