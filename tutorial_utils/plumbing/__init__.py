"""Plumbing: what makes the tutorial run, anywhere, and knows nothing of FedRecon.

Every notebook's setup cell uses ``environment`` (and, in Colab, ``pins``); the core's
``data`` finds MovieLens through ``movielens_source``; notebooks 01 and 03 compare with
``walkthrough``. Nothing here imports the core, the simulator, the exercises or the studies.

- ``settings``: the environment variables that configure a run, read in one place.
- ``environment``: which stack this is, TFF made ready on it, advice when it cannot run.
- ``pins``: the locked pins of both stacks, Colab's package lists, what the Colab cells install.
- ``links``: GitHub and Colab links from one setting.
- ``movielens_source``: where MovieLens 1M comes from (a folder, the cache, a download, or
  the labelled synthetic stand-in).
- ``movielens_files``: read and verify MovieLens 1M's ``.dat`` files.
- ``download``: download and extract ``ml-1m.zip`` safely.
- ``synthetic_movielens``: the synthetic stand-in, in MovieLens' format.
- ``walkthrough``: what TFF's walkthrough printed, to compare against (notebooks 01, 03).
- ``rounds``: the one training loop every engine runs through: rounds from 1, a progress
  bar, a history table.
- ``markdown``: the one Markdown table formatter (README, docs, scripts, benchmarks).
- ``run_notebooks``: command line, executes the notebooks and records their times.
"""
