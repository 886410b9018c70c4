"""Bytes per client per round: FedRecon against a fully global model."""

import numpy as np

from tutorial_utils import communication


def test_bytes_per_client_per_round():
    item_matrix = np.zeros((100, 8), np.float32)  # 3200 bytes
    table = communication.bytes_per_client_per_round(
        item_matrix, num_users=50, movies_per_client=10
    )
    row = 8 * 4 + communication.INDEX_BYTES
    assert table.loc["FedRecon, dense (TFF)", "bytes down"] == 3200
    assert table.loc["FedRecon, dense (TFF)", "bytes up"] == 3200
    assert table.loc["Fully global, dense", "bytes down"] == 3200 + 50 * 32
    assert table.loc["FedRecon, rated rows only", "bytes up"] == 10 * row
    assert table.loc["Fully global, own rows only", "bytes up"] == 11 * row
    assert table.loc["Fully global, dense", "MB down + up"] == round(2 * 4800 / 1e6, 3)
    assert table["user embedding leaves the device"].tolist() == ["no", "no", "yes", "yes"]


def test_bytes_follow_the_dtype():
    small = communication.bytes_per_client_per_round(np.zeros((10, 4), np.float16), 5, 2)
    assert small.loc["FedRecon, dense (TFF)", "bytes down"] == 80
