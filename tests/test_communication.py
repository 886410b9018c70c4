"""Bytes per client per round: FedRecon against a fully global model, dense and sparse."""

import numpy as np
import pytest

from tutorial_utils.studies import communication


def test_bytes_per_client_per_round():
    item_matrix = np.zeros((100, 8), np.float32)  # 3200 bytes
    table = communication.bytes_per_client_per_round(
        item_matrix, num_users=50, movies_per_client=10, trained_movies_per_client=4
    )
    row = 8 * 4 + communication.INDEX_BYTES
    assert table.loc["FedRecon", "dense bytes each way"] == 3200
    assert table.loc["Fully global", "dense bytes each way"] == 3200 + 50 * 32
    assert table.loc["FedRecon", "sparse bytes down"] == 10 * row
    # Up, FedRecon returns only the rows its training step changed.
    assert table.loc["FedRecon", "sparse bytes up"] == 4 * row
    assert table.loc["Fully global", "sparse bytes down"] == 11 * row
    assert table.loc["Fully global", "sparse bytes up"] == 11 * row
    assert table["user embedding sent"].tolist() == ["no", "yes"]


def test_bytes_follow_the_dtype_and_round_a_mean_count():
    small = communication.bytes_per_client_per_round(np.zeros((10, 4), np.float16), 5, 2.5, 1.25)
    assert small.loc["FedRecon", "dense bytes each way"] == 80
    assert small.loc["FedRecon", "sparse bytes down"] == round(2.5 * (8 + 4))
    assert small.loc["FedRecon", "sparse bytes up"] == round(1.25 * (8 + 4))


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="movies_per_client"):
        communication.bytes_per_client_per_round(np.zeros((10, 4), np.float32), 5, 0, 1)
    with pytest.raises(ValueError, match="trained_movies_per_client"):
        communication.bytes_per_client_per_round(np.zeros((10, 4), np.float32), 5, 2, 3)


def test_summary_prints_the_tables_numbers():
    table = communication.bytes_per_client_per_round(np.zeros((1000, 10), np.float32), 1500, 50, 25)
    text = communication.summary(table)
    # dense 40,000 against 100,000 bytes; sparse 50 rows of 44 bytes down, 25 up, against 51
    assert "0.04 MB each way against 0.10 MB" in text and "(2.5 times as much)" in text
    assert "receives 2,200 bytes and sends back 1,100" in text
    assert "against 2,244 bytes each way" in text and "(2.0% more down" in text
    assert "2.0 times FedRecon's upload" in text
    # What each way of sending tells the server, not a claim that nothing leaks.
    assert "tells the server which movies that user rated" in text
    assert "recover the embedding" in text and "notebook 07" in text
    assert "privacy" not in text
