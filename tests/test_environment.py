import platform
import sys

import pytest

from tutorial_utils import environment


def test_this_machine_has_no_problems():
    pytest.importorskip("tensorflow_federated")
    assert environment.problems() == []
    assert "TensorFlow Federated 0.87.0" in environment.check()


def test_python_312_gets_plain_advice(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 12, 1, "final", 0))
    monkeypatch.setattr(platform, "python_version", lambda: "3.12.1")
    [advice] = environment.problems()
    assert "Python 3.12.1" in advice and "Colab" in advice and "3.11" in advice
    with pytest.raises(environment.EnvironmentProblem, match="Python 3.12.1"):
        environment.check(require_tff=True)


def test_macos_gets_plain_advice(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    [advice] = environment.problems()
    assert "Linux x86_64 only" in advice and "Darwin arm64" in advice


def test_missing_tff_gets_plain_advice_and_optional_check_only_prints(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow_federated" else real_find_spec(name, *a),
    )
    [advice] = environment.problems()
    assert "not installed" in advice and "make tutorial" in advice
    line = environment.check(require_tff=False)
    assert "TensorFlow Federated not installed" in line
    assert "not installed in this Python" in capsys.readouterr().out
