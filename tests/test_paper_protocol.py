"""The paper's data choices (``tutorial_utils.simulation.paper_protocol``), on a tiny
ratings table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tutorial_utils import config
from tutorial_utils.clients import DatasetSplit
from tutorial_utils.simulation import paper_protocol
from tutorial_utils.simulation.batches import PackedClients

NUM_USERS, NUM_ITEMS = 30, 60


@pytest.fixture
def ratings_df() -> pd.DataFrame:
    """30 users with 12 to 40 ratings each, users interleaved as in a file."""
    rng = np.random.default_rng(1)
    rows = [
        (user, movie, int(rng.integers(1, 6)))
        for user in range(NUM_USERS)
        for movie in rng.choice(NUM_ITEMS, rng.integers(12, 41), replace=False)
    ]
    frame = pd.DataFrame(rows, columns=["UserID", "MovieID", "Rating"])
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


def test_seeded_order_is_the_papers_shuffle_of_a_list():
    """``np.random.seed(42); np.random.shuffle(examples)`` on a list of tuples."""
    for count in (1, 7, 300, 1000):
        examples = [(i, 2 * i) for i in range(count)]
        np.random.seed(42)
        np.random.shuffle(examples)
        assert [e[0] for e in examples] == paper_protocol.seeded_order(count).tolist()


def test_paper_clients_keep_the_first_ratings_of_the_seeded_order(ratings_df):
    clients = paper_protocol.paper_clients(ratings_df, 10)
    assert isinstance(clients, paper_protocol.FixedOrderClients)
    for user in (0, 7, 29):
        mine = ratings_df[ratings_df["UserID"] == user]  # in file order
        kept = paper_protocol.seeded_order(len(mine))[:10]
        row = clients.rows([user])[0]
        assert clients.items[row, :10].tolist() == mine["MovieID"].to_numpy()[kept].tolist()
        assert clients.ratings[row, :10].tolist() == mine["Rating"].to_numpy()[kept].tolist()
    tutorial = paper_protocol.paper_clients(ratings_df, 10, seeded_shuffle=False, fixed_order=False)
    assert type(tutorial) is PackedClients
    first = ratings_df[ratings_df["UserID"] == 3]["MovieID"].to_numpy()[:10]
    assert tutorial.items[tutorial.rows([3])[0], :10].tolist() == first.tolist()


def test_every_pass_of_every_round_reads_the_stored_order(ratings_df):
    clients = paper_protocol.paper_clients(ratings_df, 40)
    split = DatasetSplit(recon_epochs=3, recon_steps_max=None)
    ids = [0, 1, 2]
    rounds = [
        clients.round_batches(ids, split, 5, np.random.default_rng(seed), True) for seed in (0, 1)
    ]
    np.testing.assert_array_equal(rounds[0].recon.items, rounds[1].recon.items)
    for c, user in enumerate(ids):
        row = clients.rows([user])[0]
        stored = clients.items[row, : clients.counts[row]]
        batches = [stored[i : i + 5] for i in range(0, len(stored), 5)]
        recon = rounds[0].recon
        got = [recon.items[c, t][recon.mask[c, t]].tolist() for t in range(recon.mask.shape[1])]
        expected = [b.tolist() for b in batches[0::2]] * 3  # the even batches, every pass
        assert [g for g in got if g] == expected
        post = rounds[0].post_recon
        odd = [post.items[c, t][post.mask[c, t]].tolist() for t in range(post.mask.shape[1])]
        assert [g for g in odd if g] == [b.tolist() for b in batches[1::2]]


def test_users_split_and_test_sample(ratings_df):
    clients = paper_protocol.paper_clients(ratings_df, 300)
    train, val, test = paper_protocol.split_users(clients.client_ids)
    ids = list(range(NUM_USERS))
    np.random.seed(42)
    np.random.shuffle(ids)  # split_tf_datasets' permutation of the user list
    assert (train, val, test) == (ids[:24], ids[24:27], ids[27:])
    assert paper_protocol.test_sample(list(range(500)), seed=3) == paper_protocol.test_sample(
        list(range(500)), seed=3
    )
    sample = paper_protocol.test_sample(list(range(500)), seed=3)
    assert len(sample) == 100 == len(set(sample)) and set(sample) <= set(range(500))
    assert paper_protocol.test_sample([5, 6], seed=0) == [5, 6]


def test_deviations_train_every_variant_and_the_first_is_the_protocol(ratings_df):
    protocol = dataclasses.replace(
        config.SMOKE_PROTOCOL,
        run=dataclasses.replace(
            config.SMOKE_PROTOCOL.run, num_latent_factors=4, clients_per_round=5, num_rounds=4
        ),
    )
    table = paper_protocol.deviations(protocol, ratings_df, NUM_ITEMS, seed=0)
    assert table.index.tolist() == list(paper_protocol.VARIANTS)
    assert np.isfinite(table.to_numpy()).all()
    # The first row is the protocol as notebook 05 runs it (validation does not change it).
    clients = paper_protocol.paper_clients(ratings_df, protocol.max_examples_per_user)
    train_ids, val_ids, test_ids = paper_protocol.split_users(clients.client_ids, protocol.seed)
    fedrecon = paper_protocol.new_simulator(protocol, NUM_ITEMS)
    paper_protocol.train(protocol, fedrecon, clients, train_ids, val_ids=val_ids)
    scores = paper_protocol.test_scores(fedrecon, clients, test_ids, seed=0)
    first = table.iloc[0]
    assert first["sampled rmse"] == pytest.approx(scores["rmse"].iloc[0], rel=1e-6)
    assert first["all accuracy"] == pytest.approx(scores["rating_accuracy"].iloc[1])
    assert scores["users"].tolist() == [len(test_ids), len(test_ids)]  # fewer than 100 here


def test_sample_spread_scores_one_sample_per_seed(ratings_df):
    clients = paper_protocol.paper_clients(ratings_df, 300)
    run = dataclasses.replace(config.SMOKE_PROTOCOL.run, num_latent_factors=4)
    fedrecon = paper_protocol.new_simulator(
        dataclasses.replace(config.SMOKE_PROTOCOL, run=run), NUM_ITEMS
    )
    test_ids = list(range(NUM_USERS))
    spread = paper_protocol.sample_spread(fedrecon, clients, test_ids, seeds=[0, 1])
    assert spread.index.tolist() == [0, 1]
    scores = paper_protocol.test_scores(fedrecon, clients, test_ids, seed=1)
    assert spread.loc[1, "rmse"] == pytest.approx(scores["rmse"].iloc[0])
