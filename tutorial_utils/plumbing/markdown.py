"""The one Markdown table formatter of the project.

The scripts, the benchmarks, the notebook runner and the recorded results prepare a
``pandas.DataFrame`` (the cells they want, e.g. ``"diverged"`` where a run diverged) and
hand it to :func:`markdown_table`, for the README, the docs and the terminal.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import pandas as pd


def _is_missing(value) -> bool:
    """True for NaN, None and ``pd.NA`` (and False for any list-like value)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def markdown_table(
    table: pd.DataFrame,
    *,
    index: bool = False,
    formats: Mapping[str, str | Callable] | None = None,
    float_format: str = "{:.4f}",
    missing: str = "-",
    align: str | None = None,
) -> str:
    """``table`` as a Markdown table, one line per row, in the order of ``table``.

    - ``index``: the index is the first column (headed by its name, if any).
    - ``formats``: per column, a format string (``"{:.1f}"``) or a function of the value
      giving the cell; other floats use ``float_format``, other values ``str``.
    - ``missing``: the cell of a missing value (NaN, None, ``pd.NA``), in every column.
    - ``align``: one letter per column (index first), ``l`` or ``r``; by default numeric
      columns are right-aligned and the others left-aligned.

    Returns the lines joined by newlines, without a final newline.
    """
    shown = table.reset_index() if index else table
    if index and table.index.name is None:
        shown = shown.rename(columns={shown.columns[0]: ""})
    formats = dict(formats or {})
    columns = [str(column) for column in shown.columns]
    if align is None:
        align = "".join(
            "r" if pd.api.types.is_numeric_dtype(shown[column]) else "l" for column in shown
        )
    if len(align) != len(columns) or set(align) - {"l", "r"}:
        raise ValueError(
            f"align must give 'l' or 'r' for each of the {len(columns)} columns, got {align!r}."
        )

    def cell(column: str, value) -> str:
        if _is_missing(value):
            return missing
        form = formats.get(column)
        if callable(form):
            return str(form(value))
        if form is not None:
            return form.format(value)
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            return float_format.format(value)
        return str(value)

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
    ]
    for row in shown.itertuples(index=False):
        lines.append(
            "| " + " | ".join(cell(column, value) for column, value in zip(columns, row)) + " |"
        )
    return "\n".join(lines)
