"""How many bytes a client sends and receives in one round of training.

FedRecon ships only the global part of the model: the server broadcasts the item matrix
and each client returns its update of it (TFF sends both as dense tensors). A fully
global federated model, trained with federated averaging, would also hold every user's
embedding on the server: it broadcasts the whole user matrix too, and every client's
update includes its embedding, which tells the server that user's tastes.

Two protocols for each, side by side: the dense tensors TFF sends, and a sparse protocol
in which a client exchanges only the rows it needs, each row with a 4-byte index. Down, a
client receives the rows of the movies it rated (and for the fully global model its own
user row). Up, a FedRecon client returns only the rows its training step changed: the
movies of the half of its ratings left after reconstruction; a fully global client trains
on every rating, so it returns every row it received. The sparse download names the movies
the client rated, so it leaks more than the dense one; it is shown as the smallest a
protocol could send. FedRecon never sends the user embedding, but one update lets a
server that knows the protocol recover the embedding and the ratings used after
reconstruction (``summary`` says so, with the numbers; notebook 07 shows it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INDEX_BYTES = 4  # one int32 row index per row in the sparse protocol
FEDRECON, FULLY_GLOBAL = "FedRecon", "Fully global"
DENSE = "dense bytes each way"
SPARSE_DOWN, SPARSE_UP = "sparse bytes down", "sparse bytes up"
USER_SENT = "user embedding sent"


def bytes_per_client_per_round(
    item_matrix: np.ndarray,
    num_users: int,
    movies_per_client: float,
    trained_movies_per_client: float,
) -> pd.DataFrame:
    """Bytes down and up for one client in one round, dense and sparse.

    ``item_matrix`` is the global item matrix (its dtype gives the bytes per value),
    ``num_users`` the users whose embeddings a fully global model keeps on the server,
    ``movies_per_client`` the (mean) number of movies a client has rated, and
    ``trained_movies_per_client`` the (mean) number of movies whose rows a FedRecon client's
    training step changes (those of its post-reconstruction batches).
    """
    item_matrix = np.asarray(item_matrix)
    if num_users < 1 or not movies_per_client > 0:
        raise ValueError(
            f"num_users ({num_users}) and movies_per_client ({movies_per_client}) must be positive."
        )
    if not 0 < trained_movies_per_client <= movies_per_client:
        raise ValueError(
            f"trained_movies_per_client ({trained_movies_per_client}) must be positive and at "
            f"most movies_per_client ({movies_per_client})."
        )
    k = item_matrix.shape[1]
    user_bytes = num_users * k * item_matrix.dtype.itemsize
    row = k * item_matrix.dtype.itemsize + INDEX_BYTES
    rated_rows = movies_per_client * row
    table = pd.DataFrame(
        {
            DENSE: [item_matrix.nbytes, item_matrix.nbytes + user_bytes],
            SPARSE_DOWN: [rated_rows, rated_rows + row],
            SPARSE_UP: [trained_movies_per_client * row, rated_rows + row],
            USER_SENT: ["no", "yes"],
        },
        index=pd.Index([FEDRECON, FULLY_GLOBAL], name="model"),
    )
    numbers = [DENSE, SPARSE_DOWN, SPARSE_UP]
    table[numbers] = table[numbers].round().astype(int)
    return table


def summary(table: pd.DataFrame) -> str:
    """What ``bytes_per_client_per_round``'s table means, and what each way of sending
    tells the server (Markdown)."""
    dense, down, up = table[DENSE], table[SPARSE_DOWN], table[SPARSE_UP]
    return (
        f"Sent dense, as TFF sends it, FedRecon's item matrix is {dense[FEDRECON] / 1e6:.2f} MB "
        f"each way against {dense[FULLY_GLOBAL] / 1e6:.2f} MB for the fully global model "
        f"({dense[FULLY_GLOBAL] / dense[FEDRECON]:.1f} times as much). Sent sparsely, a "
        f"FedRecon client receives {down[FEDRECON]:,} bytes and sends back {up[FEDRECON]:,} "
        "(only the rows its training step changed), against "
        f"{down[FULLY_GLOBAL]:,} bytes each way for the fully global model "
        f"({down[FULLY_GLOBAL] / down[FEDRECON] - 1:.1%} more down, the user's own row; "
        f"{up[FULLY_GLOBAL] / up[FEDRECON]:.1f} times FedRecon's upload). A sparse exchange "
        "has a cost of its own: "
        "asking for only the rows of the movies a user rated tells the server which movies "
        "that user rated. FedRecon never sends the user embedding itself and keeps no "
        "per-user state on the server, but one update lets a server that knows the "
        "protocol recover the embedding and the ratings used after reconstruction "
        "(notebook 07 shows this)."
    )
