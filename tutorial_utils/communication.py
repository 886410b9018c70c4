"""How many bytes a client sends and receives in one round of training.

FedRecon ships only the global part of the model: the server broadcasts the item matrix
and each client returns its update of it (TFF sends both as dense tensors). A fully
global federated model, trained with federated averaging, would also hold every user's
embedding on the server: it broadcasts the whole user matrix too, and every client's
update includes its embedding, which tells the server that user's tastes.

Two cases for each: the dense tensors TFF sends, and a sparse protocol in which a client
exchanges only the rows it needs (the movies it rated, and its own user row), each row
with a 4-byte index. The sparse download names the movies the client rated, so it leaks
more than the dense one; it is shown as the smallest a protocol could send.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INDEX_BYTES = 4  # one int32 row index per row in the sparse protocol


def bytes_per_client_per_round(
    item_matrix: np.ndarray, num_users: int, movies_per_client: float
) -> pd.DataFrame:
    """Bytes down and up for one client in one round, FedRecon against a fully global model.

    ``item_matrix`` is the global item matrix (its dtype gives the bytes per value),
    ``num_users`` the users whose embeddings a fully global model keeps on the server,
    ``movies_per_client`` the (mean) number of movies a client has rated.
    """
    item_matrix = np.asarray(item_matrix)
    num_items, k = item_matrix.shape
    value_bytes = item_matrix.dtype.itemsize
    items = item_matrix.nbytes
    users = num_users * k * value_bytes
    row = k * value_bytes + INDEX_BYTES
    rated_rows = movies_per_client * row
    rows = {
        "FedRecon, dense (TFF)": (items, items, "no"),
        "FedRecon, rated rows only": (rated_rows, rated_rows, "no"),
        "Fully global, dense": (items + users, items + users, "yes"),
        "Fully global, own rows only": (rated_rows + row, rated_rows + row, "yes"),
    }
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["bytes down", "bytes up", "user embedding leaves the device"]
    )
    table[["bytes down", "bytes up"]] = table[["bytes down", "bytes up"]].round().astype(int)
    table.insert(2, "MB down + up", ((table["bytes down"] + table["bytes up"]) / 1e6).round(3))
    table.index.name = "model"
    return table
