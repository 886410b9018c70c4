"""The training loop every engine shares: rounds numbered from 1, one progress bar, one table.

:func:`run_rounds` calls ``next_round(client_ids)`` once a round on the clients a sampler
draws, and ``evaluate()`` every ``eval_every`` rounds and after the last one. TFF's
processes (``training.train``) and the simulators (``simulator.train``) both run through it,
so their histories have the same shape: one row per round, indexed ``1 .. num_rounds``,
with the round's training metrics and, where measured, ``val_<metric>`` columns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pandas as pd
from tqdm import tqdm

# The most rounds that ``run_rounds`` gives ``next_rounds`` at once (so the bar moves).
MAX_BLOCK = 500

# The columns an evaluation adds to the history, where it reports them.
VALIDATION_METRICS = ("loss", "rmse", "rating_accuracy")


class Replay:
    """A sampler that gives back lists of clients drawn before, in order."""

    def __init__(self, client_id_lists):
        self._lists = iter(client_id_lists)

    def sample(self) -> list:
        return next(self._lists)


def run_rounds(
    next_round: Callable[[list], dict],
    sampler,
    num_rounds: int,
    *,
    evaluate: Callable[[], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "Training",
    next_rounds: Callable[[list[list]], list[dict]] | None = None,
) -> pd.DataFrame:
    """Runs ``num_rounds`` rounds, each ``next_round(sampler.sample())``.

    ``next_round`` returns the round's training metrics (``loss`` and ``rating_accuracy``,
    or ``accuracy`` for other models). With ``evaluate`` and ``eval_every``, the validation
    metrics ``evaluate()`` returns are added after every ``eval_every``-th round and after
    the last one (NaN in the other rows). A progress bar (unless ``progress`` is False)
    shows the latest loss and accuracy, and the latest validation accuracy.

    ``next_rounds``, if given, replaces ``next_round``: given the lists of clients of the
    rounds up to the next evaluation (at most ``MAX_BLOCK``), it runs them at once and
    returns each round's metrics; the progress bar then moves a block at a time.
    """
    evaluating = evaluate is not None and eval_every > 0
    if next_rounds is None:
        block = 1

        def next_rounds(client_id_lists):
            return [next_round(client_ids) for client_ids in client_id_lists]

    else:
        block = min(eval_every if evaluating else num_rounds, MAX_BLOCK)
    rows, postfix = [], {}
    bar = tqdm(
        total=num_rounds,
        desc=desc,
        unit="round",
        file=sys.stdout,
        mininterval=1.0,
        disable=not progress,
    )
    try:
        first = 1
        while first <= num_rounds:
            last = min(first + block - 1, num_rounds)
            if evaluating:  # a block ends at the next evaluation
                last = min(last, -(-first // eval_every) * eval_every)
            metrics = next_rounds([sampler.sample() for _ in range(first, last + 1)])
            block_rows = [{"round": n, **m} for n, m in zip(range(first, last + 1), metrics)]
            if evaluating and (last % eval_every == 0 or last == num_rounds):
                scores = evaluate()
                block_rows[-1].update(
                    {f"val_{name}": scores[name] for name in VALIDATION_METRICS if name in scores}
                )
                postfix["val_accuracy"] = f"{_accuracy(scores):.3f}"
            rows += block_rows
            shown = {"loss": rows[-1].get("loss"), "accuracy": _accuracy(rows[-1])}
            bar.set_postfix(
                {**{k: f"{v:.3f}" for k, v in shown.items() if v is not None}, **postfix},
                refresh=False,
            )
            bar.update(len(block_rows))
            first = last + 1
    finally:
        bar.close()
    history = pd.DataFrame(rows).set_index("round")
    validation = [column for column in history.columns if column.startswith("val_")]
    return history[[*history.columns.drop(validation), *validation]]


def _accuracy(metrics: dict) -> float | None:
    """The accuracy a round reports: ``rating_accuracy`` for ratings, else ``accuracy``."""
    return metrics.get("rating_accuracy", metrics.get("accuracy"))
