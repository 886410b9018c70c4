"""How a predicted rating is scored: rating accuracy and RMSE, defined once for every engine.

A prediction counts as correct when it rounds to the true rating, ``|y - prediction| <= 0.5``
(the walkthrough's ``RatingAccuracy``). The functions work on NumPy arrays and on TensorFlow
tensors alike, so the Keras metric, the vectorized simulator (inside XLA) and the NumPy
baselines all score with the same lines.
"""

from __future__ import annotations

import math

# A prediction within half a star of the true rating rounds to it.
RATING_TOLERANCE = 0.5


def is_correct(ratings, predictions):
    """Element-wise: does the prediction round to the true rating? (NumPy or TensorFlow.)"""
    return abs(ratings - predictions) <= RATING_TOLERANCE


def rmse(squared_error_sum: float, num_examples: float) -> float:
    """Root mean squared error from a sum of squared errors over ``num_examples`` ratings.

    0 when there are no examples (Keras' ``divide_no_nan``).
    """
    return math.sqrt(squared_error_sum / num_examples) if num_examples else 0.0
