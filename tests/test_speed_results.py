"""The speed figures: one results file, checked against its schema, and docs/speed.md from it."""

from __future__ import annotations

import copy
import json

import pytest

from tutorial_utils.plumbing import settings
from tutorial_utils.simulation import speed_results


def example_results() -> dict:
    """A results file's content with every field (numbers made up for the formatting)."""
    results = {
        section: {
            field: 1 if kind is int else [1.0, 2.0] if kind is list else 1.0
            for field, kind in fields.items()
        }
        for section, fields in speed_results.SCHEMA.items()
    }
    results["run"] = {
        "command": "python b.py",
        "date": "2026-01-01",
        "protocol_date": "2026-01-02",
        "environment": "e",
        "protocol_environment": "e",
        "cpus": 2,
    }
    results["tutorial"].update(
        clients=50, tff_seconds=2.0, per_round_seconds=0.01, many_rounds_seconds=0.002
    )
    results["paper_protocol"].update(tff_seconds_estimated=None)
    return results


def test_the_speed_page_prints_the_benchmarks_results_file():
    results = speed_results.load()
    page = (settings.project_root() / "docs" / "speed.md").read_text()
    assert speed_results.SPEED_PAGE == settings.project_root() / "docs" / "speed.md"
    assert speed_results.speed_block(results) in page


def test_the_results_file_has_every_field_of_the_schema():
    results = json.loads(speed_results.RESULTS_FILE.read_text())
    assert set(results) == set(speed_results.SCHEMA)
    for section, fields in speed_results.SCHEMA.items():
        assert set(results[section]) == set(fields), section


def test_check_names_a_missing_or_mistyped_field():
    results = example_results()
    assert speed_results.check(copy.deepcopy(results)) == results
    del results["profile"]["program_ms"]
    with pytest.raises(ValueError, match="profile.program_ms is missing"):
        speed_results.check(results, "f.json")
    results = example_results()
    results["all_users"]["seconds"] = "fast"
    with pytest.raises(ValueError, match="all_users.seconds"):
        speed_results.check(results)
    with pytest.raises(ValueError, match="section 'run'"):
        speed_results.check({})


def test_load_says_how_to_make_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark_simulation.py"):
        speed_results.load(tmp_path / "missing.json")


def test_speed_table_divides_the_measured_times():
    table = speed_results.speed_table(example_results()).set_index("Measure")
    row = table.loc["rounds per second, 50 clients"]
    # Both modes, each named: one round a call (0.01 s) and many rounds a program (0.002 s).
    assert (row["TFF 0.87"], row["Simulator"], row["Speed-up"]) == (
        "0.50",
        "100 a round at a time, 500 many rounds a program",
        "200x a round at a time, 1000x many rounds a program",
    )
    row = table.loc["one round, 50 clients, the walkthrough's settings"]
    assert row["Simulator"] == "10.00 ms a round at a time, 2.00 ms many rounds a program"
    assert table.iloc[2]["Speed-up"] == "-"  # TFF's time was not measured


def test_the_protocol_score_is_notebook_05s():
    """The benchmark's protocol run and notebook 05's report one test score."""
    paper = speed_results.load()["paper_protocol"]
    notebook = settings.project_root() / "notebooks" / "05_fast_simulation.ipynb"
    cells = json.loads(notebook.read_text())
    out = "".join("".join(o.get("text", "")) for c in cells["cells"] for o in c.get("outputs", []))
    assert (
        f"The protocol's test score ({paper['test_clients']} sampled test users): "
        f"RMSE {paper['test_rmse']:.4f}, rating accuracy {paper['test_rating_accuracy']:.4f}"
    ) in out
    assert (
        f"All {paper['all_test_clients']} test users: RMSE {paper['all_test_rmse']:.4f}, "
        f"rating accuracy {paper['all_test_rating_accuracy']:.4f}"
    ) in out


def test_scaling_table_compares_the_time_per_client():
    results = example_results()
    results["scaling"].update(clients=[50, 100], clients_rounds_per_second=[10.0, 10.0])
    table = speed_results.scaling_table(results)
    assert table["time per unit, relative"].tolist()[:2] == [1.0, 0.5]
    assert len(table) == 4


def test_linear_from_finds_where_the_time_per_unit_stops_changing():
    sizes = [10, 20, 40, 80]
    assert speed_results.linear_from(sizes, [1.0, 0.5, 0.45, 0.55]) == 20
    assert speed_results.linear_from(sizes, [1.0, 1.1, 0.9, 1.2]) == 10
    assert speed_results.linear_from(sizes, [1.0, 0.5, 0.25, 0.1]) is None


def test_scaling_summary_says_where_the_growth_is_linear():
    results = example_results()
    results["scaling"].update(
        clients=[50, 100, 200],
        clients_rounds_per_second=[100.0, 50.0, 25.0],  # time per client constant
        factors=[10, 20, 40],
        factors_rounds_per_second=[100.0, 100.0, 100.0],  # time constant: far below linear
    )
    summary = speed_results.scaling_summary(results)
    assert "With clients, the time a round grows linearly from 50 to 200 clients" in summary
    assert "With factors, the time a round grows less than linearly all the way to 40" in summary
    assert "at 40: 0.25 of its value at 10" in summary


def test_update_speed_page_rewrites_only_its_block(tmp_path):
    page = tmp_path / "speed.md"
    page.write_text(f"before\n{speed_results.BEGIN}\nold\n{speed_results.END}\nafter\n")
    speed_results.update_speed_page(example_results(), page)
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "old" not in text
    assert speed_results.speed_block(example_results()) in text
    page.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        speed_results.update_speed_page(example_results(), page)


def test_speed_scaling_plots_the_measured_points_and_the_linear_line(tmp_path, monkeypatch):
    from tutorial_utils import plotting

    monkeypatch.setenv("FEDRECON_OUTPUT_DIR", str(tmp_path))
    scaling = example_results()["scaling"]
    scaling.update(clients=[50, 100, 200], clients_rounds_per_second=[100.0, 80.0, 30.0])
    fig = plotting.speed_scaling(scaling, name="scaling")
    assert (tmp_path / "scaling.png").stat().st_size > 0
    measured, linear = fig.axes[0].get_lines()
    assert list(measured.get_ydata()) == [100.0, 80.0, 30.0]
    assert list(linear.get_ydata()) == [100.0, 50.0, 25.0]


def test_repeat_spread_compares_two_timings_of_one_setting():
    results = example_results()
    results["scaling"].update(
        clients=[50, 100],
        clients_rounds_per_second=[20.0, 8.0],
        factors=[25, 50],
        factors_rounds_per_second=[12.0, 10.0],
        factors_clients=100,
        clients_factors=50,
    )
    # 100 clients and 50 factors: 8.0 rounds per second in one scaling, 10.0 in the other.
    assert speed_results.repeat_spread(results) == (
        "How noisy the times are: the setting of 100 clients and 50 factors is timed in both "
        "scalings of one run, at 8.00 and 10.00 rounds per second (25% apart)."
    )
    results["scaling"].update(factors=[25, 40])
    assert speed_results.repeat_spread(results) == ""


def test_protocol_score_says_when_and_where_the_protocol_row_was_measured():
    results = example_results()
    text = speed_results.protocol_score(results)
    assert "measured on 2026-01-02, in a later run than the other rows:" in text
    assert "TFF's rounds (on the tutorial's clients" in text and "in one process" in text
    results["run"].update(protocol_date="2026-01-01", protocol_environment="other")
    text = speed_results.protocol_score(results)
    assert "measured in the same run as the other rows (other):" in text


def test_the_protocols_tff_estimate_names_its_rounds():
    results = example_results()
    results["paper_protocol"].update(rounds=500, tff_seconds_estimated=1000.0, tff_rounds_timed=5)
    table = speed_results.speed_table(results)
    assert table.iloc[2]["TFF 0.87"] == "1000 s (estimated: 500 x the median of 5 rounds)"
