"""The Result of a compression job, as typed models.

One definition read by everyone: the pipeline builds it once, `report.json` is its
JSON, the API serves it as a job's `result` (and shows its schema in OpenAPI), the
CLI prints it as a table, the dashboard and the benchmarks read its keys.

Shape: a `Result` is the block of the LoRITa model (`RankSearchBlock`) plus what
describes the job (spec, device, artifacts, timings); `baseline` is the same kind of
block for the plain N=1 model. `CompressionBlock` is what any compression method's
block has (accuracy, size and speed before/after, an accuracy curve), so blocks of
other methods, added later (comparisons with other methods, int8), reuse it.

Reading is tolerant on purpose (`extra="allow"`): results are stored as JSON in the
database and served by whichever version of the API runs now. A key this version
does not know (written by a newer worker during a rolling upgrade, or by an older
one before a key was retired) is kept and served as stored rather than dropped or
turned into an error. Keys added later must therefore be optional (default None).
Optional keys left at None are omitted from the JSON, so "absent" means "not run"
(no baseline, no fine-tuning), exactly as consumers test for them.

Imports only the standard library and pydantic: the API process uses this module
and never imports torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def _absent_when_none(value: Any) -> bool:
    return value is None


def optional(description: str) -> Any:
    """A key that is present only when its part of the job ran (None: left out of JSON)."""
    return Field(None, description=description, exclude_if=_absent_when_none)


class Section(BaseModel):
    """Base of every part of the Result: keeps unknown keys (see the module docstring)."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------- measured pairs


class BeforeAfter(Section):
    """A measurement of the uncompressed and of the compressed model."""

    uncompressed: float
    compressed: float


class BeforeAfterCount(Section):
    """A count (parameters, FLOPs, bytes) of the uncompressed and of the compressed model."""

    uncompressed: int
    compressed: int


# --------------------------------------------------------------- parts of a block


class CurvePoint(Section):
    """One allocation along the accuracy/size trade-off the rank search looked at."""

    params_kept: float = Field(description="share of the parameters kept (0..1]")
    flops_kept: float = Field(description="share of the FLOPs kept (0..1]")
    val_accuracy: float | None = Field(description="accuracy on the validation split")
    test_accuracy: float | None = Field(
        None, description="accuracy on the test split; measured for the chosen point only"
    )


class ChosenPoint(Section):
    """Where the chosen allocation sits on the curve."""

    params_kept: float
    flops_kept: float


class LayerReport(Section):
    """One compressible layer: its size, spectrum and the rank kept."""

    shape: list[int] = Field(description="(out, in) of the layer's weight as a matrix")
    full_rank: int
    rank: int
    factorized: bool = Field(description="stored as two thin layers (the rank pays off)")
    singular_values: list[float] = Field(description="of the merged weight, descending")


class EpochRecord(Section):
    """One training epoch (the same record as the job's "epoch" events).

    Losses and accuracies may be null: non-finite numbers are stored as null.
    """

    type: str = "epoch"
    run: str = Field(description="lorita, baseline or finetune")
    epoch: int
    epochs: int | None = None
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    lr: float | None = None
    epoch_time_s: float | None = None
    progress: float | None = None


class RankSearch(Section):
    """How the ranks were chosen; every key optional, as strategies report different ones."""

    strategy: str | None = None
    target: str | None = None
    evaluations: int | None = Field(None, description="accuracy evaluations the search ran")
    val_samples: int | None = Field(None, description="validation samples each one used")
    subset_reference_accuracy: float | None = None
    time_s: float | None = None
    budget_unreachable: bool | None = optional(
        "the requested budget could not be met; the closest allocation was kept"
    )


class Timings(Section):
    """Wall-clock seconds of the job's phases."""

    train: float = 0.0
    baseline: float = 0.0
    rank_search: float = 0.0
    export: float = 0.0


# --------------------------------------------------------------- blocks


class CompressionBlock(Section):
    """What the block of any compression method reports, measured on the test split."""

    accuracy: BeforeAfter = Field(description="test accuracy")
    params: BeforeAfterCount
    flops: BeforeAfterCount = Field(description="for one input (batch 1)")
    latency_ms: BeforeAfter = Field(description="for one input (batch 1) on the job's device")
    file_size_bytes: BeforeAfterCount | None = optional("bytes of the stored weights")
    curve: list[CurvePoint] | None = optional("the accuracy/size trade-off, largest first")


class RankSearchBlock(CompressionBlock):
    """A trained model compressed by the rank search: the LoRITa model and the baseline."""

    file_size_bytes: BeforeAfterCount = Field(description="bytes of the stored weights")
    curve: list[CurvePoint] = Field(description="the accuracy/size trade-off, largest first")
    val_accuracy: BeforeAfter = Field(description="accuracy on the validation split")
    ranks: dict[str, int] = Field(description="rank kept per compressible layer")
    chosen: ChosenPoint
    layers: dict[str, LayerReport]
    history: list[EpochRecord] = Field(description="the training epochs")
    rank_search: RankSearch
    finetune_history: list[EpochRecord] | None = optional(
        "the fine-tuning epochs of the compressed model"
    )


class Result(RankSearchBlock):
    """The Result of a job (report.json, the API's job result, `lorita compress --json`)."""

    artifacts: list[str] = Field(description="file names in the job's artifact folder")
    spec: dict[str, Any] = Field(
        description="the job spec as it ran, with every default filled in (see JobSpec)"
    )
    device: str
    factor: int = Field(description="N, the number of maps each layer was trained as")
    timings_s: Timings
    baseline: RankSearchBlock | None = optional(
        "the plain N=1 model, trained with the same recipe and compressed the same way"
    )

    def summary(self) -> ResultSummary:
        return ResultSummary.model_validate(self.model_dump())

    def metrics(self) -> ResultMetrics:
        return ResultMetrics.model_validate(self.model_dump())


# --------------------------------------------------------------- digests
# Subsets of the Result for responses that must stay small. Their fields have the
# Result's own types (a test checks it), and they ignore the rest of a stored result.


class ResultSummary(BaseModel):
    """The numbers a job list row shows."""

    model_config = ConfigDict(extra="ignore")

    accuracy: BeforeAfter
    params: BeforeAfterCount
    flops: BeforeAfterCount
    factor: int | None = None


class ResultMetrics(BaseModel):
    """The Result without its long lists (curve, layers, histories, spec, baseline)."""

    model_config = ConfigDict(extra="ignore")

    accuracy: BeforeAfter
    val_accuracy: BeforeAfter
    params: BeforeAfterCount
    flops: BeforeAfterCount
    latency_ms: BeforeAfter
    file_size_bytes: BeforeAfterCount
    ranks: dict[str, int]
    chosen: ChosenPoint
    factor: int
    device: str
    timings_s: Timings
