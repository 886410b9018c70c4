"""The one Markdown table formatter (README, docs, scripts, benchmarks)."""

import numpy as np
import pandas as pd
import pytest

from tutorial_utils.plumbing import markdown


def test_markdown_table_formats_and_aligns_by_column():
    table = pd.DataFrame(
        {"name": ["a", "b"], "count": [3, 40], "score": [0.123456, np.nan], "time": [1.25, 2.0]}
    )
    lines = markdown.markdown_table(table, formats={"time": "{:.1f} s"}).splitlines()
    assert lines == [
        "| name | count | score | time |",
        "|---|---:|---:|---:|",
        "| a | 3 | 0.1235 | 1.2 s |",
        "| b | 40 | - | 2.0 s |",
    ]


def test_markdown_table_index_alignment_missing_and_callables():
    table = pd.DataFrame(
        {"speed-up": ["291x", ""], "value": [None, 2.5]}, index=pd.Index(["x", "y"], name="step")
    )
    text = markdown.markdown_table(
        table,
        index=True,
        align="lrr",
        missing="n/a",
        formats={"value": lambda v: f"{v:g}!"},
        float_format="{:.2f}",
    )
    assert text.splitlines() == [
        "| step | speed-up | value |",
        "|---|---:|---:|",
        "| x | 291x | n/a |",
        "| y |  | 2.5! |",
    ]
    unnamed = markdown.markdown_table(pd.DataFrame({"a": [1]}, index=["r"]), index=True)
    assert unnamed.splitlines()[0] == "|  | a |"
    with pytest.raises(ValueError, match="align"):
        markdown.markdown_table(table, align="lx")
