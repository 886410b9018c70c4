"""The simulator engine: FedRecon in plain TensorFlow, every client of a round at once.

Notebook 05 builds it and checks it against TFF; notebooks 06, 07 and 08 train with it;
``benchmarks/benchmark_simulation.py`` measures it. It builds on the core and the
plumbing (``parity`` and ``runs`` also run TFF), and knows nothing of the exercises or the
studies.

- ``simulator``: ``FedReconSimulator``, its training loop and its evaluation table.
- ``batches``: a simulated round's batches, from packed clients (``PackedClients``) or
  ``tf.data``.
- ``program_inputs``: a round's batches numbered and padded for the compiled program.
- ``round_math``: the compiled round: reconstruction, training, the server's sum.
- ``many_rounds``: many rounds in one compiled program, with the same results.
- ``reference_fedrecon``: FedRecon written out plainly, one client at a time, for reading.
- ``parity``: the simulator against TFF 0.87, the same rounds compared number by number.
- ``paper_protocol``: the paper's MovieLens protocol with its code's data choices.
- ``runs``: train, then score one run, with TFF or the simulator (exercise 1, the scripts).
- ``speed_results``: the simulation benchmark's results file, its tables in docs/speed.md.
"""

# What notebooks call: the engine by name (``simulation.FedReconSimulator``), and the
# modules of notebook 05's sections (``simulation.parity.compare_with_tff``).
from tutorial_utils.simulation import paper_protocol, parity, reference_fedrecon
from tutorial_utils.simulation.batches import PackedClients, stage_overlap
from tutorial_utils.simulation.simulator import FedReconSimulator, evaluation_table, train

__all__ = [
    "FedReconSimulator",
    "PackedClients",
    "evaluation_table",
    "paper_protocol",
    "parity",
    "reference_fedrecon",
    "stage_overlap",
    "train",
]
