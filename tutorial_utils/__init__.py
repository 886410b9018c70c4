"""Helpers for the Federated Reconstruction matrix factorization tutorial.

Modules, each named after what it holds:

- ``data``: find, download, verify and load MovieLens 1M; the synthetic stand-in.
- ``datasets``: per-user ``tf.data`` clients built on demand, and the split by user.
- ``model``: ``UserEmbedding``, the Keras matrix factorization model, ``RatingAccuracy``.
- ``training``: the FedRecon training and evaluation processes and the training loop.
- ``runtime``: TFF's execution context and the worker process it starts.
- ``plotting``: the figures, shown and saved as PNG.
- ``exploration``: summaries of the ratings (statistics, top genres per user).
- ``environment``: checks that this Python can run TFF, with advice when it cannot.
- ``config``: the walkthrough's parameters and a tiny smoke configuration.
- ``settings``: the environment variables that configure a run.
"""

__version__ = "0.1.0"
