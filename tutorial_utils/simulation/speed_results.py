"""The simulator's speed figures, from one file that ``benchmarks/benchmark_simulation.py`` writes.

Every speed figure of the project (the speed table of ``docs/speed.md``, notebook 05's
speed cells) comes from ``results/simulation_results.json``, the output of one benchmark
run (the package carries it, so notebook 05 shows it in Colab too):

- :func:`load` reads the file and checks it against :data:`SCHEMA` (a clear error names
  the file and the missing or mistyped field);
- :func:`speed_table` and :func:`profile_table` turn it into tables;
- :func:`update_speed_page` writes the speed table and the profile into
  :data:`SPEED_PAGE` between the markers :data:`BEGIN` and :data:`END` (the benchmark
  calls it; a test checks that the page matches the file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from tutorial_utils.plumbing import markdown, pins, settings

RESULTS_FILE = settings.results_dir() / "simulation_results.json"
SPEED_PAGE = settings.project_root() / "docs" / "speed.md"
BEGIN = "<!-- speed table: written by benchmarks/benchmark_simulation.py -->"
END = "<!-- end of speed table -->"

# Each section's fields and their types (a number may be missing: null, e.g. without TFF).
NUMBER = (int, float, type(None))
SCHEMA = {
    "run": {
        "command": str,
        "date": str,
        "protocol_date": str,
        "environment": str,
        "protocol_environment": str,
        "cpus": int,
    },
    "tutorial": {
        "clients": int,
        "tff_seconds": NUMBER,
        "per_round_seconds": NUMBER,
        "many_rounds_seconds": NUMBER,
    },
    "paper_protocol": {
        "rounds": int,
        "clients": int,
        "seconds_with_compilation": NUMBER,
        "seconds_after_compilation": NUMBER,
        "per_round_seconds": NUMBER,
        "tff_seconds_estimated": NUMBER,
        "tff_rounds_timed": int,
        "test_clients": int,
        "test_rmse": NUMBER,
        "test_rating_accuracy": NUMBER,
        "all_test_clients": int,
        "all_test_rmse": NUMBER,
        "all_test_rating_accuracy": NUMBER,
    },
    "all_users": {"clients": int, "seconds": NUMBER, "seconds_with_compilation": NUMBER},
    "profile": {
        "clients": int,
        "rounds": int,
        "packing_seconds": NUMBER,
        "host_draws_ms": NUMBER,
        "host_inputs_ms": NUMBER,
        "transfer_ms": NUMBER,
        "program_ms": NUMBER,
        "compilation_seconds": NUMBER,
        "many_host_ms": NUMBER,
        "many_transfer_ms": NUMBER,
        "many_program_ms": NUMBER,
    },
    "scaling": {
        "clients": list,
        "clients_rounds_per_second": list,
        "clients_factors": int,
        "factors": list,
        "factors_rounds_per_second": list,
        "factors_clients": int,
    },
    "memory_mib": {
        "data_loaded": NUMBER,
        "simulator": NUMBER,
        "tff_process": NUMBER,
        "tff_worker": NUMBER,
    },
}


def check(results: dict, source: str = "the results") -> dict:
    """``results`` if it has every field of :data:`SCHEMA` with its type, else ValueError."""
    for section, fields in SCHEMA.items():
        if not isinstance(results.get(section), dict):
            raise ValueError(f"{source}: section {section!r} is missing.")
        for field, kind in fields.items():
            if field not in results[section]:
                raise ValueError(f"{source}: field {section}.{field} is missing.")
            value = results[section][field]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{source}: {section}.{field} = {value!r} is not {kind}.")
    return results


def load(path: Path = RESULTS_FILE) -> dict:
    """The benchmark's results, checked against :data:`SCHEMA`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run benchmarks/benchmark_simulation.py to write it."
        )
    return check(json.loads(path.read_text()), str(path))


def _seconds(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _ratio(slow, fast) -> str:
    return "-" if slow is None or not fast else f"{slow / fast:.0f}x"


def speed_table(results: dict) -> pd.DataFrame:
    """TFF against the simulator, one row per measure, cells as text."""
    tutorial, paper = results["tutorial"], results["paper_protocol"]
    every, memory = results["all_users"], results["memory_mib"]
    one, best = tutorial["per_round_seconds"], tutorial["many_rounds_seconds"]
    tff = tutorial["tff_seconds"]

    def both(at_a_time, many) -> str:
        return f"{at_a_time} a round at a time, {many} many rounds a program"

    rows = [
        (
            f"one round, {tutorial['clients']} clients, the walkthrough's settings",
            _seconds(tff, 3),
            both(f"{1000 * one:.2f} ms", f"{1000 * best:.2f} ms"),
            "-" if tff is None else both(_ratio(tff, one), _ratio(tff, best)),
        ),
        (
            f"rounds per second, {tutorial['clients']} clients",
            "-" if tff is None else f"{1 / tff:.2f}",
            both(f"{1 / one:.0f}", f"{1 / best:.0f}"),
            "-" if tff is None else both(_ratio(tff, one), _ratio(tff, best)),
        ),
        (
            f"the paper's protocol: {paper['rounds']} rounds of {paper['clients']} clients, "
            "many rounds a program",
            _seconds(paper["tff_seconds_estimated"], 0)
            + f" (estimated: {paper['rounds']} x the median of {paper['tff_rounds_timed']} "
            "rounds)",
            f"{paper['seconds_after_compilation']:.2f} s "
            f"({paper['seconds_with_compilation']:.2f} s with compilation)",
            "-"
            if paper["tff_seconds_estimated"] is None
            else _ratio(paper["tff_seconds_estimated"], paper["seconds_with_compilation"])
            + " (simulator with compilation; TFF's estimate without)",
        ),
        (
            f"one round over all {every['clients']} training users, many rounds a program "
            "(a program of one round)",
            "-",
            f"{every['seconds']:.2f} s "
            f"({every['seconds_with_compilation']:.2f} s with compilation)",
            "",
        ),
        (
            "peak memory (RSS)",
            "-"
            if memory["tff_process"] is None
            else f"worker process {memory['tff_worker']:.0f} MiB, benchmark process "
            f"{memory['tff_process']:.0f} MiB after TFF",
            f"benchmark process {memory['simulator']:.0f} MiB "
            f"({memory['data_loaded']:.0f} MiB once the data are loaded)",
            "",
        ),
    ]
    return pd.DataFrame(rows, columns=["Measure", "TFF 0.87", "Simulator", "Speed-up"])


def profile_table(results: dict) -> pd.DataFrame:
    """Where a round's time goes, one round at a time and many rounds a program (ms)."""
    p = results["profile"]
    rows = [
        ("host: random draws (shuffle keys, user embeddings)", p["host_draws_ms"], None),
        ("host: batches and local item rows from the draws", p["host_inputs_ms"], None),
        ("host: both, several rounds a pass", None, p["many_host_ms"]),
        ("transfer: arguments to tensors", p["transfer_ms"], p["many_transfer_ms"]),
        ("compiled program (XLA)", p["program_ms"], p["many_program_ms"]),
    ]
    table = pd.DataFrame(rows, columns=["ms a round", "one round a call", "many rounds a call"])
    return table.set_index("ms a round")


def scaling_table(results: dict) -> pd.DataFrame:
    """Rounds per second against clients a round and against latent factors, with the
    time per client and round relative to the smallest size (1.00: it grows linearly)."""
    scale = results["scaling"]
    tables = []
    for size, speeds, other, other_name in (
        ("clients", scale["clients_rounds_per_second"], scale["clients_factors"], "factors"),
        ("factors", scale["factors_rounds_per_second"], scale["factors_clients"], "clients"),
    ):
        sizes = pd.Series(scale[size], dtype=float)
        per_unit = 1 / (pd.Series(speeds) * sizes)
        tables.append(
            pd.DataFrame(
                {
                    "grows": f"{size} ({other} {other_name})",
                    "size": scale[size],
                    "rounds per second": speeds,
                    "time per unit, relative": per_unit / per_unit.iloc[0],
                }
            )
        )
    return pd.concat(tables, ignore_index=True)


LINEAR_TOLERANCE = 0.25  # time per unit within 25% of constant counts as linear growth


def linear_from(sizes: list, relative: list, tolerance: float = LINEAR_TOLERANCE):
    """The smallest size from which the time per unit stays within ``tolerance`` of its
    value there up to the largest size (the time grows linearly from there on), or None
    if no two sizes do."""
    for start, base in enumerate(relative[:-1]):
        if all(abs(value / base - 1) <= tolerance for value in relative[start + 1 :]):
            return sizes[start]
    return None


def scaling_summary(results: dict) -> str:
    """Where the growth of the time a round is linear, in words, from
    :func:`scaling_table`: one sentence for clients, one for latent factors."""
    table = scaling_table(results)
    sentences = []
    for size, unit in (("clients", "client"), ("factors", "latent factor")):
        part = table[table["grows"].str.startswith(size)]
        sizes, relative = part["size"].tolist(), part["time per unit, relative"].tolist()
        start, last = linear_from(sizes, relative), relative[-1]
        if start == sizes[0]:
            growth = f"grows linearly from {sizes[0]} to {sizes[-1]} {size}"
        elif start is not None:
            below = "less" if relative[sizes.index(start)] < 1 else "more"
            growth = (
                f"grows {below} than linearly up to {start} {size}, then linearly up to {sizes[-1]}"
            )
        else:
            growth = (
                f"grows {'less' if last < 1 else 'more'} than linearly all the way to "
                f"{sizes[-1]} {size}"
            )
        sentences.append(
            f"With {size}, the time a round {growth} (time per {unit} at {sizes[-1]}: "
            f"{last:.2f} of its value at {sizes[0]}; linear means within "
            f"{LINEAR_TOLERANCE:.0%} of constant)."
        )
    return " ".join(sentences)


def protocol_score(results: dict) -> str:
    """When the protocol's row was measured, and the test score of the protocol run the
    benchmark timed."""
    paper, run = results["paper_protocol"], results["run"]
    if run["protocol_date"] == run["date"]:
        when = "in the same run as the other rows"
    else:
        when = f"on {run['protocol_date']}, in a later run than the other rows"
    if run["protocol_environment"] != run["environment"]:
        when += f" ({run['protocol_environment']})"
    return (
        f"The paper's protocol row was measured {when}: TFF's rounds (on the tutorial's "
        "clients, the first 300 ratings in file order) and the simulator's runs (on the "
        "paper's clients) in one process. "
        f"The protocol run timed here is "
        f"notebook 05's, from the same seeds: its test score is RMSE {paper['test_rmse']:.4f} "
        f"and rating accuracy {paper['test_rating_accuracy']:.4f} on "
        f"{paper['test_clients']} sampled test users, as the paper's code scores it "
        f"(RMSE {paper['all_test_rmse']:.4f} and rating accuracy "
        f"{paper['all_test_rating_accuracy']:.4f} on all {paper['all_test_clients']})."
    )


def repeat_spread(results: dict) -> str:
    """How far two timings of one setting in one run differ: the scalings time the
    protocol's setting (its clients a round and latent factors) once each, in words."""
    scale = results["scaling"]
    clients, factors = scale["factors_clients"], scale["clients_factors"]
    if clients not in scale["clients"] or factors not in scale["factors"]:
        return ""
    by_clients = scale["clients_rounds_per_second"][scale["clients"].index(clients)]
    by_factors = scale["factors_rounds_per_second"][scale["factors"].index(factors)]
    low, high = sorted((by_clients, by_factors))
    return (
        f"How noisy the times are: the setting of {clients} clients and {factors} factors is "
        f"timed in both scalings of one run, at {by_clients:.2f} and {by_factors:.2f} rounds "
        f"per second ({high / low - 1:.0%} apart)."
    )


def _outside_the_lock(environment: str) -> str:
    """A note when the run's NumPy is not the modern lock's (the run predates the lock)."""
    found = re.search(r"NumPy ([\w.]+)", environment)
    locked = pins.locked("modern").get("numpy")
    if found is None or found.group(1) == locked:
        return ""
    return f" (NumPy {found.group(1)}, not the modern lock's {locked})"


def speed_block(results: dict) -> str:
    """The speed page's block: the speed table, the protocol's test score, then the profile
    and the scaling."""
    run, p = results["run"], results["profile"]
    speed = markdown.markdown_table(speed_table(results), align="lrrr")
    profile = markdown.markdown_table(
        profile_table(results), index=True, float_format="{:.2f}", align="lrr"
    )
    return "\n".join(
        [
            BEGIN,
            f"Measured on {run['date']} ({run['environment']}, {run['cpus']} CPUs) by "
            f"`{run['command']}`{_outside_the_lock(run['environment'])}:",
            "",
            speed,
            "",
            protocol_score(results),
            "",
            f"Where a round of {p['clients']} clients (the paper's protocol) spends its time, "
            f"mean of {p['rounds']} rounds. Compiling a new shape takes "
            f"{p['compilation_seconds']:.2f} s once; numbering every client's local item rows "
            f"takes {p['packing_seconds']:.2f} s once, when the clients are packed. With many "
            "rounds a call the host works on the next rounds while the program runs:",
            "",
            profile,
            "",
            "How the speed scales (the last column is the time a round per client, or per "
            "latent factor, relative to the first row: 1.00 is linear growth, below 1 the "
            "fixed costs of a round are shared by more work):",
            "",
            markdown.markdown_table(scaling_table(results), float_format="{:.2f}", align="lrrr"),
            "",
            scaling_summary(results),
            repeat_spread(results),
            END,
        ]
    )


def update_speed_page(results: dict, page: Path = SPEED_PAGE) -> None:
    """Replaces the block of ``page`` between :data:`BEGIN` and :data:`END` by
    :func:`speed_block`."""
    text = page.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{page} must hold the markers {BEGIN!r} and {END!r} once each.")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    page.write_text(head + speed_block(results) + tail)
