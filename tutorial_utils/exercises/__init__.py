"""The exercises of notebook 04 (and its solutions): the checks and what they run.

It builds on the core and the simulator engine; nothing below it imports it.

- ``checks``: the check of each exercise, the one a learner calls.
- ``feedback``: verdicts, and tools that look inside a learner's ``dataset_split_fn``.
- ``model_checks``: what the checks of exercises 3 and 4 compare and train, and the checks
  of exercise 4's TFF calls.
- ``emnist``: exercise 4's EMNIST data (or offline stand-in) and models.
- ``recorded``: exercise 1's runs too long to repeat, read from ``results/``, and what
  the scripts that recorded them share.
"""
