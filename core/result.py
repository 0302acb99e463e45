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

from core.contract import InputContractBase


def _absent_when_none(value: Any) -> bool:
    return value is None


def optional(description: str) -> Any:
    """A key that is present only when its part of the job ran (None: left out of JSON)."""
    return Field(None, description=description, exclude_if=_absent_when_none)


def one_of(meanings: dict[str, str]) -> str:
    """The description of a field that holds one of a few words, each with its meaning."""
    return ", ".join(f"{word} ({meaning})" for word, meaning in meanings.items())


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
    run: str = Field(
        description="lorita or baseline (training), 'finetune at Sx lr' (the fine-tuning "
        "after truncation at S times the training's learning rate; 'baseline finetune at "
        "Sx lr' the N=1 model's), or a comparison's 'METHOD at Sx lr'"
    )
    epoch: int
    epochs: int | None = None
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    lr: float | None = None
    epoch_time_s: float | None = None
    progress: float | None = None


class FinetuneTry(Section):
    """One allocation past the search's choice, fine-tuned and checked on the whole
    validation split (compress.finetune_search)."""

    params_kept: float
    flops_kept: float
    val_accuracy_before_finetune: float
    val_accuracy: float = Field(description="after fine-tuning")
    within_tolerance: bool = Field(
        description="the drop from the uncompressed model stays within max_accuracy_drop"
    )


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
    before_finetune: CurvePoint | None = optional(
        "compress.finetune_search: the search's own choice, where the walk after "
        "fine-tuning started (accuracy before fine-tuning)"
    )
    after_finetune: list[FinetuneTry] | None = optional(
        "compress.finetune_search: the smaller allocations fine-tuned in turn, until the "
        "first outside the tolerance; the most compressed within it was kept"
    )


class Timings(Section):
    """Wall-clock seconds of the job's phases."""

    train: float = 0.0
    baseline: float = 0.0
    rank_search: float = 0.0
    export: float = 0.0
    compare: float | None = optional("the comparisons (fine-tuning and timing the peers)")
    quantize: float | None = optional("the int8 model: calibrating, quantizing and measuring")


class InputContract(Section, InputContractBase):
    """The raw input the exported models take, and their preprocessing (core.contract)."""


# --------------------------------------------------------------- blocks


class CpuLatency(Section):
    """Milliseconds per forward pass on the CPU at batch 1 and at batch 64, measured in
    interleaved rounds with the other methods' models (so a busy moment hits all alike)."""

    batch_1: BeforeAfter
    batch_64: BeforeAfter


class CompressionBlock(Section):
    """What the block of any compression method reports, measured on the test split."""

    accuracy: BeforeAfter = Field(description="test accuracy")
    params: BeforeAfterCount
    flops: BeforeAfterCount = Field(description="for one input (batch 1)")
    latency_ms: BeforeAfter = Field(description="for one input (batch 1) on the job's device")
    file_size_bytes: BeforeAfterCount | None = optional("bytes of the stored weights")
    curve: list[CurvePoint] | None = optional("the accuracy/size trade-off, largest first")
    latency_cpu: CpuLatency | None = optional(
        "CPU latency at batch 1 and 64, measured beside the comparisons' models"
    )


class FinetuneRateTrial(Section):
    """One learning rate a fine-tuning after compression tried."""

    lr_scale: float = Field(description="share of the training's learning rate")
    val_accuracy: float = Field(description="validation accuracy after the fine-tuning")


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
    finetune_lr_scale: float | None = optional(
        "the fine-tuning's learning rate as a share of the training's: the rate kept"
    )
    finetune_lr_trials: list[FinetuneRateTrial] | None = optional(
        "every rate the fine-tuning tried from the same cut, the best on the validation "
        "split kept (with compress.finetune_search: at the first allocation the walk "
        "fine-tuned; the others reuse its rate)"
    )


class TruncationPoint(Section):
    """A model truncated without LoRITa training, measured on the test split."""

    accuracy: float
    params: int
    flops: int
    params_kept: float = Field(description="share of the uploaded model's parameters kept")
    flops_kept: float = Field(description="share of the uploaded model's FLOPs kept")
    ranks: dict[str, int]


class PretrainedBlock(Section):
    """The user's uploaded model, the reference a warm-started job is judged against."""

    weights: str = Field(description="the job's model.weights reference")
    accuracy: float = Field(description="test accuracy of the uploaded model as uploaded")
    val_accuracy: float | None = None
    warm_start_accuracy: float | None = Field(
        None,
        description="test accuracy of the balanced split before fine-tuning (the same "
        "function as the uploaded model, so the same accuracy)",
    )
    params: int
    flops: int
    plain_truncation: TruncationPoint = Field(
        description="the uploaded model itself truncated (the same way as LoRITa's) to "
        "the budget LoRITa reached (ranks chosen on the validation split, best accuracy "
        "at that budget)"
    )


class RecipeInfo(Section):
    """Which default recipe the job's training fields came from, and the values that ran."""

    name: str = Field(description="'from scratch' or 'from pretrained'")
    epochs: int
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    schedule: str | None = None
    finetune_epochs: int | None = Field(
        None, description="epochs of fine-tuning after truncation (compress.finetune_epochs)"
    )
    distilled_from: str | None = Field(
        None,
        description="whom that fine-tuning distils from: 'your model' or 'the model before "
        "truncation'; none when it learns the labels alone (compress.distill false) or "
        "there is no fine-tuning",
    )


class ComparisonBlock(CompressionBlock):
    """Another way to get a small model from the same data and budget (JobSpec.comparisons).

    `accuracy.uncompressed` and the other "uncompressed" values are those of the plain
    N=1 model every comparison starts from; `latency_ms` is `latency_cpu.batch_1`.
    """

    method: str = Field(description="plain, plain+finetune or pruning")
    description: str = Field(description="what was done, in a few words")
    params_kept: float = Field(description="share of the N=1 model's parameters kept")
    flops_kept: float = Field(description="share of the N=1 model's FLOPs kept")
    sized_to: str | None = optional(
        "params or flops: the size matched to LoRITa's chosen model (absent: chosen by the "
        "accuracy tolerance, as LoRITa's own)"
    )
    latency_cpu: CpuLatency
    finetune_epochs: int = Field(0, description="epochs of fine-tuning after compression")
    note: str | None = optional("how the method differs from what was asked, and why")
    ranks: dict[str, int] | None = optional("rank kept per layer (truncation methods)")
    pruning: dict[str, Any] | None = optional("what structured pruning did (ratio, widths)")
    finetune_history: list[EpochRecord] | None = optional("the fine-tuning epochs")
    finetune_lr_scale: float | None = optional(
        "the fine-tuning's learning rate as a share of the training's: the rate kept"
    )
    finetune_lr_trials: list[FinetuneRateTrial] | None = optional(
        "every rate the fine-tuning tried from the same start; the best on the validation "
        "split is the one kept"
    )


class VerdictEntry(Section):
    """One method's standing in the verdict."""

    method: str
    accuracy: float = Field(description="test accuracy of the compressed model")
    kept: float = Field(description="share of params or FLOPs kept (Verdict.target)")
    within_tolerance: bool


# Verdict.criterion: how the best method was picked.
VERDICT_CRITERIA = {
    "smallest_within_tolerance": "the smallest model whose accuracy is within the tolerance "
    "of the plain N=1 model, the most accurate among equal sizes",
    "most_accurate": "no method stayed within it",
}


class Verdict(Section):
    """Which method gives the best small model at the user's tolerance."""

    best: str = Field(description="lorita or one of the comparisons")
    criterion: str = Field(description=one_of(VERDICT_CRITERIA))
    target: str = Field(description="params or flops: the size compared")
    tolerance: float = Field(description="allowed accuracy loss (compress.max_accuracy_drop)")
    reference_accuracy: float = Field(description="test accuracy of the uncompressed N=1 model")
    standings: list[VerdictEntry]
    sentence: str = Field(description="the verdict in one line")


# ResultWarning.kind: what core.sanity saw.
WARNING_KINDS = {
    "did_not_learn": "a model is near chance",
    "compressed_far_below": "the compressed model lost much more than the uncompressed one had",
    "baseline_better": "the plain N=1 model beats LoRITa's compressed model by more than "
    "the tolerance",
}


class ResultWarning(Section):
    """Something about the job's numbers a reader must know before trusting them."""

    kind: str = Field(description=one_of(WARNING_KINDS))
    message: str = Field(description="what was seen, with the numbers")
    advice: str = Field(description="what to change")
    run: str | None = optional("which model it concerns: lorita or baseline")


class OnnxLatency(Section):
    """Median milliseconds per run of an ONNX file with onnxruntime on the CPU."""

    batch_1: float
    batch_64: float


class OnnxMeasurement(Section):
    """One ONNX model run the way a user runs it: onnxruntime on the CPU, raw input."""

    file: str | None = optional(
        "its name in the artifact folder (absent: a reference measured, not shipped)"
    )
    test_accuracy: float = Field(description="on the whole test split")
    val_accuracy: float = Field(description="on the whole validation split")
    file_size_bytes: int
    latency_ms: OnnxLatency


class Int8Calibration(Section):
    """Where the activation ranges of the int8 model came from."""

    split: str = Field(description="always train: validation and test stay unseen")
    samples: int = Field(description="samples drawn (seeded, without replacement)")
    drawn_from: int = Field(description="size of the training split they were drawn from")
    method: str = Field(description="minmax, percentile or entropy")
    seed: int


class Int8Block(Section):
    """The compressed model in 8 bits (model.int8.onnx), measured beside the float32
    low-rank model.onnx and the dense uncompressed model (core.int8_stage)."""

    file: str = Field(description="model.int8.onnx")
    format: str = Field(description="QDQ: int8 weights and activations, onnxruntime's format")
    weights: str = Field(description="e.g. int8 per-channel")
    activations: str
    keep_float: str = Field(description="the compress.keep_float setting")
    kept_float: list[str] = Field(description="ONNX nodes left in float32")
    calibration: Int8Calibration
    dense_fp32: OnnxMeasurement = Field(
        description="the uncompressed model (full rank, dense layers) exported the same way"
    )
    lowrank_fp32: OnnxMeasurement = Field(description="model.onnx")
    lowrank_int8: OnnxMeasurement = Field(description="model.int8.onnx")
    compression_ratio: float = Field(
        description="dense fp32 file size / int8 file size: low rank and 8 bits together"
    )
    int8_ratio: float = Field(description="model.onnx size / model.int8.onnx size")
    accuracy_cost: float = Field(
        description="validation accuracy of model.onnx minus that of model.int8.onnx "
        "(the split the int8 model is judged on, like the ranks)"
    )
    test_accuracy_cost: float = Field(description="the same on the test split, for the record")
    tolerance: float = Field(description="compress.max_accuracy_drop")
    within_tolerance: bool = Field(description="accuracy_cost is at most the tolerance")
    recommended: str = Field(
        description="the file to ship: model.int8.onnx within the tolerance, else model.onnx"
    )
    threads: int = Field(description="onnxruntime intra-op threads of the latency runs")
    latency_rounds: int = Field(description="interleaved rounds each latency is a median of")


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
    comparisons: dict[str, ComparisonBlock] | None = optional(
        "other methods run on the same data and budget, by name (JobSpec.comparisons)"
    )
    comparisons_skipped: dict[str, str] | None = optional(
        "comparisons that could not run on this model, with the reason"
    )
    verdict: Verdict | None = optional("which method is best at the tolerance")
    pretrained: PretrainedBlock | None = optional(
        "the user's uploaded model (model.weights): its own accuracy and its truncation "
        "without LoRITa at the compressed model's budget"
    )
    recipe: RecipeInfo | None = optional("the default recipe the training fields came from")
    warnings: list[ResultWarning] | None = optional(
        "reasons not to trust the numbers at face value (core.sanity), most serious first"
    )

    input_contract: InputContract | None = optional(
        "the raw input the exported models take (layout, dtype, values, preprocessing)"
    )
    int8: Int8Block | None = optional(
        "the int8 model (compress.quantize int8), measured with onnxruntime on the CPU"
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
