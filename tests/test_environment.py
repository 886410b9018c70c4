import importlib.metadata
import os
import platform
import subprocess
import sys
import textwrap
import types

import pytest

from tutorial_utils.plumbing import environment


def run_python(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh Python of this environment, as a new user would start it
    (without the ``TF_USE_LEGACY_KERAS`` this test process inherited from the package)."""
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_this_machine_has_no_problems():
    pytest.importorskip("tensorflow_federated")
    assert environment.problems() == []
    line = environment.check()
    assert "TensorFlow Federated 0.87.0" in line and f"({environment.stack()} stack)" in line


def test_the_stack_follows_the_installed_tensorflow():
    tf_version = importlib.metadata.version("tensorflow")
    expected = "reference" if tf_version.startswith("2.14.") else "modern"
    assert environment.stack() == expected


def test_tff_imports_after_the_package_as_in_the_walkthrough():
    pytest.importorskip("tensorflow_federated")
    result = run_python("""
        import tutorial_utils
        import tensorflow_federated as tff
        import tensorflow as tf
        print(tff.__version__, type(tf.keras.layers.Dense(1)).__module__.split(".")[0])
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    version, keras = result.stdout.split()
    assert version == "0.87.0"
    # Keras 2 either way: tf-keras on the modern stack, TensorFlow 2.14's own keras 2.14.
    assert keras == ("tf_keras" if environment.stack() == "modern" else "keras")


def test_tff_imports_on_this_stacks_jax_and_only_jax_07_needs_the_two_names():
    """The reference stack has jax 0.4, whose ``jax.lib.xla_client`` still has the names
    TFF reads; the modern stack (Colab's) has jax 0.7, where the package supplies them."""
    pytest.importorskip("tensorflow_federated")
    result = run_python("""
        from jax.lib import xla_client as public
        print(hasattr(public, "XlaComputation"), hasattr(public, "Shape"))
        import tutorial_utils
        import jax
        import tensorflow_federated as tff
        print(jax.__version__, tff.__version__, public.XlaComputation.__module__)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = result.stdout.splitlines()[-2:]
    jax_version, tff_version, source = after.split()
    assert tff_version == "0.87.0"
    if environment.stack() == "modern":
        assert jax_version.startswith("0.7.") and before == "False False"
    else:
        assert jax_version.startswith("0.4.") and before == "True True"
    assert source.startswith("jaxlib")


def fake_jax(monkeypatch, public_names):
    """Stand-ins for ``jax.lib.xla_client`` (holding ``public_names``) and
    ``jaxlib.xla_client`` (holding both names), as imported modules."""
    public = types.ModuleType("jax.lib.xla_client")
    source = types.ModuleType("jaxlib.xla_client")
    for name in environment.XLA_CLIENT_NAMES:
        setattr(source, name, type(name, (), {}))
    for name in public_names:
        setattr(public, name, getattr(source, name))
    lib = types.ModuleType("jax.lib")
    lib.xla_client = public
    monkeypatch.setitem(sys.modules, "jax.lib", lib)
    monkeypatch.setitem(sys.modules, "jax.lib.xla_client", public)
    monkeypatch.setitem(sys.modules, "jaxlib.xla_client", source)
    return public, source


def test_jax_07_gets_both_names_from_jaxlib(monkeypatch):
    public, source = fake_jax(monkeypatch, public_names=())
    assert environment._give_jax_the_names_tff_reads() == ["XlaComputation", "Shape"]
    assert public.XlaComputation is source.XlaComputation and public.Shape is source.Shape
    assert environment._give_jax_the_names_tff_reads() == []  # a second call adds nothing


def test_jax_04_is_left_as_it_is(monkeypatch):
    public, source = fake_jax(monkeypatch, public_names=environment.XLA_CLIENT_NAMES)
    own = types.ModuleType("unused")
    public.Shape = own
    assert environment._give_jax_the_names_tff_reads() == []
    assert public.Shape is own


def test_keras3_loaded_first_gets_plain_advice_not_a_traceback_from_tff():
    pytest.importorskip("tensorflow_federated")
    if environment.stack() != "modern":
        pytest.skip("the reference stack has no Keras 3")
    result = run_python("""
        import tensorflow as tf
        tf.keras.layers.Dense(1)  # tf.keras resolves to Keras 3 here
        from tutorial_utils.plumbing import environment
        try:
            environment.check()
        except environment.EnvironmentProblem as problem:
            print("PROBLEM:", problem)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PROBLEM: TensorFlow was already imported with Keras 3" in result.stdout
    assert "Restart the runtime" in result.stdout


def test_prepare_tff_does_nothing_on_the_reference_stack(monkeypatch):
    monkeypatch.setattr(environment, "stack", lambda: "reference")
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    assert environment.prepare_tff() == "reference"
    assert "TF_USE_LEGACY_KERAS" not in os.environ


def test_python_314_gets_plain_advice(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 14, 0, "final", 0))
    monkeypatch.setattr(platform, "python_version", lambda: "3.14.0")
    [advice] = environment.problems()
    assert "Python 3.14.0" in advice and "3.11, 3.12 or 3.13" in advice
    with pytest.raises(environment.EnvironmentProblem, match="Python 3.14.0"):
        environment.check(require_tff=True)


def test_macos_gets_plain_advice(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    [advice] = environment.problems()
    assert "Linux x86_64 only" in advice and "Darwin arm64" in advice


def test_a_package_replaced_after_it_was_loaded_asks_for_a_restart(monkeypatch):
    import numpy as np

    monkeypatch.setattr(np, "__version__", "1.0.0")
    [advice] = environment.problems()
    installed = importlib.metadata.version("numpy")
    assert f"numpy 1.0.0 is loaded in this Python, but {installed} is now installed" in advice
    assert "Restart the runtime" in advice


def test_missing_tff_gets_plain_advice_and_optional_check_only_prints(monkeypatch, capsys):
    monkeypatch.setattr(environment, "installed", lambda name: name != "tensorflow_federated")
    [advice] = environment.problems()
    assert "not installed" in advice and "make tutorial" in advice
    line = environment.check(require_tff=False)
    assert "TensorFlow Federated not installed" in line
    assert "not installed in this Python" in capsys.readouterr().out


def test_a_hidden_tff_counts_as_not_installed():
    result = run_python("""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorflow_federated":
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Hide())
        from tutorial_utils.plumbing import environment
        print(environment.installed("tensorflow_federated"), environment.describe())
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.startswith("False ") and "TensorFlow Federated not installed" in result.stdout
    )
