"""How long notebook 08's panel takes to answer a change: one 100-round run, trained and scored.

    FEDRECON_DATA_DIR=/path/to/ml-1m python benchmarks/benchmark_live.py [--repeats 3]

The data and settings are the notebook's (``config.live()``, every MovieLens 1M user,
packed once by ``live.prepare``). In one process, this times ``live.train_once``:

- the first run (the simulator compiles its programs for the data's shapes);
- the same run again, and a run with a changed learning rate (shapes unchanged, so
  nothing is compiled): what the panel takes after a slider of that kind moves;
- a run with other latent factors (new shapes: compiled again);

and prints each against the goal of one second per 100-round run (``seconds / goal``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from tutorial_utils import config, data
from tutorial_utils.studies import live

GOAL_SECONDS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each warm case")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    settings = config.live()
    source = data.find_movielens()
    if source.kind != "movielens":
        raise SystemExit("benchmark_live.py needs the real MovieLens 1M: set FEDRECON_DATA_DIR.")
    ratings_df, movies_df = data.load_movielens(source)
    start = time.monotonic()
    live_data = live.prepare(ratings_df, len(movies_df), settings)
    print(f"prepare (once): {time.monotonic() - start:.2f} s")
    run = settings.run
    options = {"eval_every": settings.eval_every, "seed": settings.seed}

    def timed(label, chosen, repeats=1):
        seconds = []
        for _ in range(repeats):
            result = live.train_once(live_data, chosen, **options)
            seconds.append(result.seconds)
        best = min(seconds)
        print(
            f"{label:<38} {chosen.num_rounds} rounds of {chosen.clients_per_round}: "
            f"best {best:5.2f} s of {repeats}, {best / GOAL_SECONDS:4.1f}x the goal; "
            f"test RMSE {result.test['rmse']:.3f}"
        )

    timed("first run (compiles)", run)
    timed("same run again", run, args.repeats)
    timed("server lr 0.5 (no new shapes)", dataclasses.replace(run, server_lr=0.5), args.repeats)
    timed("latent factors 20 (new shapes)", dataclasses.replace(run, num_latent_factors=20))
    timed("latent factors 20, again", dataclasses.replace(run, num_latent_factors=20), args.repeats)


if __name__ == "__main__":
    main()
