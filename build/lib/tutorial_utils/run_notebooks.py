"""Executes the tutorial's notebooks in order and keeps the results.

    python -m tutorial_utils.run_notebooks              # executed copies -> output/notebooks
    python -m tutorial_utils.run_notebooks --in-place   # refresh the committed outputs

Figures are saved as PNG by the notebooks themselves (see ``plotting``), into
``output/figures`` unless ``FEDRECON_OUTPUT_DIR`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nbclient.exceptions import CellExecutionError, CellTimeoutError

from tutorial_utils import settings


def notebook_paths(folder: Path) -> list[Path]:
    """The numbered notebooks of ``folder``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


# The longest cell, exercise 1's tuned run on the real data, takes over an hour on 2 cores.
DEFAULT_TIMEOUT = 4 * 3600


def execute(path: Path, destination: Path, *, timeout: int = DEFAULT_TIMEOUT) -> float:
    """Runs every cell of ``path`` in a fresh kernel and writes the result to ``destination``.

    The kernel runs in the notebook's folder, as Jupyter would. A cell may run for at most
    ``timeout`` seconds. Returns the seconds taken. Nothing is written when a cell fails
    or times out.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    start = time.monotonic()
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=False,  # progress widgets would add new ids on every run
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".ipynb.partial")
    nbformat.write(notebook, temporary)
    temporary.replace(destination)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--in-place", action="store_true", help="overwrite the notebooks with their outputs"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only notebooks whose name starts with these"
    )
    parser.add_argument(
        "--timeout", type=int, default=DEFAULT_TIMEOUT,
        help=f"seconds a cell may run (default: {DEFAULT_TIMEOUT})",
    )
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    # Keep TensorFlow's C++ start-up log (timestamps, CUDA probing) out of the stored outputs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    folder = settings.project_root() / "notebooks"
    output = settings.project_root() / "output" / "notebooks"
    paths = notebook_paths(folder)
    if args.only:
        paths = [p for p in paths if p.name.startswith(tuple(args.only))]
    print(f"Data setting: FEDRECON_DATASET={settings.dataset_choice()}, "
          f"FEDRECON_CONFIG={settings.run_config()}, figures -> {settings.output_dir()}")
    for number, path in enumerate(paths, start=1):
        destination = path if args.in_place else output / path.name
        print(f"[{number}/{len(paths)}] {path.name} ...", flush=True)
        try:
            seconds = execute(path, destination, timeout=args.timeout)
        except CellTimeoutError as error:
            print(f"[{number}/{len(paths)}] {path.name} TIMED OUT: a cell ran for more than "
                  f"{args.timeout} s (raise it with --timeout); nothing was written.\n{error}")
            return 1
        except CellExecutionError as error:
            print(f"[{number}/{len(paths)}] {path.name} FAILED; nothing was written.\n{error}")
            return 1
        print(f"[{number}/{len(paths)}] {path.name} done in {seconds:.0f} s -> {destination}",
              flush=True)
    print(f"Figures: {settings.output_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
