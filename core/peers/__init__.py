"""Peer methods a job compares LoRITa against, on the same data and budget.

- pruning: structured (channel / neuron) pruning with Torch-Pruning's dependency
  graph, to a requested share of the dense model's parameters or FLOPs.

- compare (imported on its own: it trains): the job's comparisons run from one N=1
  model; latency: their CPU latency beside LoRITa's; verdict: which one is best.

Fine-tuning a peer's model needs nothing special: `core.train.train_model` trains any
plain module, a pruned one included.
"""

from core.peers.pruning import (
    IMPORTANCES,
    SIZE_MEASURES,
    PruningError,
    PruningResult,
    prune_to_budget,
)

__all__ = ["IMPORTANCES", "SIZE_MEASURES", "PruningError", "PruningResult", "prune_to_budget"]
