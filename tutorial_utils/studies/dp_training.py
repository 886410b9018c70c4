"""User-level differential privacy for FedRecon: TFF's aggregators, accounting, trade-off.

The mechanism is TFF's ``tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed``
(TensorFlow Privacy's ``GaussianSumQuery`` in a ``NormalizedQuery``): every client's
item-matrix delta is clipped to L2 norm ``clip`` (``tf.clip_by_global_norm``), Gaussian
noise of std ``noise_multiplier * clip`` is added to every coordinate of their sum, and the
result is divided by the *expected* ``clients_per_round`` (not by the number that came),
clients weighted equally (``ClientWeighting.UNIFORM``). The simulator does the same with
``FedReconSimulator(dp_clip=..., dp_noise_multiplier=...)``. (``tff.learning.dp_aggregator``
adds adaptive clipping and zeroing; the fixed clip lets the simulator match TFF exactly.)

Accounting
----------
One client is one user, so the guarantee is user-level (McMahan et al. 2018,
"Learning Differentially Private Recurrent Language Models"). :func:`epsilon` is the
``(epsilon, delta)`` of a whole training, for ``num_rounds`` rounds of the Gaussian
mechanism on a sample of the ``num_users`` users, by a ``dp_accounting`` accountant:

- ``"rdp"`` (default): Rényi DP (Mironov 2017; Mironov, Talwar and Zhang 2019), composed
  then converted to ``(epsilon, delta)``: an *upper bound*, loose by that conversion.
- ``"pld"``: privacy loss distributions (Sommer, Meiser and Mohammadi 2019; Koskela, Jälkö
  and Honkela 2020), discretized at :data:`PLD_DISCRETIZATION`: nearly tight; Poisson only.

It must describe the training that ran:

- ``sampling="poisson"``: each user joins a round with probability ``q = clients_per_round
  / num_users`` (:class:`PoissonSampler`); add-or-remove neighbours, sensitivity ``clip``:
  ``PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))``, the analysis of McMahan
  et al. 2018 (whose estimator divides by the *expected* number of clients, as TFF's).
- ``sampling="fixed"``: ``clients_per_round`` users without replacement
  (``clients.ClientSampler``). ``dp_accounting`` has only replace-one neighbours for it
  (Wang, Balle and Kasiviswanathan 2019), sensitivity ``2 * clip``, so the event is
  ``SampledWithoutReplacementDpEvent(n, m, GaussianDpEvent(noise_multiplier / 2))``: an
  upper bound under another relation, not comparable with the Poisson figure.
- ``delta``: :data:`DELTA` = 1e-6, well below ``1 / n`` (publishing one random user's
  data whole is ``(0, 1 / n)``-DP); :func:`epsilon` refuses ``delta >= 1 / n``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tutorial_utils import clients, training
from tutorial_utils.config import FedReconRun, PrivacyConfig
from tutorial_utils.plumbing import runtime
from tutorial_utils.simulation import simulator as fedrecon
from tutorial_utils.simulation.batches import PackedClients, batches_from_datasets

SAMPLING = ("poisson", "fixed")
ACCOUNTANTS = ("rdp", "pld")
PLD_DISCRETIZATION = 1e-4  # value_discretization_interval of the PLD accountant
DELTA = 1e-6  # well below 1 / n for the few thousand users of MovieLens 1M


def check_settings(
    *,
    noise_multiplier: float | None = None,
    clip: float | None = None,
    clients_per_round: int | None = None,
    num_users: int | None = None,
) -> None:
    """Raises a ValueError naming the first bad setting among those given."""
    if noise_multiplier is not None and not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}.")
    if clients_per_round is not None and clients_per_round < 1:
        raise ValueError(f"clients_per_round must be at least 1, got {clients_per_round}.")
    if num_users is not None and clients_per_round is not None and clients_per_round > num_users:
        raise ValueError(
            f"clients_per_round ({clients_per_round}) cannot exceed the number of "
            f"users ({num_users})."
        )


class PoissonSampler:
    """Poisson sampling: each round, every user joins independently with probability
    ``clients_per_round / len(client_ids)`` (so rounds have ``clients_per_round`` clients
    on average, sometimes more, sometimes fewer, possibly none). Seeded; a drop-in for
    ``clients.ClientSampler`` in ``simulator.train`` and ``training.train``."""

    def __init__(self, client_ids: Sequence[int], clients_per_round: int, seed: int = 42):
        check_settings(clients_per_round=clients_per_round, num_users=len(client_ids))
        self.client_ids = np.asarray(client_ids)
        self.clients_per_round = clients_per_round
        self.rate = clients_per_round / len(self.client_ids)
        self._rng = np.random.default_rng(seed)

    def sample(self) -> list[int]:
        """The client ids of the next round."""
        return self.client_ids[self._rng.random(len(self.client_ids)) < self.rate].tolist()


def sampled_event(gaussian, clients_per_round: int, num_users: int, sampling: str = "poisson"):
    """One round's ``dp_accounting`` event: the Gaussian mechanism ``gaussian`` (a
    ``GaussianDpEvent`` whose noise multiplier is the noise std over ``clip``, as TFF
    records it) on the round's sample of users, and the accountant's neighbouring relation.

    Poisson: add-or-remove neighbours, sensitivity ``clip``. Fixed-size: replace-one
    neighbours, sensitivity ``2 * clip``, hence the halved noise multiplier."""
    import dp_accounting

    check_settings(clients_per_round=clients_per_round, num_users=num_users)
    if sampling == "poisson":
        event = dp_accounting.PoissonSampledDpEvent(clients_per_round / num_users, gaussian)
        return event, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    if sampling == "fixed":
        halved = dp_accounting.GaussianDpEvent(gaussian.noise_multiplier / 2)
        event = dp_accounting.SampledWithoutReplacementDpEvent(num_users, clients_per_round, halved)
        return event, dp_accounting.NeighboringRelation.REPLACE_ONE
    raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}.")


def _accountant(kind: str, relation):
    """A fresh ``dp_accounting`` accountant of ``kind`` (see :data:`ACCOUNTANTS`)."""
    import dp_accounting

    if kind == "rdp":
        return dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
    if kind == "pld":
        if relation != dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE:
            raise ValueError("the PLD accounting here is for Poisson sampling only.")
        return dp_accounting.pld.PLDAccountant(
            neighboring_relation=relation, value_discretization_interval=PLD_DISCRETIZATION
        )
    raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {kind!r}.")


def epsilon_of_rounds(
    gaussians: Sequence,
    clients_per_round: int,
    num_users: int,
    *,
    delta: float = DELTA,
    sampling: str = "poisson",
    accountant: str = "rdp",
) -> float:
    """The epsilon at ``delta`` of rounds whose Gaussian mechanisms are ``gaussians``
    (one ``GaussianDpEvent`` a round, e.g. those TFF's DP aggregator records), each on a
    sample of ``clients_per_round`` (expected, for Poisson) of ``num_users`` users, by
    ``accountant`` (``"rdp"``: an upper bound; ``"pld"``: nearly tight)."""
    if not 0 < delta < 1 / num_users:
        raise ValueError(f"delta must be in (0, 1 / num_users = {1 / num_users:.3g}), got {delta}.")
    if not gaussians:
        raise ValueError("gaussians must hold at least one round.")
    if any(g.noise_multiplier == 0 for g in gaussians):
        return math.inf
    relation = sampled_event(gaussians[0], clients_per_round, num_users, sampling)[1]
    counter = _accountant(accountant, relation)
    for gaussian, run in itertools.groupby(gaussians):  # equal rounds composed at once
        event = sampled_event(gaussian, clients_per_round, num_users, sampling)[0]
        counter.compose(event, len(list(run)))
    return float(counter.get_epsilon(delta))


def epsilon(
    noise_multiplier: float,
    clients_per_round: int,
    num_users: int,
    num_rounds: int,
    *,
    delta: float = DELTA,
    sampling: str = "poisson",
    accountant: str = "rdp",
) -> float:
    """The epsilon at ``delta`` of ``num_rounds`` rounds of the Gaussian mechanism with
    ``noise_multiplier`` (noise std over ``clip``) on samples drawn by ``sampling``,
    counted by ``accountant`` (see the module's docstring: ``"rdp"`` gives an upper bound,
    ``"pld"`` a nearly tight value, Poisson only). Infinite without noise."""
    import dp_accounting

    check_settings(
        noise_multiplier=noise_multiplier, clients_per_round=clients_per_round, num_users=num_users
    )
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}.")
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be at least 1, got {num_rounds}.")
    if not 0 < delta < 1 / num_users:
        raise ValueError(f"delta must be in (0, 1 / num_users = {1 / num_users:.3g}), got {delta}.")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}.")
    if noise_multiplier == 0:
        return math.inf
    event, relation = sampled_event(
        dp_accounting.GaussianDpEvent(noise_multiplier), clients_per_round, num_users, sampling
    )
    counter = _accountant(accountant, relation)
    counter.compose(event, num_rounds)
    return float(counter.get_epsilon(delta))


def noise_multiplier_for(
    target_epsilon: float,
    clients_per_round: int,
    num_users: int,
    num_rounds: int,
    *,
    tolerance: float = 1e-3,
    **accounting,
) -> float:
    """The smallest noise multiplier (within ``tolerance``) whose :func:`epsilon` is at most
    ``target_epsilon``, by bisection (epsilon falls as the noise grows)."""
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be positive, got {target_epsilon}.")
    if math.isinf(target_epsilon):
        return 0.0

    def eps(z):
        return epsilon(z, clients_per_round, num_users, num_rounds, **accounting)

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, 2 * high
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (middle, high) if eps(middle) > target_epsilon else (low, middle)
    return high


# TFF's processes -----------------------------------------------------------------------


def build_dp_process(
    model_fn: Callable,
    run: FedReconRun,
    *,
    clip: float,
    noise_multiplier: float,
    dataset_split_fn: Callable | None = None,
):
    """FedRecon with TFF's fixed-clip Gaussian aggregator, normalized by
    ``run.clients_per_round``, and uniform client weights."""
    import tensorflow_federated as tff

    check_settings(noise_multiplier=noise_multiplier, clip=clip)
    factory = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=noise_multiplier, clients_per_round=run.clients_per_round, clip=clip
    )
    return training.build_training_process(
        model_fn,
        run,
        dataset_split_fn,
        client_weighting=tff.learning.ClientWeighting.UNIFORM,
        model_aggregator_factory=factory,
    )


def recorded_event(state):
    """The ``dp_accounting`` event TFF's DP aggregator recorded in a training state after a
    round: a ``GaussianDpEvent`` whose noise multiplier is the noise std over the clip.
    It says nothing of how the round's clients were sampled: :func:`epsilon_of_rounds`
    adds that."""
    from tensorflow_federated.python.aggregators import differential_privacy

    return differential_privacy.extract_dp_event_from_state(state.aggregator)


def recorded_noise_multiplier(state) -> float:
    """The noise multiplier of :func:`recorded_event`."""
    return float(recorded_event(state).noise_multiplier)


def build_secure_process(model_fn: Callable, run: FedReconRun, dataset_split_fn=None):
    """FedRecon whose example-weighted mean goes through TFF's secure sum
    (``tff.learning.secure_aggregator``, without its extra clipping and zeroing): run it
    inside :func:`secure_sum_context`."""
    import tensorflow_federated as tff

    factory = tff.learning.secure_aggregator(zeroing=False, clipping=False, weighted=True)
    return training.build_training_process(
        model_fn, run, dataset_split_fn, model_aggregator_factory=factory
    )


@contextlib.contextmanager
def secure_sum_context():
    """TFF's context on this package's worker, with the secure intrinsics simulated.

    TFF's C++ worker has no secure-sum protocol; TFF's test compiler
    (``backends.test.compiler.replace_secure_intrinsics_with_bodies``) replaces every
    ``federated_secure_sum*`` by a plain sum with the same bounds checks, computed in
    this one process. Nothing is encrypted: it computes what the server would receive.
    """
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.backends.native import compiler as native
    from tensorflow_federated.python.core.backends.test import compiler as test_compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )

    worker = runtime.start()
    if worker is None:
        raise RuntimeError("secure_sum_context cannot run inside another installed context.")
    connection = runtime.connect(f"127.0.0.1:{worker.port}", worker=worker)

    def compile_fn(computation):
        computation = test_compiler.replace_secure_intrinsics_with_bodies(computation)
        return native.desugar_and_transform_to_native(computation)

    context = tff.framework.SyncExecutionContext(
        executor_fn=connection.executor_factory(),
        compiler_fn=compile_fn,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    logger = tf.get_logger()  # TFF's secure-sum bodies log unused asserts as errors
    level = logger.level
    logger.setLevel("CRITICAL")
    try:
        with runtime.installed(context):
            yield context
    finally:
        logger.setLevel(level)
        connection.close()


@dataclasses.dataclass(frozen=True)
class DPAggregation:
    """TFF's DP aggregator: updates clipped to ``clip``, noise ``noise_multiplier * clip``."""

    clip: float
    noise_multiplier: float = 0.0


def one_round_both_ways(
    rating_clients: clients.RatingClients,
    client_ids: Sequence[int],
    run: FedReconRun,
    num_items: int,
    aggregator: DPAggregation | str,
    *,
    seed: int = 0,
    user_init: float = 0.01,
) -> dict[str, np.ndarray]:
    """One round from the same item matrix, on the same clients and batches, by TFF and
    by the simulator (constant user initializer ``user_init`` in both).

    ``aggregator`` is a :class:`DPAggregation` (TFF: :func:`build_dp_process`; simulator:
    the same clip, no noise, so that their difference is TFF's noise) or ``"secure"``
    (TFF: :func:`build_secure_process` in :func:`secure_sum_context`; simulator: its plain
    weighted mean). Returns ``before``, ``tff`` and ``simulator`` (item matrices), and with
    DP also ``dp_event``: TFF's :func:`recorded_event`.
    """
    import tensorflow_federated as tff

    from tutorial_utils import model  # the Keras model, for TFF's runs only

    dp = isinstance(aggregator, DPAggregation)
    if not dp and aggregator != "secure":
        raise ValueError(f"aggregator must be a DPAggregation or 'secure', got {aggregator!r}.")
    model_fn = model.reconstruction_model_fn(
        num_items,
        run.num_latent_factors,
        user_initializer=tf.keras.initializers.Constant(user_init),
    )
    split_fn = clients.tff_split_fn(run.train_split)
    rng = np.random.default_rng(seed)
    before = fedrecon.initial_item_matrix(run, num_items, rng, fedrecon.UNIFORM_INIT_RANGE)
    dp_options = {}
    with contextlib.ExitStack() as stack:
        if dp:
            process = build_dp_process(
                model_fn,
                run,
                clip=aggregator.clip,
                noise_multiplier=aggregator.noise_multiplier,
                dataset_split_fn=split_fn,
            )
            dp_options = {"dp_clip": aggregator.clip}
        else:
            stack.enter_context(secure_sum_context())
            process = build_secure_process(model_fn, run, split_fn)
        state = process.set_model_weights(
            process.initialize(), tff.learning.models.ModelWeights([before], [])
        )
        state, _ = process.next(state, rating_clients.create_tf_datasets(client_ids))
        after_tff = np.asarray(process.get_model_weights(state).trainable[0])
        recorded = {"dp_event": recorded_event(state)} if dp else {}
    simulator = fedrecon.FedReconSimulator(
        run, num_items, item_matrix=before, user_init_range=(user_init, user_init), **dp_options
    )
    simulator.run_round_batches(
        batches_from_datasets(
            rating_clients.create_tf_datasets(client_ids),
            run.train_split,
            rating_clients.batch_size,
        )
    )
    return {"before": before, "tff": after_tff, "simulator": simulator.item_matrix, **recorded}


# The trade-off, with the simulator -----------------------------------------------------

NO_CLIP = 1e6  # a clip far above the norm of any update: uniform weights, nothing clipped


class _SeparateNoiseSimulator(fedrecon.FedReconSimulator):
    """The simulator with its DP noise from a generator of its own (``noise_seed``): the
    noise leaves the run's other draws (shuffles, initial user embeddings) unchanged."""

    def __init__(self, *args, noise_seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._noise_rng = np.random.default_rng(noise_seed)

    def training_arguments(self, inputs, users):
        shared, self.rng = self.rng, self._noise_rng  # the noise is drawn from self.rng
        try:
            return super().training_arguments(inputs, users)
        finally:
            self.rng = shared


def privacy_tradeoff(
    settings: PrivacyConfig,
    packed: PackedClients,
    train_ids: Sequence[int],
    test_ids: Sequence[int],
    num_items: int,
    *,
    steps: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Trains ``settings.run`` with the simulator from no DP to DP and scores the test
    users. Rows (each changes what it names from the row before): ``no DP`` (the paper's:
    fixed-size samples, example-weighted mean); ``Poisson sampling`` (:class:`PoissonSampler`:
    other clients, a varying number); ``uniform weights`` (weights 1, *and* the sum divided
    by the expected ``clients_per_round``, not the sum of weights; clip :data:`NO_CLIP`);
    ``clipping only`` (to ``settings.clip``); ``epsilon <= target`` (plus the noise that
    reaches each of ``settings.target_epsilons`` at ``settings.delta`` over the rounds: RDP,
    Poisson). ``steps=False``: only the last two kinds. All runs start from the same model
    and draw shuffles and user embeddings from one generator (``settings.seed``), the
    Poisson rows the same clients; the noise has its own (seed ``settings.seed + 1``): the
    noisy rows differ from ``clipping only`` by the noise alone.

    Columns: ``sampling``, ``weights``, ``clip``, ``noise_multiplier``; ``epsilon`` (RDP
    upper bound, Poisson, add-or-remove: what the noise was chosen for), ``epsilon_pld``
    (PLD, nearly tight); RDP bounds *not* comparable with ``epsilon``, for sensitivity
    ``2 * clip``: ``epsilon_poisson_2clip`` (Poisson, add-or-remove, ``z / 2``) and
    ``epsilon_fixed_size_bound`` (fixed-size, replace-one); ``test_rmse``,
    ``test_accuracy``, ``seconds``.
    """
    run, clip, delta, seed = settings.run, settings.clip, settings.delta, settings.seed
    num_users = len(train_ids)
    m, rounds = run.clients_per_round, run.num_rounds
    check_settings(clip=clip, clients_per_round=m, num_users=num_users)
    variants = [
        ("no DP", "fixed", None, None),
        ("Poisson sampling", "poisson", None, None),
        ("uniform weights", "poisson", NO_CLIP, 0.0),
    ]
    variants = variants if steps else []
    variants.append(("clipping only", "poisson", clip, 0.0))
    for target in settings.target_epsilons:
        z = noise_multiplier_for(target, m, num_users, rounds, delta=delta)
        variants.append((f"epsilon <= {target:g}", "poisson", clip, z))
    rows = []
    for name, sampling, row_clip, z in variants:
        start = time.monotonic()
        dp = {} if row_clip is None else {"dp_clip": row_clip, "dp_noise_multiplier": z}
        simulator = _SeparateNoiseSimulator(run, num_items, seed=seed, noise_seed=seed + 1, **dp)
        if sampling == "fixed":
            sampler = clients.ClientSampler(train_ids, m, seed=seed)
        else:
            sampler = PoissonSampler(train_ids, m, seed=seed)
        fedrecon.train(simulator, packed, sampler, rounds, progress=progress, desc=name)
        scores = simulator.evaluate(packed, test_ids, reshuffle_each_pass=False, seed=seed)

        def reached(z=z, **accounting):
            if not z:
                return math.inf
            return epsilon(z, m, num_users, rounds, delta=delta, **accounting)

        rows.append(
            {
                "setting": name,
                "sampling": sampling,
                "weights": "examples" if row_clip is None else "uniform",
                "clip": row_clip if row_clip is not None else np.nan,
                "noise_multiplier": z if z is not None else np.nan,
                "epsilon": reached(),
                "epsilon_pld": reached(accountant="pld"),
                "epsilon_poisson_2clip": reached(z / 2 if z else z),
                "epsilon_fixed_size_bound": reached(sampling="fixed"),
                "test_rmse": scores["rmse"],
                "test_accuracy": scores["rating_accuracy"],
                "seconds": time.monotonic() - start,
            }
        )
    return pd.DataFrame(rows).set_index("setting")
