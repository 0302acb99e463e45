"""CPU latency of the comparison's models, LoRITa's included.

Latency is measured on the CPU at batch 1 and 64 for every model, in interleaved
rounds: the pruned model is dense and narrower, the low-rank model has two layers per
truncated layer, and only measuring tells which runs faster.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence

from torch import nn

from core.measure import measure_latency_ms
from core.result import CpuLatency

LATENCY_BATCHES = (1, 64)
# A small model's batch-1 measurement is a few milliseconds of passes, which one hiccup
# of the machine can double: the FCN job once showed LoRITa's 6%-model at 0.170 ms
# beside a same-shaped peer at 0.090. The median over nine rounds held within 0.003 ms
# over repeated runs where three rounds did not (bench/README.md, "The seed-0 spike,
# looked for again"); it costs seconds, against the minutes of the fine-tunings.
LATENCY_ROUNDS = 9


def cpu_latencies(
    models: dict[str, nn.Module],
    input_shape: Sequence[int],
    batches: Sequence[int] = LATENCY_BATCHES,
    rounds: int = LATENCY_ROUNDS,
) -> dict[str, dict[int, float]]:
    """Median milliseconds per forward pass on the CPU of each model at each batch size.

    The models take turns within every round (and the order rotates between rounds), so
    a moment when the machine is busy slows all of them, not one."""
    on_cpu = {name: copy.deepcopy(model).cpu().float().eval() for name, model in models.items()}
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in on_cpu}
    order = list(on_cpu)
    for round_index in range(rounds):
        shift = round_index % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            for batch in batches:
                # Large batches are slow on a CPU: fewer passes, the rounds add the rest.
                repeats = None if batch == 1 else 3
                times[name][batch].append(
                    measure_latency_ms(
                        on_cpu[name],
                        input_shape,
                        device="cpu",
                        batch_size=batch,
                        repeats=repeats,
                        warmup=2 if batch == 1 else 1,
                        time_budget_s=0.15,
                    )
                )
    return {
        name: {b: statistics.median(values) for b, values in by_batch.items()}
        for name, by_batch in times.items()
    }


def as_cpu_latency(times: dict[str, dict[int, float]], before: str, after: str) -> CpuLatency:
    """The CpuLatency of model `after` against model `before`, from cpu_latencies' times."""
    return CpuLatency(
        batch_1={"uncompressed": times[before][1], "compressed": times[after][1]},
        batch_64={"uncompressed": times[before][64], "compressed": times[after][64]},
    )
