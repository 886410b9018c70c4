"""User-level differential privacy for FedRecon: TFF's aggregators, accounting, trade-off.

The mechanism is TFF's ``tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed``
(TensorFlow Privacy's ``GaussianSumQuery`` inside a ``NormalizedQuery``): every client's
item-matrix delta is clipped to L2 norm ``clip`` (``tf.clip_by_global_norm``), the clipped
deltas are summed, Gaussian noise of std ``noise_multiplier * clip`` is added to every
coordinate of the sum, and the result is divided by the *expected* ``clients_per_round``
(not by the number that came). Clients are weighted equally
(``ClientWeighting.UNIFORM``: an unweighted aggregator needs it). The simulator does the
same with ``FedReconSimulator(dp_clip=..., dp_noise_multiplier=...)``.

(``tff.learning.dp_aggregator`` is the same noise with *adaptive* clipping and zeroing on
top; the fixed clip is used here so that the simulator can match it exactly.)

One client is one user, so the guarantee is user-level: :func:`epsilon` is the
``(epsilon, delta)`` of the whole training, from ``dp_accounting``'s RDP accountant for
``num_rounds`` rounds of the Gaussian mechanism on a sample of ``clients_per_round`` of
``num_users`` users (Poisson sampling at rate ``q = clients_per_round / num_users``, the
usual analysis; ``sampling="fixed"`` accounts for a fixed-size sample instead).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from tutorial_utils import clients, runtime, training
from tutorial_utils import simulator as fedrecon
from tutorial_utils.batches import PackedClients, batches_from_datasets
from tutorial_utils.config import FedReconRun

SAMPLING = ("poisson", "fixed")


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


def epsilon(
    noise_multiplier: float,
    clients_per_round: int,
    num_users: int,
    num_rounds: int,
    *,
    delta: float | None = None,
    sampling: str = "poisson",
) -> float:
    """The epsilon of ``num_rounds`` DP rounds (RDP accountant), at ``delta`` (default
    ``1 / num_users``). Infinite without noise."""
    import dp_accounting

    check_settings(
        noise_multiplier=noise_multiplier, clients_per_round=clients_per_round, num_users=num_users
    )
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}.")
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be at least 1, got {num_rounds}.")
    if noise_multiplier == 0:
        return math.inf
    delta = 1 / num_users if delta is None else delta
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling == "poisson":
        accountant = dp_accounting.rdp.RdpAccountant()
        event = dp_accounting.PoissonSampledDpEvent(clients_per_round / num_users, gaussian)
    else:
        relation = dp_accounting.NeighboringRelation.REPLACE_ONE
        accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)
        event = dp_accounting.SampledWithoutReplacementDpEvent(
            num_users, clients_per_round, gaussian
        )
    accountant.compose(event, num_rounds)
    return float(accountant.get_epsilon(delta))


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


# --------------------------------------------------------------------------------------
# TFF's processes
# --------------------------------------------------------------------------------------


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


def recorded_noise_multiplier(state) -> float:
    """The noise multiplier TFF's DP aggregator records in a training state (its DP event)."""
    from tensorflow_federated.python.aggregators import differential_privacy

    return float(
        differential_privacy.extract_dp_event_from_state(state.aggregator).noise_multiplier
    )


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
    import tensorflow as tf
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


def one_round_both_ways(
    rating_clients: clients.RatingClients,
    client_ids: Sequence[int],
    run: FedReconRun,
    num_items: int,
    *,
    aggregator: str = "dp",
    clip: float = 1.0,
    noise_multiplier: float = 0.0,
    seed: int = 0,
    user_init: float = 0.01,
) -> dict[str, np.ndarray]:
    """One round from the same item matrix, on the same clients and batches, by TFF and
    by the simulator (constant user initializer ``user_init`` in both).

    ``aggregator`` is ``"dp"`` (TFF: :func:`build_dp_process` with ``noise_multiplier``;
    simulator: the same clip, no noise, so that their difference is TFF's noise) or
    ``"secure"`` (TFF: :func:`build_secure_process` in :func:`secure_sum_context`;
    simulator: its plain weighted mean). Returns ``before``, ``tff`` and ``simulator``.
    """
    import tensorflow as tf
    import tensorflow_federated as tff

    from tutorial_utils import model, splits

    if aggregator not in ("dp", "secure"):
        raise ValueError(f"aggregator must be 'dp' or 'secure', got {aggregator!r}.")
    model_fn = model.reconstruction_model_fn(
        num_items,
        run.num_latent_factors,
        user_initializer=tf.keras.initializers.Constant(user_init),
    )
    split_fn = splits.tff_split_fn(run.train_split)
    rng = np.random.default_rng(seed)
    before = fedrecon.initial_item_matrix(run, num_items, rng, fedrecon.UNIFORM_INIT_RANGE)
    dp_options = {}
    with contextlib.ExitStack() as stack:
        if aggregator == "dp":
            process = build_dp_process(
                model_fn,
                run,
                clip=clip,
                noise_multiplier=noise_multiplier,
                dataset_split_fn=split_fn,
            )
            dp_options = {"dp_clip": clip}
        else:
            stack.enter_context(secure_sum_context())
            process = build_secure_process(model_fn, run, split_fn)
        state = process.set_model_weights(
            process.initialize(), tff.learning.models.ModelWeights([before], [])
        )
        state, _ = process.next(state, rating_clients.create_tf_datasets(client_ids))
        after_tff = np.asarray(process.get_model_weights(state).trainable[0])
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
    return {"before": before, "tff": after_tff, "simulator": simulator.item_matrix}


# --------------------------------------------------------------------------------------
# The trade-off, with the simulator
# --------------------------------------------------------------------------------------


def privacy_tradeoff(
    run: FedReconRun,
    packed: PackedClients,
    train_ids: Sequence[int],
    test_ids: Sequence[int],
    num_items: int,
    *,
    clip: float,
    target_epsilons: Sequence[float],
    seed: int = 42,
    progress: bool = True,
) -> pd.DataFrame:
    """Trains ``run`` once without DP, once clipped without noise, and once per target
    epsilon (noise from :func:`noise_multiplier_for`, Poisson accounting, delta = 1 /
    training users), all on the same rounds' clients; scores the test users.

    One row per run: ``setting``, ``target_epsilon``, ``noise_multiplier``, ``epsilon``
    (reached), ``test_rmse``, ``test_accuracy`` and ``seconds``.
    """
    num_users = len(train_ids)
    check_settings(clip=clip, clients_per_round=run.clients_per_round, num_users=num_users)
    settings = [("no DP", math.inf, None), ("clipping only", math.inf, 0.0)]
    for target in target_epsilons:
        z = noise_multiplier_for(target, run.clients_per_round, num_users, run.num_rounds)
        settings.append((f"epsilon <= {target:g}", target, z))
    rows = []
    for name, target, z in settings:
        start = time.monotonic()
        dp = {} if z is None else {"dp_clip": clip, "dp_noise_multiplier": z}
        simulator = fedrecon.FedReconSimulator(run, num_items, seed=seed, **dp)
        sampler = clients.ClientSampler(train_ids, run.clients_per_round, seed=seed)
        fedrecon.train(simulator, packed, sampler, run.num_rounds, progress=progress, desc=name)
        scores = simulator.evaluate(packed, test_ids, reshuffle_each_pass=False, seed=seed)
        reached = (
            math.inf if not z else epsilon(z, run.clients_per_round, num_users, run.num_rounds)
        )
        rows.append(
            {
                "setting": name,
                "target_epsilon": target,
                "noise_multiplier": z if z is not None else np.nan,
                "epsilon": reached,
                "test_rmse": scores["rmse"],
                "test_accuracy": scores["rating_accuracy"],
                "seconds": time.monotonic() - start,
            }
        )
    return pd.DataFrame(rows).set_index("setting")
