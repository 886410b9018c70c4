"""Which stack this Python runs, getting TFF ready on it, and advice in plain words.

The tutorial runs on two stacks, each pinned by a lock file in ``requirements/``:

- **modern** (the default): Google Colab's default runtime (Python 3.13, TensorFlow 2.20,
  tf-keras, jax 0.7) plus TFF. TFF 0.87 declares none of these, but runs there with the
  same numbers once :func:`prepare_tff` has done three things before TensorFlow loads
  Keras: route ``tf.keras`` to the legacy Keras 2 (``TF_USE_LEGACY_KERAS=1``), import
  TensorFlow Privacy without its TF1 estimators, which no longer import on TensorFlow
  2.16+, and give ``jax.lib.xla_client`` back the two names TFF reads from it at import.
- **reference**: Python 3.11 with TensorFlow 2.14 and the exact pins TFF 0.87 declares
  (jax 0.4). There :func:`prepare_tff` changes nothing.

Importing ``tutorial_utils`` calls :func:`prepare_tff`, so a notebook or script that
imports the package first can then ``import tensorflow_federated as tff`` on either stack.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import types

TFF_VERSION = "0.87.0"
# TensorFlow from this minor version on loads Keras 3 unless told to load tf-keras.
FIRST_KERAS3_TENSORFLOW = (2, 16)
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))

# The TensorFlow Privacy names TFF 0.87 reads from the package itself, and where they live.
_DP_QUERY = "tensorflow_privacy.privacy.dp_query"
TF_PRIVACY_NAMES = {
    "DPQuery": "dp_query",
    "SumAggregationDPQuery": "dp_query",
    "DiscreteGaussianSumQuery": "discrete_gaussian_query",
    "DistributedDiscreteGaussianSumQuery": "distributed_discrete_gaussian_query",
    "DistributedSkellamSumQuery": "distributed_skellam_query",
    "GaussianSumQuery": "gaussian_query",
    "NestedQuery": "nested_query",
    "NoPrivacyAverageQuery": "no_privacy_query",
    "NoPrivacySumQuery": "no_privacy_query",
    "NormalizedQuery": "normalized_query",
    "QuantileEstimatorQuery": "quantile_estimator_query",
    "NoPrivacyQuantileEstimatorQuery": "quantile_estimator_query",
    "QuantileAdaptiveClipSumQuery": "quantile_adaptive_clip_sum_query",
    "QAdaClipTreeResSumQuery": "quantile_adaptive_clip_tree_query",
    "RestartQuery": "restart_query",
    "TreeCumulativeSumQuery": "tree_aggregation_query",
    "TreeResidualSumQuery": "tree_aggregation_query",
    "TreeRangeSumQuery": "tree_range_query",
}
TF_PRIVACY_MODULES = ("restart_query", "tree_aggregation")
# The names TFF 0.87 reads from ``jax.lib.xla_client`` when it is imported (type
# annotations of its XLA backend). jax 0.7 dropped them from that module; jaxlib still
# defines both in ``jaxlib.xla_client``.
XLA_CLIENT_NAMES = ("XlaComputation", "Shape")

ADVICE_PYTHON = (
    "This is Python {python}; the tutorial runs TensorFlow Federated {tff} on Python "
    "3.11, 3.12 or 3.13. Use one of those (stock Google Colab runs 3.13), for example "
    "with the README's two commands on Linux."
)
ADVICE_PLATFORM = (
    "TensorFlow Federated {tff} ships wheels for Linux x86_64 only; this is {system} "
    "{machine}. On macOS or Windows, use Google Colab, a Linux machine, or WSL 2 with "
    "Ubuntu on Windows."
)
ADVICE_MISSING = (
    "TensorFlow Federated is not installed in this Python ({executable}). From the project "
    "folder run `make tutorial` (it creates .venv with every pinned package) and select "
    "that environment's kernel, or in Colab run the install cell at the top of the notebook."
)
ADVICE_NO_TF_KERAS = (
    "TensorFlow {tf} loads Keras 3, and TensorFlow Federated {tff} needs Keras 2: install "
    "tf-keras (the install cell at the top of the notebook does, or `make tutorial`)."
)
ADVICE_KERAS3_LOADED = (
    "TensorFlow was already imported with Keras 3, before tutorial_utils could route "
    "tf.keras to Keras 2 for TensorFlow Federated. Restart the runtime (Colab: Runtime > "
    "Restart session; Jupyter: Kernel > Restart), then run the notebook from the top, "
    "so that tutorial_utils is imported before TensorFlow."
)
ADVICE_RESTART = (
    "{name} {loaded} is loaded in this Python, but {installed} is now installed (the "
    "install cell changed it). Restart the runtime (Colab: Runtime > Restart session; "
    "Jupyter: Kernel > Restart), then run the notebook again from the top."
)
# Distributions whose module a notebook kernel may have loaded before the install cell ran.
LOADED_EARLY = {
    "numpy": "numpy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "tensorflow": "tensorflow",
    "protobuf": "google.protobuf",
}


class EnvironmentProblem(RuntimeError):
    """The running Python cannot run the TFF parts of the tutorial; the message says why."""


def _version(distribution: str) -> tuple[int, ...] | None:
    """The installed version of a distribution as numbers, or None when it is absent."""
    try:
        text = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def installed(module: str) -> bool:
    """Whether ``module`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing, or an import hook refuses it
        return False


def stack() -> str:
    """``modern`` (TensorFlow 2.16+ with tf-keras), ``reference`` (older TensorFlow), or
    ``none`` when TensorFlow is not installed."""
    tf_version = _version("tensorflow")
    if tf_version is None:
        return "none"
    return "modern" if tf_version >= FIRST_KERAS3_TENSORFLOW else "reference"


def _tf_keras_is_keras3() -> bool:
    """True when TensorFlow is imported and its ``tf.keras`` already resolved to Keras 3.

    ``tf.keras`` starts as a lazy loader that picks Keras 3 or tf-keras on first use, then
    replaces itself with the module it picked. Only ``__dict__`` is read, so that this
    check never makes the choice itself.
    """
    tf = sys.modules.get("tensorflow")
    found = getattr(tf, "__dict__", {}).get("keras")
    state = getattr(found, "__dict__", {})
    if state.get("_tfll_initialized") is False:
        return False  # not used yet: TF_USE_LEGACY_KERAS still decides
    if "_tfll_keras_version" in state:
        return state["_tfll_keras_version"] == "keras_3"
    keras_version = str(getattr(sys.modules.get("keras"), "__version__", ""))
    return str(state.get("__name__", "")).startswith("keras.") and keras_version.startswith("3.")


def _import_tf_privacy_without_estimators() -> None:
    """Imports ``tensorflow_privacy`` with its documented switch that skips its own
    imports, and gives it the names TFF reads from it, each imported when first used."""
    if "tensorflow_privacy" in sys.modules:
        return
    sys.skip_tf_privacy_import = True
    try:
        package = importlib.import_module("tensorflow_privacy")
    finally:
        del sys.skip_tf_privacy_import

    def lazy_name(name: str):
        if name in TF_PRIVACY_MODULES:
            value = importlib.import_module(f"{_DP_QUERY}.{name}")
        elif name in TF_PRIVACY_NAMES:
            module = importlib.import_module(f"{_DP_QUERY}.{TF_PRIVACY_NAMES[name]}")
            value = getattr(module, name)
        else:
            raise AttributeError(f"module 'tensorflow_privacy' has no attribute {name!r}")
        setattr(package, name, value)
        return value

    package.__getattr__ = lazy_name


def _give_jax_the_names_tff_reads() -> list[str]:
    """Puts :data:`XLA_CLIENT_NAMES` back on ``jax.lib.xla_client`` where a newer jax
    lacks them, from ``jaxlib.xla_client``; returns the names it added (none on jax 0.4).
    Imports jax, never TensorFlow."""
    # As TFF reads it, ``from jax.lib import xla_client``: an attribute of ``jax.lib`` on
    # jax 0.4, a submodule on jax 0.7.
    lib = importlib.import_module("jax.lib")
    public = getattr(lib, "xla_client", None) or importlib.import_module("jax.lib.xla_client")
    missing = [name for name in XLA_CLIENT_NAMES if not hasattr(public, name)]
    if missing:
        source = importlib.import_module("jaxlib.xla_client")
        for name in missing:
            setattr(public, name, getattr(source, name))
    return missing


def prepare_tff() -> str:
    """Gets TensorFlow Federated 0.87 ready to import on this stack; returns the stack.

    On the modern stack: ``TF_USE_LEGACY_KERAS=1``, TensorFlow Privacy imported without
    its estimators, and jax given the names TFF reads from it (none of this imports
    TensorFlow). On either stack, when TFF is installed, the jax names (jax 0.4 has them
    already). Without TFF installed, nothing. Safe to call any number of times.

    Raises :class:`EnvironmentProblem` when TensorFlow already loaded Keras 3 (the
    runtime must be restarted) or when tf-keras is missing.
    """
    current = stack()
    if current == "none" or not installed("tensorflow_federated"):
        return current
    if installed("jax"):
        _give_jax_the_names_tff_reads()
    if current != "modern":
        return current
    if _version("tf-keras") is None:
        raise EnvironmentProblem(
            ADVICE_NO_TF_KERAS.format(tf=importlib.metadata.version("tensorflow"), tff=TFF_VERSION)
        )
    if _tf_keras_is_keras3():
        raise EnvironmentProblem(ADVICE_KERAS3_LOADED)
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    if installed("tensorflow_privacy"):
        _import_tf_privacy_without_estimators()
    return current


def import_tff() -> types.ModuleType:
    """``tensorflow_federated``, imported after :func:`prepare_tff` (used inside this
    package, so that a problem is reported in plain words, not from deep inside TFF)."""
    prepare_tff()
    return importlib.import_module("tensorflow_federated")


def stale_modules() -> list[str]:
    """Advice for each package loaded at one version while another is now installed."""
    found = []
    for distribution, module_name in LOADED_EARLY.items():
        module = sys.modules.get(module_name)
        loaded = getattr(module, "__version__", None)
        if loaded is None:
            continue
        try:
            now = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        if now != loaded:
            found.append(ADVICE_RESTART.format(name=distribution, loaded=loaded, installed=now))
    return found


def problems() -> list[str]:
    """What stops TFF from working here, each as advice; empty when all is well."""
    found = stale_modules()
    if sys.version_info[:2] not in SUPPORTED_PYTHONS:
        found.append(ADVICE_PYTHON.format(tff=TFF_VERSION, python=platform.python_version()))
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        found.append(
            ADVICE_PLATFORM.format(
                tff=TFF_VERSION, system=platform.system(), machine=platform.machine()
            )
        )
    if not found and not installed("tensorflow_federated"):
        found.append(ADVICE_MISSING.format(executable=sys.executable))
    if not found:
        try:
            prepare_tff()
        except EnvironmentProblem as problem:
            found.append(str(problem))
    return found


def check(require_tff: bool = True) -> str:
    """Returns a one-line description of the versions in use, or explains what to do.

    With ``require_tff`` a problem raises :class:`EnvironmentProblem`; without it, the
    advice is printed and the notebook goes on (its TFF-free parts still run).
    """
    found = problems()
    if found:
        message = "\n\n".join(found)
        if require_tff:
            raise EnvironmentProblem(message)
        print("Note: " + message + "\n")
    return describe()


def describe() -> str:
    """The stack, and the Python, TensorFlow, TFF and NumPy versions, on one line."""
    import numpy as np
    import tensorflow as tf

    if not installed("tensorflow_federated"):
        tff_version = "not installed"
    elif _tf_keras_is_keras3():
        tff_version = "not importable (see the note above)"
    else:
        tff_version = import_tff().__version__
    return (
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"TensorFlow Federated {tff_version}, NumPy {np.__version__} ({stack()} stack)"
    )
