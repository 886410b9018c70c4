"""Helpers for the Federated Reconstruction matrix factorization tutorial, in four layers.

The tutorial's core sits at the top level: what notebooks 01-03 teach, one module a step,
with the settings (``config``) and figures (``plotting``) of every notebook;
the rest is in subpackages, each importing only the layers below it
(``tests/test_layout.py`` checks it; CONTRIBUTING.md draws the layers)::

    exercises (04)      studies (06, 07, 08)
           \\            /
        simulation (05: the simulator engine)
                 |
        core (01-03: the modules below)
                 |
        plumbing (environment, files, TFF's workers, records, the runner)

- ``config``: ``FedReconRun`` (one run, any engine) and each notebook's full/smoke settings.
- ``data``: find, load and summarize MovieLens 1M (or the labelled synthetic stand-in).
- ``clients``: per-user ``tf.data`` clients, the split by user, sampling, and how a
  client's batches are split between reconstruction and evaluation (``DatasetSplit``).
- ``metrics``: rating accuracy and RMSE, defined once for every engine.
- ``model``: the Keras matrix factorization model and its ``ReconstructionModel``.
- ``training``: TFF's FedRecon training and evaluation processes, and the training loop.
- ``plotting``: every figure, shown and saved as PNG, and the tables saved beside them.
- ``plumbing``: the environment, pins, links, settings, data files, TFF's worker
  processes, what the walkthrough printed, the notebook runner.
- ``simulation``: the simulator engine, its parity with TFF, the paper's protocol.
- ``exercises``: notebook 04's checks and what they run.
- ``studies``: notebooks 06-08 (baselines, recommendations, privacy, the live panel) and
  training on several workers.

Notebooks import the core modules by name and each subpackage whole
(``from tutorial_utils import data, simulation``), so that a call names its layer:
``simulation.FedReconSimulator``, ``studies.privacy.attack``, ``plumbing.runtime.start()``.

Importing the package gets TensorFlow Federated ready to import on the modern stack
(``plumbing.environment.prepare_tff``), so import it before TensorFlow.
"""

import contextlib as _contextlib
import warnings as _warnings

from tutorial_utils.plumbing import environment as _environment

# Colab's Matplotlib 3.10.0 calls pyparsing names that Colab's pyparsing 3.3 marks as
# deprecated, on import and whenever it draws log-axis tick labels; the warnings would print
# under the notebooks' figures. Silenced before anything here imports Matplotlib.
with _contextlib.suppress(ImportError):  # pyparsing before 3.3 has no such warning
    from pyparsing.warnings import PyparsingDeprecationWarning as _PyparsingDeprecation

    _warnings.filterwarnings("ignore", category=_PyparsingDeprecation)

__version__ = "0.2.0"

try:
    _environment.prepare_tff()
except _environment.EnvironmentProblem:
    pass  # reported in plain words by environment.check() or when TFF is first used
