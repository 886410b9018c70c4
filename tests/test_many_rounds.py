"""Many rounds in one compiled program give the rounds of ``run_round``, one at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import clients, config
from tutorial_utils.simulation import batches, many_rounds
from tutorial_utils.simulation import simulator as sim
from tutorial_utils.simulation.batches import PackedClients, RoundBatches

NUM_USERS, NUM_ITEMS = 30, 40
SPLIT = clients.DatasetSplit(recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2)


@pytest.fixture(scope="module")
def packed() -> PackedClients:
    rng = np.random.default_rng(1)
    counts = rng.integers(3, 40, size=NUM_USERS)
    items = [rng.choice(NUM_ITEMS, size=c, replace=False) for c in counts]
    ratings = [rng.integers(1, 6, size=c).astype(np.float32) for c in counts]
    return PackedClients(range(NUM_USERS), items, ratings)


def client_lists(num_rounds: int, sizes=(6, 4, 9)) -> list[list[int]]:
    rng = np.random.default_rng(2)
    return [
        list(rng.choice(NUM_USERS, size=sizes[r % len(sizes)], replace=False))
        for r in range(num_rounds)
    ]


def one_at_a_time_and_many(packed, rounds_per_program, **options):
    run = config.FedReconRun(num_latent_factors=4, batch_size=3, clients_per_round=6, **options)
    lists = client_lists(7)
    options = {"reshuffle_each_pass": False} if "recon_epochs" in options else {}
    single = sim.FedReconSimulator(run, NUM_ITEMS, seed=3, **options)
    many = sim.FedReconSimulator(run, NUM_ITEMS, seed=3, **options)
    expected = [single.run_round(packed, ids) for ids in lists]
    got = many_rounds.run_rounds(many, packed, lists, rounds_per_program)
    return expected, got, single, many


@pytest.mark.parametrize("rounds_per_program", [1, 3, 50])
@pytest.mark.parametrize(
    "options", [{}, {"recon_epochs": 2, "recon_steps_max": 3, "post_recon_epochs": 2}]
)
def test_many_rounds_give_the_rounds_one_at_a_time(packed, rounds_per_program, options):
    expected, got, single, many = one_at_a_time_and_many(packed, rounds_per_program, **options)
    assert [r["num_examples"] for r in got] == [r["num_examples"] for r in expected]
    for name in ("loss", "rating_accuracy"):
        np.testing.assert_allclose([r[name] for r in got], [r[name] for r in expected], atol=1e-6)
    np.testing.assert_allclose(many.item_matrix, single.item_matrix, atol=1e-6)
    assert not np.allclose(
        many.item_matrix, sim.FedReconSimulator(single.run, NUM_ITEMS, 3).item_matrix
    )
    # The generators are left in the same state: what follows is the same too.
    assert many.rng.random() == single.rng.random()


def test_many_rounds_with_dp_match_one_at_a_time(packed):
    run = config.FedReconRun(num_latent_factors=4, batch_size=3, clients_per_round=6)
    lists = client_lists(4)
    for noise in (0.0, 0.5):
        single = sim.FedReconSimulator(run, NUM_ITEMS, 3, dp_clip=0.01, dp_noise_multiplier=noise)
        many = sim.FedReconSimulator(run, NUM_ITEMS, 3, dp_clip=0.01, dp_noise_multiplier=noise)
        expected = [single.run_round(packed, ids) for ids in lists]
        got = many_rounds.run_rounds(many, packed, lists, 2)
        np.testing.assert_allclose(many.item_matrix, single.item_matrix, atol=1e-6)
        np.testing.assert_allclose(
            [r["loss"] for r in got], [r["loss"] for r in expected], atol=1e-6
        )


def test_run_rounds_refuses_an_empty_program(packed):
    fedrecon = sim.FedReconSimulator(config.FedReconRun(num_latent_factors=4), NUM_ITEMS)
    with pytest.raises(ValueError, match="rounds_per_program"):
        many_rounds.run_rounds(fedrecon, packed, client_lists(2), 0)


def test_keys_then_batches_are_round_batches(packed):
    ids = [3, 1, 7]
    expected = packed.round_batches(ids, SPLIT, 4, np.random.default_rng(5))
    keys = packed.shuffle_keys(3, SPLIT, np.random.default_rng(5))
    got = packed.batches_from_keys(packed.rows(ids), keys, SPLIT, 4)
    for phase_expected, phase_got in zip(expected, got):
        for a, b in zip(phase_expected, phase_got):
            np.testing.assert_array_equal(a, b)


def full_width_batches(packed, rows, keys, split, batch_size, reshuffle_each_pass=True):
    """The batches of ``rows`` written out plainly: each pass's order is an argsort of its
    keys over the table's whole width (the padding's keys above every real one)."""
    recon, post = [], []
    for row, client_keys in zip(rows, keys):
        count = packed.counts[row]
        width = packed.items.shape[1]
        orders = np.argsort(np.where(np.arange(width) < count, client_keys, 2.0), axis=1)
        num_batches = -(-count // batch_size)
        for stage, first_pass, out in (
            ("recon", 0, recon),
            ("post_recon", split.recon_epochs, post),
        ):
            schedule = batches.step_schedule(np.array([num_batches]), split, stage)
            steps = []
            for epoch, batch in zip(schedule.epoch[0][schedule.active[0]], schedule.batch[0]):
                order = orders[first_pass + epoch if reshuffle_each_pass else 0]
                chosen = order[batch * batch_size : min((batch + 1) * batch_size, count)]
                steps.append((packed.items[row, chosen], packed.ratings[row, chosen]))
            out.append(steps)
    return RoundBatches.from_lists(recon, post, batch_size)


@pytest.mark.parametrize("reshuffle_each_pass", [True, False])
def test_batches_are_those_of_sorting_every_pass(packed, reshuffle_each_pass):
    ids = [3, 1, 7, 0, 12]
    rows = packed.rows(ids)
    keys = packed.shuffle_keys(len(ids), SPLIT, np.random.default_rng(5), reshuffle_each_pass)
    got = packed.batches_from_keys(rows, keys, SPLIT, 4, reshuffle_each_pass)
    expected = full_width_batches(packed, rows, keys, SPLIT, 4, reshuffle_each_pass)
    for phase_expected, phase_got in zip(expected, got):
        for a, b in zip(phase_expected, phase_got):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reshuffle_each_pass", [True, False])
def test_training_inputs_hold_each_rounds_batches(packed, reshuffle_each_pass):
    lists = client_lists(6)
    rng = np.random.default_rng(4)
    rows = [packed.rows(ids) for ids in lists]
    keys = [packed.shuffle_keys(len(r), SPLIT, rng, reshuffle_each_pass) for r in rows]
    stacked = packed.training_inputs(
        rows, keys, SPLIT, 4, NUM_ITEMS, reshuffle_each_pass=reshuffle_each_pass, clients_per_pass=7
    )
    assert stacked.table_items.shape[0] >= len(lists)
    for r, (round_rows, round_keys) in enumerate(zip(rows, keys)):
        alone = packed.batches_from_keys(round_rows, round_keys, SPLIT, 4, reshuffle_each_pass)
        scratch = stacked.table_items.shape[1]
        for name, phase in zip(("recon", "post_recon"), alone):
            clients_, steps, _ = phase.mask.shape
            got_mask = getattr(stacked, f"{name}_mask")[r]
            np.testing.assert_array_equal(got_mask[:clients_, :steps], phase.mask)
            assert got_mask[clients_:].sum() == 0 and got_mask[:, steps:].sum() == 0
            got_rows = getattr(stacked, f"{name}_rows")[r]
            assert (got_rows[got_mask == 0] == scratch).all()  # padding: the scratch row
            real = got_rows[:clients_, :steps][phase.mask]
            np.testing.assert_array_equal(stacked.table_items[r][real], phase.items[phase.mask])
            client = np.broadcast_to(np.arange(clients_)[:, None, None], phase.mask.shape)
            np.testing.assert_array_equal(stacked.table_clients[r][real], client[phase.mask])
            ratings = getattr(stacked, f"{name}_ratings")[r][:clients_, :steps]
            np.testing.assert_array_equal(ratings, phase.ratings)
        # The table holds each client's rated items once, and nothing else.
        table = set(zip(stacked.table_clients[r], stacked.table_items[r]))
        expected = {
            (c, i)
            for c, row in enumerate(round_rows)
            for i in packed.items[row, : packed.counts[row]]
        }
        assert table - {(0, 0)} == expected - {(0, 0)}
        assert len(expected) <= scratch


def test_training_inputs_refuse_a_shape_too_small_and_items_out_of_range(packed):
    rows = [packed.rows([0, 1, 2])]
    keys = [packed.shuffle_keys(3, SPLIT, np.random.default_rng(0))]
    shape = packed.training_shape(rows, SPLIT, 4)
    with pytest.raises(ValueError, match="shape of at least"):
        packed.training_inputs(rows, keys, SPLIT, 4, NUM_ITEMS, shape=shape._replace(clients=2))
    with pytest.raises(ValueError, match=r"Item ids must be in \[0, 5\)"):
        packed.training_inputs(rows, keys, SPLIT, 4, 5)


def test_run_round_is_the_round_of_its_batches(packed):
    run = config.FedReconRun(num_latent_factors=4, batch_size=3, clients_per_round=6)
    fast = sim.FedReconSimulator(run, NUM_ITEMS, seed=3)
    plain = sim.FedReconSimulator(run, NUM_ITEMS, seed=3)
    for ids in client_lists(3):
        got = fast.run_round(packed, ids)
        batches_ = packed.round_batches(ids, run.train_split, run.batch_size, plain.rng)
        assert got == plain.run_round_batches(batches_)
    np.testing.assert_array_equal(fast.item_matrix, plain.item_matrix)


@pytest.mark.parametrize("evaluation_seed", [None, 7])
def test_train_gives_the_rounds_one_at_a_time(packed, evaluation_seed):
    """``simulator.train`` runs blocks of rounds in programs; evaluations in between,
    also those that draw from the simulator's generator, see the same state."""
    run = config.FedReconRun(num_latent_factors=4, batch_size=3, clients_per_round=5)
    histories, models = [], []
    for next_rounds in ("many", "one"):
        model = sim.FedReconSimulator(run, NUM_ITEMS, seed=2)
        sampler = clients.ClientSampler(list(range(NUM_USERS)), 5, seed=0)
        options = {"eval_client_ids": [20, 21, 22], "eval_every": 3, "progress": False}
        if next_rounds == "many":
            histories.append(sim.train(model, packed, sampler, 8, seed=evaluation_seed, **options))
        else:  # one round a call, as for any other simulator
            wrapper = type(
                "OneAtATime", (), {"run_round": model.run_round, "evaluate": model.evaluate}
            )()
            histories.append(
                sim.train(wrapper, packed, sampler, 8, seed=evaluation_seed, **options)
            )
        models.append(model)
    pd.testing.assert_frame_equal(histories[0], histories[1])
    assert list(histories[0]["val_loss"].dropna().index) == [3, 6, 8]
    np.testing.assert_array_equal(models[0].item_matrix, models[1].item_matrix)


def test_sampled_rounds_match_through_a_sampler(packed):
    """What the benchmark does: the rounds' clients drawn by a sampler, before running."""
    run = config.FedReconRun(num_latent_factors=4, batch_size=3, clients_per_round=5)
    sampler = clients.ClientSampler(list(range(NUM_USERS)), 5, seed=0)
    lists = [sampler.sample() for _ in range(5)]
    single = sim.FedReconSimulator(run, NUM_ITEMS, seed=1)
    many = sim.FedReconSimulator(run, NUM_ITEMS, seed=1)
    for ids in lists:
        single.run_round(packed, ids)
    many_rounds.run_rounds(many, packed, lists)
    np.testing.assert_allclose(many.item_matrix, single.item_matrix, atol=1e-6)
