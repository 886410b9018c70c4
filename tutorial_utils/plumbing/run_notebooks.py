"""Executes the tutorial's notebooks in order and keeps the results.

    python -m tutorial_utils.plumbing.run_notebooks              # executed copies in output/
    python -m tutorial_utils.plumbing.run_notebooks --jobs 2     # two notebooks at a time
    python -m tutorial_utils.plumbing.run_notebooks --in-place   # refresh the committed outputs

Every notebook runs in a fresh kernel; a line per notebook says whether it passed and how
long it took, and a table at the end sums them up. With ``--jobs N``, N notebooks run at
once, each in a process of its own (``make tutorial`` runs three): the run ends sooner, and
each notebook's time is then measured while others share the cores, so the committed
times come from a run of one at a time. Each notebook's time, with the machine,
data and configuration it was measured with, is recorded in ``run_times.json`` beside
the executed notebooks (``output/notebooks``, or ``notebooks/`` with ``--in-place``: the
run-time columns of the README and of ``docs/notebooks.md`` are checked against that one).
:func:`reading_table` gives each notebook's size and a learner's time, the table of
``docs/notebooks.md``. Figures are saved as PNG by the notebooks
themselves (see ``plotting``), into ``output/figures`` unless ``FEDRECON_OUTPUT_DIR`` says
otherwise. What the kernels themselves print outside any cell (Jupyter's and TensorFlow's
C++ logs, TFF's worker) goes to ``output/logs/<notebook>.log``, not to the terminal: a
failure names that file.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import re
import sys
import time
from pathlib import Path

from nbclient.exceptions import CellExecutionError, CellTimeoutError

from tutorial_utils.plumbing import environment, markdown, settings

TIMES_FILE = "run_times.json"
# The longest cell takes a few minutes on 2 cores; an hour means something is stuck.
DEFAULT_TIMEOUT = 3600
# A learner's time with a notebook (docs/notebooks.md states the rule): prose read at this
# many words a minute, this many minutes a code cell, plus the run time, rounded to 5 minutes.
WORDS_PER_MINUTE = 200
MINUTES_PER_CODE_CELL = 1
ROUND_TO_MINUTES = 5


def notebook_paths(folder: Path) -> list[Path]:
    """The numbered notebooks of ``folder``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def execute(
    path: Path, destination: Path, *, timeout: int = DEFAULT_TIMEOUT, log: Path | None = None
) -> float:
    """Runs every cell of ``path`` in a fresh kernel and writes the result to ``destination``.

    The kernel runs in the notebook's folder, as Jupyter would. A cell may run for at most
    ``timeout`` seconds. Returns the seconds taken. Nothing is written when a cell fails
    or times out. With ``log``, what the kernel process prints outside its cells goes to
    that file instead of this process's terminal.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    start = time.monotonic()
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,  # progress widgets would add new ids on every run
        resources={"metadata": {"path": str(path.parent)}},
    )
    if log is None:
        client.execute()
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as stream:  # the kernel process's own stdout and stderr
            client.execute(stdout=stream, stderr=stream)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".ipynb.partial")
    nbformat.write(notebook, temporary)
    temporary.replace(destination)
    return time.monotonic() - start


def run_one(path: Path, destination: Path, timeout: int, log: Path) -> tuple[str, str]:
    """:func:`execute`, with its failure told in words: ``(result, message)``, where the
    result is ``passed``, ``timed out`` or ``FAILED`` (a process of its own can run it)."""
    try:
        execute(path, destination, timeout=timeout, log=log)
    except CellTimeoutError as error:
        return "timed out", (
            f"TIMED OUT: a cell ran for more than {timeout} s (raise it with --timeout); "
            f"nothing was written. Kernel log: {log}\n{error}"
        )
    except CellExecutionError as error:
        return "FAILED", f"FAILED; nothing was written. Kernel log: {log}\n{error}"
    return "passed", ""


def run_all(
    paths: list[Path],
    output: Path,
    logs: Path,
    args: argparse.Namespace,
    expected: dict[str, float] | None = None,
):
    """Runs the notebooks, ``args.jobs`` at a time, and yields ``((number, path), (result,
    message), seconds)`` for each as it ends; says ``[number/total] name ...`` as it starts.
    One job runs in this process, in order; more run in processes of their own, started
    afresh (no TensorFlow state forked into a child), the longest first by ``expected``
    seconds (the recorded times), so that a long notebook does not start last."""
    queue = list(enumerate(paths, start=1))
    if args.jobs > 1 and expected:
        queue.sort(key=lambda item: -expected.get(item[1].name, 0.0))

    def started(number, path):
        print(f"[{number}/{len(paths)}] {path.name} ...", flush=True)
        return (path, output / path.name, args.timeout, logs / f"{path.stem}.log")

    if args.jobs == 1:
        for number, path in queue:
            start = time.monotonic()
            outcome = run_one(*started(number, path))
            yield (number, path), outcome, time.monotonic() - start
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        running = {}
        while queue or running:
            while queue and len(running) < args.jobs:
                number, path = queue.pop(0)
                future = pool.submit(run_one, *started(number, path))
                running[future] = (number, path, time.monotonic())
            done, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                number, path, start = running.pop(future)
                yield (number, path), future.result(), time.monotonic() - start


def machine() -> dict[str, object]:
    """What the times were measured on."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "stack": environment.stack(),
    }


def data_in_use() -> str:
    """Which data the notebooks will find, in words; prints it, with a banner when the
    real data cannot be had. A download, if one is needed, happens here, once."""
    from tutorial_utils.plumbing import movielens_source

    return movielens_source.find_movielens().description


def readable_seconds(seconds: float) -> str:
    """A duration as the README's run-time column writes it: ``42 s`` or ``2.5 min``."""
    return f"{seconds:.0f} s" if seconds < 99.5 else f"{seconds / 60:.1f} min"


def prose_words(markdown: str) -> int:
    """The words a learner reads in a Markdown text: whitespace-separated pieces holding a
    letter or a digit, once HTML tags and the addresses of links are taken out."""
    text = re.sub(r"<[^>]*>", " ", markdown)
    text = re.sub(r"\]\([^)]*\)", "] ", text)  # [text](address): the text is read
    text = re.sub(r"https?://\S+", " ", text)
    return sum(1 for piece in text.split() if re.search(r"[^\W_]", piece))


def notebook_size(path: Path) -> tuple[int, int]:
    """A notebook's code cells, and the words of its prose (its Markdown cells), as stored."""
    cells = json.loads(path.read_text())["cells"]
    code_cells = sum(1 for cell in cells if cell["cell_type"] == "code")
    words = sum(
        prose_words("".join(cell["source"])) for cell in cells if cell["cell_type"] == "markdown"
    )
    return code_cells, words


def learner_minutes(code_cells: int, words: int, seconds: float) -> int:
    """A learner's minutes with a notebook: its prose at :data:`WORDS_PER_MINUTE`, plus
    :data:`MINUTES_PER_CODE_CELL` a code cell, plus its run time, rounded to the nearest
    multiple of :data:`ROUND_TO_MINUTES` (at least that)."""
    minutes = words / WORDS_PER_MINUTE + code_cells * MINUTES_PER_CODE_CELL + seconds / 60
    return max(1, int(minutes / ROUND_TO_MINUTES + 0.5)) * ROUND_TO_MINUTES


def reading_table(folder: Path) -> str:
    """The Markdown table of ``docs/notebooks.md``: every notebook of ``folder`` with its code
    cells, words of prose, recorded run time (``run_times.json``) and a learner's minutes,
    then a row of their sums."""
    import pandas as pd

    times = read_times(folder / TIMES_FILE)
    rows = []
    for path in notebook_paths(folder):
        if path.name not in times:
            raise ValueError(f"{folder / TIMES_FILE} has no run time for {path.name}")
        code_cells, words = notebook_size(path)
        seconds = times[path.name]["seconds"]
        minutes = learner_minutes(code_cells, words, seconds)
        rows.append((path.stem, code_cells, words, seconds, minutes))
    rows.append(("in all", *(sum(row[i] for row in rows) for i in (1, 2, 3, 4))))
    table = pd.DataFrame(
        [(*row[:3], readable_seconds(row[3]), row[4]) for row in rows],
        columns=["Notebook", "Code cells", "Words of prose", "Run time", "Minutes"],
    )
    return markdown.markdown_table(table, align="lrrrr")


def summary_table(results: list[dict], wall_seconds: float | None = None) -> str:
    """The per-notebook results as an aligned text table, with the total and, when the
    notebooks ran side by side, the time the whole run took."""
    width = max(len(r["notebook"]) for r in results)
    lines = [f"{'notebook':<{width}}  {'result':<9}  {'seconds':>7}"]
    lines += [f"{r['notebook']:<{width}}  {r['result']:<9}  {r['seconds']:>7.0f}" for r in results]
    lines.append(f"{'total':<{width}}  {'':<9}  {sum(r['seconds'] for r in results):>7.0f}")
    if wall_seconds is not None:
        lines.append(f"{'whole run':<{width}}  {'':<9}  {wall_seconds:>7.0f}")
    return "\n".join(lines)


def read_times(path: Path) -> dict[str, dict]:
    """The entries of a run-times file by notebook name; empty when there is none."""
    if not path.is_file():
        return {}
    try:
        return {entry["notebook"]: entry for entry in json.loads(path.read_text())["notebooks"]}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path}: not a run-times file of this package ({error}); delete it to start a new one"
        ) from error


def write_times(path: Path, entries: dict[str, dict]) -> None:
    """Writes the entries, in notebook order, and their total to ``path`` (JSON)."""
    ordered = [entries[name] for name in sorted(entries)]
    record = {"notebooks": ordered, "total_seconds": round(sum(e["seconds"] for e in ordered), 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.partial")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--in-place", action="store_true", help="overwrite the notebooks with their outputs"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only notebooks whose name starts with these"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds a cell may run (default: {DEFAULT_TIMEOUT})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks run at once, each in a process of its own (default: 1)",
    )
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    # Keep TensorFlow's C++ start-up log (timestamps, CUDA probing) out of the stored outputs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    folder = settings.project_root() / "notebooks"
    output = folder if args.in_place else settings.project_root() / "output" / "notebooks"
    logs = settings.project_root() / "output" / "logs"
    paths = notebook_paths(folder)
    if args.only:
        paths = [p for p in paths if p.name.startswith(tuple(args.only))]
    times = output / TIMES_FILE
    entries = read_times(times)  # a run of some notebooks updates only their entries
    description = data_in_use()
    measured_on = machine()
    print(f"Configuration: {settings.run_config()}; figures -> {settings.output_dir()}", flush=True)
    results = {}
    started = time.monotonic()
    recorded = read_times(folder / TIMES_FILE)  # the committed times: which notebooks are long
    expected = {name: entry["seconds"] for name, entry in recorded.items()}
    for (number, path), (result, message), seconds in run_all(paths, output, logs, args, expected):
        tag = f"[{number}/{len(paths)}] {path.name}"
        if message:
            print(f"{tag} {message}")
        results[number] = {
            "notebook": path.name,
            "result": result,
            "seconds": round(seconds, 1),
            "data": description,
            "config": settings.run_config(),
            "machine": measured_on,
        }
        print(f"{tag} {result} in {seconds:.0f} s", flush=True)
    wall = time.monotonic() - started
    results = [results[number] for number in sorted(results)]
    if not results:
        print("No notebook matched.")
        return 1
    write_times(times, {**entries, **{r["notebook"]: r for r in results}})
    print("\n" + summary_table(results, wall if args.jobs > 1 else None))
    print(f"\nData: {description}\nTimes: {times}\nFigures: {settings.output_dir()}")
    print(f"Kernel logs: {logs}")
    return 0 if all(r["result"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
