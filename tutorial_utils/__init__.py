"""Helpers for the Federated Reconstruction matrix factorization tutorial.

Modules, each named after what it holds (CONTRIBUTING.md says how they fit together):

- ``settings``: the environment variables that configure a run, read in one place.
- ``data``: find and load MovieLens 1M, or the labelled synthetic stand-in.
- ``movielens_files``: read and verify MovieLens 1M's ``.dat`` files.
- ``download``: download and extract ``ml-1m.zip`` safely.
- ``synthetic_movielens``: the synthetic stand-in, in MovieLens' format.
- ``exploration``: summaries of the ratings (statistics, top genres per user).
- ``walkthrough``: what TFF's walkthrough printed, to compare against.
- ``clients``: per-user ``tf.data`` clients built on demand, the split by user, sampling.
- ``config``: ``FedReconRun`` (one run, any engine) and each notebook's full/smoke settings.
- ``splits``: ``DatasetSplit``, TFF's client-data split with and without TFF, overlap counts.
- ``metrics``: rating accuracy and RMSE, defined once.
- ``model``: ``UserEmbedding``, the Keras matrix factorization model, ``RatingAccuracy``.
- ``training``: TFF's FedRecon training and evaluation processes.
- ``rounds``: the one training loop every engine runs through.
- ``batches``: a simulated round's batches, from packed clients or ``tf.data``.
- ``program_inputs``: a round's batches numbered and padded for the compiled program.
- ``reference_fedrecon``: FedRecon written out plainly, one client at a time, for reading.
- ``simulator``: FedRecon in plain TensorFlow, every client of a round at once.
- ``round_math``: the simulator's compiled round: reconstruction, training, the server's sum.
- ``parity``: the simulator against TFF 0.87, the same rounds compared number by number.
- ``many_rounds``: many simulator rounds in one compiled program, with the same results.
- ``paper_protocol``: the paper's MovieLens protocol with its code's data choices (notebook 05).
- ``speed_results``: the simulation benchmark's results file, and its tables in docs/speed.md.
- ``runs``: train, then score one run, with TFF or the simulator.
- ``recorded``: results of runs too long to repeat (exercise 1's), read from ``results/``.
- ``live``: one simulated run from a few settings, and a widget panel that retrains it.
- ``exercises``: the checks of notebook 04's exercises.
- ``feedback``: verdicts, and tools that look inside a learner's ``dataset_split_fn``.
- ``model_checks``: what the checks of exercises 3 and 4 compare and train.
- ``emnist``: exercise 4's EMNIST data (or offline stand-in) and models.
- ``baselines``: the stateful proposal, centralized ALS, metrics of any embeddings.
- ``experiments``: notebook 06's data for seen and unseen users, sweeps and comparisons.
- ``privacy``: what one FedRecon update and a round's sum reveal about a user.
- ``dp_training``: user-level DP: TFF's DP and secure aggregators, accounting, trade-off.
- ``recommend``: on-device reconstruction and top-N recommendations.
- ``communication``: bytes a client sends and receives per round.
- ``plotting``: every figure, shown and saved as PNG.
- ``reporting``: every table, as CSV and Markdown.
- ``runtime``: TFF's execution context and the worker process it starts.
- ``workers``: several TFF worker services and TFF's context over them.
- ``train_on_workers``: command line, FedRecon trained and scored on several workers.
- ``environment``: which stack this is, TFF made ready on it, advice when it cannot run.
- ``pins``: the locked pins of both stacks, Colab's package lists, and what the Colab cells install.
- ``links``: GitHub and Colab links from one setting.
- ``run_notebooks``: command line, executes the notebooks and records their times.

Importing the package gets TensorFlow Federated ready to import on the modern stack
(``environment.prepare_tff``), so import it before TensorFlow.
"""

import contextlib as _contextlib
import warnings as _warnings

from tutorial_utils import environment as _environment

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
