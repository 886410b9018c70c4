"""Plumbing: what makes the tutorial run anywhere, and what it compares against.

Nothing here builds, trains or scores a model, and nothing imports the core, the
simulator, the exercises or the studies. Every notebook's setup cell uses ``environment``
(the Colab cells of the notebooks that install TFF use ``pins``); notebooks 03, 04 and 07
start TFF's worker with ``runtime``; the core's ``data`` finds MovieLens through
``movielens_source``; notebook 03 compares with ``walkthrough``.

- ``settings``: the environment variables that configure a run, read in one place.
- ``environment``: which stack this is, TFF made ready on it, advice when it cannot run.
- ``pins``: the locked pins of both stacks, Colab's package lists, what the Colab cells install.
- ``links``: GitHub and Colab links from one setting.
- ``movielens_source``: where MovieLens 1M comes from (a folder, the cache, a download, or
  the labelled synthetic stand-in).
- ``movielens_files``: read and verify MovieLens 1M's ``.dat`` files.
- ``download``: download and extract ``ml-1m.zip`` safely.
- ``synthetic_movielens``: the synthetic stand-in, in MovieLens' format.
- ``walkthrough``: what TFF's walkthrough printed, to compare against (notebook 03).
- ``runtime``: TFF's execution context and the C++ worker process behind it.
- ``workers``: several TFF worker services and TFF's context over them (docs/workers.md).
- ``rounds``: the one training loop every engine runs through: rounds from 1, a progress
  bar, a history table.
- ``markdown``: the one Markdown table formatter (README, docs, scripts, benchmarks).
- ``run_notebooks``: command line, executes the notebooks and records their times.
"""

# What notebooks call, e.g. ``plumbing.environment.check()`` and ``plumbing.runtime.start()``
# (the Colab cells import ``tutorial_utils.plumbing.pins`` themselves).
from tutorial_utils.plumbing import environment, runtime, walkthrough

__all__ = ["environment", "runtime", "walkthrough"]
