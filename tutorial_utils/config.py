"""The tutorial's parameters: the walkthrough's (``full``) and a tiny ``smoke`` set.

``FEDRECON_CONFIG=smoke`` shrinks every notebook so that it only proves it runs (used by
the tests when the real data is not available). Notebooks read :func:`current` once and
print it, so a reader always sees which parameters produced the outputs below.
"""

from __future__ import annotations

import dataclasses

from tutorial_utils import settings


@dataclasses.dataclass(frozen=True)
class TutorialConfig:
    """Parameters shared by the notebooks."""

    name: str
    max_clients: int | None  # users loaded as clients (the walkthrough: 2000)
    batch_size: int
    max_examples_per_user: int
    num_latent_factors: int
    clients_per_round: int
    num_rounds: int
    seed: int = 42


FULL = TutorialConfig(
    name="full",
    max_clients=2000,
    batch_size=5,
    max_examples_per_user=300,
    num_latent_factors=50,
    clients_per_round=50,
    num_rounds=20,
)

SMOKE = TutorialConfig(
    name="smoke",
    max_clients=60,
    batch_size=5,
    max_examples_per_user=300,
    num_latent_factors=8,
    clients_per_round=5,
    num_rounds=2,
)


def current() -> TutorialConfig:
    """The configuration chosen by ``FEDRECON_CONFIG`` (``full`` unless set)."""
    return {"full": FULL, "smoke": SMOKE}[settings.run_config()]
