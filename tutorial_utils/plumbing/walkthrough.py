"""What TensorFlow Federated's walkthrough printed on MovieLens 1M, to compare against.

The walkthrough "Federated Reconstruction for Matrix Factorization" printed these facts
about the data and these metrics of its one run: 20 rounds of 50 clients, then an
evaluation on validation and on test users. Notebooks 01 and 03 set their own outputs
beside them, and ``tests/test_readme_results.py`` checks that the README's results table
shows both as stored. The walkthrough numbered its rounds from 0; here they are numbered
from 1, as :func:`rounds.run_rounds` numbers them.
"""

from __future__ import annotations

import pandas as pd

NUM_USERS = 6040
NUM_MOVIES = 3706
AVERAGE_RATING = 3.581564453029317
MEDIAN_RATING = 4.0

# Each user's five most rated genres, as (genre, count), for the three users it printed.
TOP_GENRES = {
    0: [("Drama", 21), ("Children's", 20), ("Animation", 18), ("Musical", 14), ("Comedy", 14)],
    10: [("Comedy", 84), ("Drama", 54), ("Romance", 22), ("Thriller", 18), ("Action", 9)],
    19: [("Action", 17), ("Sci-Fi", 9), ("Thriller", 9), ("Drama", 6), ("Crime", 5)],
}

# The first batch of the first training client.
FIRST_BATCH_MOVIES = [1907, 2891, 1574, 2785, 2775]
FIRST_BATCH_RATINGS = [3.0, 3.0, 3.0, 4.0, 3.0]

INITIAL_EVAL = {"loss": 14.340279, "rating_accuracy": 0.0}
FINAL_EVAL = {"loss": 1.9961331, "rating_accuracy": 0.30322924}
FINAL_TEST = {"loss": 1.9566978, "rating_accuracy": 0.30792442}

# The training metrics of rounds 1 to 20, as (loss, rating accuracy).
_ROUNDS = [
    (14.7013445, 0.0),
    (14.459233, 0.0),
    (14.52466, 0.0),
    (14.087793, 0.0),
    (11.110232, 0.011243612),
    (8.267054, 0.06366048),
    (5.2693872, 0.12331288),
    (5.1511016, 0.14264487),
    (3.8246362, 0.21046545),
    (3.303812, 0.21320973),
    (3.4864292, 0.21651311),
    (3.0105433, 0.23476052),
    (3.1807854, 0.21981856),
    (2.3382564, 0.27683082),
    (2.7009728, 0.26080742),
    (2.2993557, 0.2733109),
    (2.5278995, 0.29282996),
    (2.060092, 0.30204678),
    (2.0976772, 0.2940266),
    (2.0626144, 0.3086304),
]


def training_history() -> pd.DataFrame:
    """The walkthrough's training loss and rating accuracy, indexed by round from 1: the
    shape of the history that ``training.train`` returns."""
    history = pd.DataFrame(_ROUNDS, columns=["loss", "rating_accuracy"])
    history.index = pd.RangeIndex(1, len(history) + 1, name="round")
    return history
