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

# The columns an evaluation adds to the history, where it reports them.
VALIDATION_METRICS = ("loss", "rmse", "rating_accuracy")


def run_rounds(
    next_round: Callable[[list], dict],
    sampler,
    num_rounds: int,
    *,
    evaluate: Callable[[], dict] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "Training",
) -> pd.DataFrame:
    """Runs ``num_rounds`` rounds, each ``next_round(sampler.sample())``.

    ``next_round`` returns the round's training metrics (``loss`` and ``rating_accuracy``,
    or ``accuracy`` for other models). With ``evaluate`` and ``eval_every``, the validation
    metrics ``evaluate()`` returns are added after every ``eval_every``-th round and after
    the last one (NaN in the other rows). A progress bar (unless ``progress`` is False)
    shows the latest loss and accuracy, and the latest validation accuracy.
    """
    evaluating = evaluate is not None and eval_every > 0
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
        for round_num in range(1, num_rounds + 1):
            row = {"round": round_num, **next_round(sampler.sample())}
            if evaluating and (round_num % eval_every == 0 or round_num == num_rounds):
                metrics = evaluate()
                row.update(
                    {f"val_{name}": metrics[name] for name in VALIDATION_METRICS if name in metrics}
                )
                postfix["val_accuracy"] = f"{_accuracy(metrics):.3f}"
            rows.append(row)
            shown = {"loss": row.get("loss"), "accuracy": _accuracy(row)}
            bar.set_postfix(
                {**{k: f"{v:.3f}" for k, v in shown.items() if v is not None}, **postfix},
                refresh=False,
            )
            bar.update()
    finally:
        bar.close()
    history = pd.DataFrame(rows).set_index("round")
    validation = [column for column in history.columns if column.startswith("val_")]
    return history[[*history.columns.drop(validation), *validation]]


def _accuracy(metrics: dict) -> float | None:
    """The accuracy a round reports: ``rating_accuracy`` for ratings, else ``accuracy``."""
    return metrics.get("rating_accuracy", metrics.get("accuracy"))
