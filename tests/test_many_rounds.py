"""Many rounds in one compiled program give the rounds of ``run_round``, one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from tutorial_utils import clients, config, many_rounds, splits
from tutorial_utils import simulator as sim
from tutorial_utils.batches import PackedClients, RoundBatches, round_inputs

NUM_USERS, NUM_ITEMS = 30, 40
SPLIT = splits.DatasetSplit(recon_epochs=2, recon_steps_max=3, post_recon_steps_max=2)


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


def test_round_inputs_of_many_rounds_are_each_rounds_own(packed):
    lists = client_lists(3)
    rng = np.random.default_rng(4)
    rounds = [packed.round_batches(ids, SPLIT, 4, rng) for ids in lists]
    joined = RoundBatches(
        *(
            type(rounds[0].recon)(
                *(
                    np.concatenate(
                        [
                            np.pad(
                                getattr(r, stage)[f],
                                [(0, 0), (0, width - getattr(r, stage)[f].shape[1]), (0, 0)],
                            )
                            for r in rounds
                        ]
                    )
                    for f in range(3)
                )
            )
            for stage, width in (
                ("recon", max(r.recon.items.shape[1] for r in rounds)),
                ("post_recon", max(r.post_recon.items.shape[1] for r in rounds)),
            )
        )
    )
    stacked = round_inputs(joined, NUM_ITEMS, [len(ids) for ids in lists])
    assert stacked.table_items.shape[0] == len(lists)
    for r, batches in enumerate(rounds):
        alone = round_inputs(batches, NUM_ITEMS)
        for name in ("recon", "post_recon"):
            mask = getattr(alone, f"{name}_mask")
            clients_, steps, _ = mask.shape
            got_mask = getattr(stacked, f"{name}_mask")[r]
            np.testing.assert_array_equal(got_mask[:clients_, :steps], mask)
            assert got_mask[clients_:].sum() == 0 and got_mask[:, steps:].sum() == 0
            rows = getattr(alone, f"{name}_rows")[mask > 0]
            got_rows = getattr(stacked, f"{name}_rows")[r][:clients_, :steps][mask > 0]
            # The same (client, item) of every example, in the round's own table.
            np.testing.assert_array_equal(stacked.table_items[r][got_rows], alone.table_items[rows])
            np.testing.assert_array_equal(
                stacked.table_clients[r][got_rows], alone.table_clients[rows]
            )
    with pytest.raises(ValueError, match="round_sizes"):
        round_inputs(joined, NUM_ITEMS, [1, 2])


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
