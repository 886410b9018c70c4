"""FedRecon to play with: one simulated run from a few settings, and a widget panel around it.

:func:`prepare` packs every user's ratings once; :func:`train_once` trains one run on them
with the simulator (:mod:`tutorial_utils.simulation.simulator`) and scores the test users. Both work
without widgets, so a notebook (and its tests) can call them with arguments. :func:`panel`
puts sliders and switches for the run's settings above the learning curves and a table of
the runs so far; every change of a setting trains a new run and redraws.
"""

from __future__ import annotations

import dataclasses
import time

import pandas as pd

from tutorial_utils import clients, plotting
from tutorial_utils.config import FedReconRun, LiveConfig, changes_from
from tutorial_utils.plumbing import settings
from tutorial_utils.simulation import simulator as fedrecon_simulator
from tutorial_utils.simulation.batches import PackedClients

FIGURE_NAME = "08_live_learning_curves"
HALVES = ("disjoint", "shared")


@dataclasses.dataclass(frozen=True)
class LiveData:
    """Every user's ratings packed for the simulator, and the split into train,
    validation and test users."""

    packed: PackedClients
    num_items: int
    train_ids: list[int]
    val_ids: list[int]
    test_ids: list[int]


def prepare(ratings_df: pd.DataFrame, num_items: int, live_settings: LiveConfig) -> LiveData:
    """One client per user of ``ratings_df`` (at most ``live_settings.max_examples_per_user``
    ratings each), split by user with ``live_settings.seed``, packed once for every run."""
    users = clients.user_split(
        ratings_df,
        batch_size=live_settings.run.batch_size,
        max_examples_per_user=live_settings.max_examples_per_user,
        seed=live_settings.seed,
    )
    return LiveData(
        PackedClients.from_rating_clients(users.clients),
        num_items,
        users.train_ids,
        users.val_ids,
        users.test_ids,
    )


@dataclasses.dataclass(frozen=True)
class LiveResult:
    """One run of :func:`train_once`: its settings, learning curves and test scores."""

    run: FedReconRun
    halves: str  # "disjoint" or "shared"
    history: pd.DataFrame  # one row per round; val_* columns where validation was measured
    test: dict  # the test users' loss, rmse, rating_accuracy and num_examples
    seconds: float  # training and scoring, data preparation excluded

    def summary(self) -> dict:
        """One row of the panel's table of runs."""
        return {
            "halves": self.halves,
            "test RMSE": self.test["rmse"],
            "test accuracy": self.test["rating_accuracy"],
            "seconds": self.seconds,
        }


def train_once(
    live_data: LiveData,
    run: FedReconRun,
    *,
    halves: str = "disjoint",
    eval_every: int = 10,
    seed: int = 42,
    progress: bool = False,
) -> LiveResult:
    """Trains ``run`` from scratch with the simulator, then scores the test users.

    ``halves`` says how each client's two stages divide its ratings, in training and in
    scoring: ``"disjoint"`` (one shuffle per round: reconstruction and the stage after it
    never share a rating, as the paper intends) or ``"shared"`` (a new shuffle per pass,
    as TFF's ``tf.data`` pipelines do, so the two halves overlap and a test user is partly
    scored on the ratings that reconstructed them). Validation users are evaluated every
    ``eval_every`` rounds with the same ``seed`` each time, so evaluating leaves the training
    rounds unchanged. ``seed`` draws everything random: a run repeats exactly.
    """
    if halves not in HALVES:
        raise ValueError(f"halves must be one of {', '.join(HALVES)}, got {halves!r}.")
    if eval_every < 1:
        raise ValueError(f"eval_every must be at least 1, got {eval_every}.")
    if run.clients_per_round > len(live_data.train_ids):
        raise ValueError(
            f"clients_per_round is {run.clients_per_round}, but there are only "
            f"{len(live_data.train_ids)} training users."
        )
    reshuffle_each_pass = halves == "shared"
    start = time.monotonic()
    simulator = fedrecon_simulator.FedReconSimulator(
        run, live_data.num_items, seed=seed, reshuffle_each_pass=reshuffle_each_pass
    )
    sampler = clients.ClientSampler(live_data.train_ids, run.clients_per_round, seed=seed)
    history = fedrecon_simulator.train(
        simulator,
        live_data.packed,
        sampler,
        run.num_rounds,
        eval_client_ids=live_data.val_ids,
        eval_every=eval_every,
        progress=progress,
        seed=seed,
    )
    test = simulator.evaluate(live_data.packed, live_data.test_ids, seed=seed)
    return LiveResult(run, halves, history, test, time.monotonic() - start)


def describe(result: LiveResult) -> str:
    """One sentence with a run's test scores and time, e.g. for a notebook to print."""
    return (
        f"{result.run.num_rounds} rounds of {result.run.clients_per_round} clients, "
        f"{result.halves} halves: test RMSE {result.test['rmse']:.3f}, rating accuracy "
        f"{result.test['rating_accuracy']:.3f}, trained and scored in {result.seconds:.1f} s."
    )


def learning_curves(result: LiveResult):
    """The run's learning curves (``plotting.learning_curves``), saved as PNG."""
    return plotting.learning_curves(result.history, name=FIGURE_NAME)


# ---------------------------------------------------------------------------------------
# The widget panel
# ---------------------------------------------------------------------------------------

# The learning rates get log sliders; the step caps, these choices or no cap (None).
_LEARNING_RATES = ("server_lr", "client_lr", "reconstruction_lr")
_STEP_CAPS = (1, 2, 5, 10, 20, 50, 100)


def _widgets_module():
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "The live panel needs ipywidgets (pip install ipywidgets); without it, call "
            "live.train_once(...) with the settings as arguments."
        ) from error
    return ipywidgets


def _controls(widgets, start: FedReconRun, halves: str) -> dict:
    """One widget per setting, named after the FedReconRun field it sets (and ``halves``)."""
    style = {"description_width": "150px"}
    layout = widgets.Layout(width="420px")
    common = {"continuous_update": False, "style": style, "layout": layout}
    controls = {
        name: widgets.FloatLogSlider(
            value=getattr(start, name),
            base=10,
            min=-3,
            max=1,
            step=0.1,
            readout_format=".3g",
            description=name.replace("_", " "),
            **common,
        )
        for name in _LEARNING_RATES
    }
    integer_sliders = {
        "recon_epochs": ("reconstruction epochs", 1, 10, 1),
        "post_recon_epochs": ("post-recon epochs", 1, 10, 1),
        "clients_per_round": ("clients per round", 5, 500, 5),
        "num_rounds": ("rounds", 5, 500, 5),
        "num_latent_factors": ("latent factors", 1, 100, 1),
    }
    for name, (label, low, high, step) in integer_sliders.items():
        controls[name] = widgets.IntSlider(
            value=getattr(start, name),
            min=low,
            max=max(high, getattr(start, name)),
            step=step,
            description=label,
            **common,
        )
    for name, label in (
        ("recon_steps_max", "reconstruction steps"),
        ("post_recon_steps_max", "post-recon steps"),
    ):
        caps = sorted(set(_STEP_CAPS) | {getattr(start, name) or 1})
        controls[name] = widgets.Dropdown(
            options=[("no cap", None), *((f"at most {cap}", cap) for cap in caps)],
            value=getattr(start, name),
            description=label,
            style=style,
            layout=layout,
        )
    controls["halves"] = widgets.ToggleButtons(
        options=list(HALVES), value=halves, description="halves", style=style
    )
    return controls


def figure_png(result: LiveResult) -> bytes:
    """The run's learning curves as PNG bytes, as :func:`learning_curves` saved them."""
    learning_curves(result)
    return (settings.output_dir() / f"{FIGURE_NAME}.png").read_bytes()


def panel(
    live_data: LiveData,
    start: FedReconRun,
    *,
    halves: str = "disjoint",
    eval_every: int = 10,
    seed: int = 42,
    first: LiveResult | None = None,
):
    """A widget panel: the settings of ``start`` as sliders and switches, its learning
    curves, and a table of every run so far. Each change trains a new run with
    :func:`train_once` (same ``eval_every`` and ``seed``) and redraws.

    ``first``, a result of ``start`` already trained, is shown at once instead of being
    trained again. Works in Jupyter, JupyterLab, Voila and Colab (ipywidgets 8).
    """
    widgets = _widgets_module()
    controls = _controls(widgets, start, halves)
    status = widgets.HTML()
    status.add_class("live-status")
    figure = widgets.Image(format="png", layout=widgets.Layout(max_width="900px"))
    table = widgets.HTML()
    table.add_class("live-runs")
    runs: list[dict] = []

    def record(result: LiveResult):
        runs.append(
            {"run": len(runs) + 1, "changes": changes_from(result.run, start), **result.summary()}
        )
        # The figure and the table first: once the status names a run, all of it is shown.
        figure.value = figure_png(result)
        table.value = pd.DataFrame(runs).set_index("run").to_html(float_format=lambda v: f"{v:.3f}")
        status.value = f"<b>Run {len(runs)}</b>: {describe(result)}"

    def retrain(_change=None):
        values = {name: control.value for name, control in controls.items()}
        chosen_halves = values.pop("halves")
        status.value = "Training..."
        try:
            run = dataclasses.replace(start, **values)
            result = train_once(
                live_data, run, halves=chosen_halves, eval_every=eval_every, seed=seed
            )
        except ValueError as error:
            status.value = f"<b>Not trained</b>: {error}"
            return
        record(result)

    for control in controls.values():
        control.observe(retrain, names="value")
    if first is not None and (first.run, first.halves) == (start, halves):
        record(first)
    else:
        retrain()
    box = widgets.VBox([widgets.VBox(list(controls.values())), status, figure, table])
    box.controls, box.runs = controls, runs  # for code that drives the panel (the tests)
    return box
