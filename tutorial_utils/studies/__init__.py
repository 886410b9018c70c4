"""The studies beyond the walkthrough: notebooks 06, 07 and 08, and training on workers
(docs/workers.md).

They build on the core and the simulator engine; nothing below them imports them.

- ``experiments``: notebook 06's data for seen and unseen users, sweeps, comparisons.
- ``baselines``: the stateful proposal, centralized ALS, metrics of any embeddings (06).
- ``recommend``: on-device reconstruction and top-N recommendations (06).
- ``communication``: bytes a client sends and receives per round (06).
- ``privacy``: what one FedRecon update and a round's sum reveal about a user (07).
- ``dp_training``: user-level DP: TFF's DP and secure aggregators, accounting, trade-off (07).
- ``live``: one simulated run from a few settings, and the widget panel (08).
- ``train_on_workers``: command line, FedRecon trained and scored on several workers.
"""

# What notebooks call, module by module, e.g. ``studies.privacy.attack``.
from tutorial_utils.studies import (
    baselines,
    communication,
    dp_training,
    experiments,
    live,
    privacy,
    recommend,
)

__all__ = [
    "baselines",
    "communication",
    "dp_training",
    "experiments",
    "live",
    "privacy",
    "recommend",
]
