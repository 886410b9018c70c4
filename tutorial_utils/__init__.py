"""Helpers for the Federated Reconstruction matrix factorization tutorial.

Modules, each named after what it holds:

- ``data``: find, download, verify and load MovieLens 1M; the synthetic stand-in.
- ``datasets``: per-user ``tf.data`` clients built on demand, and the split by user.
- ``model``: ``UserEmbedding``, the Keras matrix factorization model, ``RatingAccuracy``.
- ``training``: the FedRecon training and evaluation processes and the training loop.
- ``runtime``: TFF's execution context and the worker process it starts.
- ``plotting``: the figures, shown and saved as PNG.
- ``exploration``: summaries of the ratings (statistics, top genres per user).
- ``environment``: which stack this is, TFF made ready on it, advice when it cannot run.
- ``config``: the walkthrough's parameters and a tiny smoke configuration.
- ``settings``: the environment variables that configure a run.

Importing the package gets TensorFlow Federated ready to import on the modern stack
(``environment.prepare_tff``), so import it before TensorFlow.
"""

from tutorial_utils import environment as _environment

__version__ = "0.2.0"

try:
    _environment.prepare_tff()
except _environment.EnvironmentProblem:
    pass  # reported in plain words by environment.check() or when TFF is first used
