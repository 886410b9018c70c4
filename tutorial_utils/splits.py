"""How a client's batches are split between reconstruction and the stage after it.

:class:`DatasetSplit` holds the options of TFF's
``ReconstructionModel.build_dataset_split_fn``; :func:`tff_split_fn` turns it into TFF's
function and :func:`split_dataset_fn` into the same function without TFF. Evaluation is fair
only when a user is scored on ratings that did not reconstruct their embedding:
:func:`shared_ratings` counts the ratings two stages share, whatever produced them (a
``tf.data`` pipeline here, the simulator's batches in ``batches.stage_overlap``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """How a client's batches are divided between reconstruction and post-reconstruction.

    The options of TFF's ``ReconstructionModel.build_dataset_split_fn``:

    - ``split_dataset``: even-indexed batches (0, 2, 4, ...) reconstruct, odd-indexed
      batches are used after reconstruction. When False, both stages use all batches.
    - ``recon_epochs`` passes over the reconstruction batches, then at most
      ``recon_steps_max`` of them (``None``: no limit); likewise for post-reconstruction.

    The default is what ``build_fed_recon`` and ``build_fed_recon_eval`` use when they are
    given no ``dataset_split_fn`` (note that ``build_dataset_split_fn`` itself defaults to
    ``split_dataset=False``).
    """

    recon_epochs: int = 1
    recon_steps_max: int | None = None
    post_recon_epochs: int = 1
    post_recon_steps_max: int | None = None
    split_dataset: bool = True

    def __post_init__(self):
        for name in ("recon_epochs", "post_recon_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("recon_steps_max", "post_recon_steps_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value}.")

    def epochs_and_steps_max(self, phase: str) -> tuple[int, int | None]:
        """``(epochs, steps_max)`` of ``phase``, ``"recon"`` or ``"post_recon"``."""
        if phase == "recon":
            return self.recon_epochs, self.recon_steps_max
        if phase == "post_recon":
            return self.post_recon_epochs, self.post_recon_steps_max
        raise ValueError(f"phase must be 'recon' or 'post_recon', got {phase!r}.")


def tff_split_fn(split: DatasetSplit):
    """TFF's ``ReconstructionModel.build_dataset_split_fn`` with ``split``'s options."""
    import tensorflow_federated as tff

    return tff.learning.models.ReconstructionModel.build_dataset_split_fn(
        **dataclasses.asdict(split)
    )


def split_dataset_fn(split: DatasetSplit):
    """The ``tf.data`` split of TFF's ``build_dataset_split_fn``, without TFF.

    Returns a function from a client's batched dataset to ``(recon, post_recon)``
    datasets. The two are separate iterations of the client's dataset, so a dataset that
    reshuffles on each iteration gives them different orders.
    """

    def dataset_split(dataset: tf.data.Dataset):
        if split.split_dataset:
            recon = dataset.enumerate().filter(lambda i, _: i % 2 == 0).map(lambda _, b: b)
            post = dataset.enumerate().filter(lambda i, _: i % 2 == 1).map(lambda _, b: b)
        else:
            recon = post = dataset
        recon = recon.repeat(split.recon_epochs)
        if split.recon_steps_max is not None:
            recon = recon.take(split.recon_steps_max)
        post = post.repeat(split.post_recon_epochs)
        if split.post_recon_steps_max is not None:
            post = post.take(split.post_recon_steps_max)
        return recon, post

    return dataset_split


def common_ratings(reconstruction: Iterable, scored: Iterable) -> list:
    """The distinct ``scored`` ratings that also reconstructed, in increasing order.

    A rating is known by any id that is unique within one client: its movie id, or its
    position in the client's data.
    """
    return sorted(set(scored) & set(reconstruction))


def shared_ratings(reconstruction: Iterable, scored: Iterable) -> tuple[int, int]:
    """How many distinct ``scored`` ratings also reconstructed (:func:`common_ratings`),
    and how many distinct ratings were scored."""
    scored = set(scored)
    return len(common_ratings(reconstruction, scored)), len(scored)


def movie_ids(dataset: tf.data.Dataset) -> list[int]:
    """The movie ids ``x`` of every example of ``dataset``, in the order it yields them."""
    return [int(x) for batch in dataset for x in np.ravel(batch["x"])]


def split_overlap(client_datasets: Sequence[tf.data.Dataset], dataset_split_fn) -> tuple[int, int]:
    """How many scored ratings were also used for reconstruction, summed over clients.

    ``dataset_split_fn`` maps a client's dataset to its (reconstruction, post-reconstruction)
    datasets, as TFF's ``ReconstructionModel.build_dataset_split_fn`` does. Within one client
    every movie is rated once, so a rating is known by its movie id. Returns the shared count
    and the number of scored ratings.
    """
    shared = total = 0
    for dataset in client_datasets:
        reconstruction, scored = dataset_split_fn(dataset)
        client_shared, client_total = shared_ratings(movie_ids(reconstruction), movie_ids(scored))
        shared, total = shared + client_shared, total + client_total
    return shared, total
