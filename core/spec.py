"""The job spec: one pydantic model shared by the CLI, the API and the worker.

Every training and compression field may be left out; `resolve_spec` fills the
gaps from the per-architecture recipe (core.recipes) and from the dataset
(number of classes, input channels, image size). Names are checked against the
torch-free catalog (core.catalog), so the API validates specs without torch.
"""

from __future__ import annotations

import difflib
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.catalog import (
    REGISTRY,
    arch_help,
    available_datasets,
    dataset_help,
    is_dataset_reference,
    parse_upload_reference,
)

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "onecycle", "step", "plateau", "constant"]
ForwardOrder = Literal["auto", "chain", "product"]
RankStrategy = Literal["accuracy", "budget", "uniform", "global"]
BudgetTarget = Literal["params", "flops"]
Comparison = Literal["plain", "plain+finetune", "pruning"]
Quantize = Literal["none", "int8"]
Truncation = Literal["svd", "data-aware"]
# Weight layers left in float in the int8 model: none, or the first and the last.
KeepFloat = Literal["none", "first_last"]
COMPARISONS: tuple[str, ...] = get_args(Comparison)

MAX_FACTOR = 6
# The accuracy tolerance is a fraction of accuracy (0.01 = one percentage point). More
# than 20 points is never a sensible "allowed drop"; a value like 1 is almost always
# meant as percentage points, and would allow any rank, so it is refused, not clipped.
MAX_ACCURACY_DROP_LIMIT = 0.2


def tolerance_message(value: float) -> str:
    """Why `value` is no accuracy tolerance, in the tolerance's unit."""
    message = (
        "a fraction of accuracy: 0.01 means one percentage point; "
        f"allowed 0 to {MAX_ACCURACY_DROP_LIMIT:g} (20 points), got {value:g}"
    )
    if 1.0 <= value <= 100.0:
        unit = "point" if value == 1 else "points"
        message += f"; for {value:g} percentage {unit} write {value / 100:g}"
    return message


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """The words "did you mean 'x'? " for a near miss among `choices`, else ""."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


class _Strict(BaseModel):
    # Unknown keys are mistakes (a typo like "epoch" would otherwise be ignored).
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    arch: str = Field(description=f"Architecture: {arch_help()}.")
    num_classes: int | None = Field(None, ge=2, le=100_000, description="Inferred from data.")
    in_channels: int | None = Field(None, ge=1, le=64, description="Inferred from data.")
    image_size: int | None = Field(None, ge=4, le=1024, description="Inferred from data.")
    weights: str | None = Field(
        None,
        max_length=1000,
        description="Start from your trained model: upload:ID of weights uploaded with "
        "POST /api/v1/models (or, in the CLI, a .safetensors path). The composed layers "
        "start at the balanced split of these weights and the 'from pretrained' recipe "
        "fine-tunes them.",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        value = value.strip()
        REGISTRY.lookup(value)  # its SpecError (a ValueError) names the choices
        return value

    @field_validator("weights")
    @classmethod
    def _weights_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if parse_upload_reference(value) is None and not value.lower().endswith(".safetensors"):
            raise ValueError(
                f"model.weights {value!r} must be upload:ID (POST /api/v1/models lists "
                "yours) or a path to a .safetensors file"
            )
        return value


class DataSpec(_Strict):
    dataset: str = Field(description=f"{dataset_help()}.")
    val_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of the training set held out to choose ranks."
    )
    train_subset: int | None = Field(
        None, ge=10, description="Use only this many training samples (quick experiments)."
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        value = value.strip()
        if not is_dataset_reference(value):
            # Worded for the service, which runs built-ins and uploads only; the CLI checks
            # --dataset itself first and names files instead of uploads.
            raise ValueError(
                f"unknown dataset {value!r}; {did_you_mean(value, available_datasets())}"
                f"choose one of {', '.join(available_datasets())}, or upload:ID for a dataset "
                "you uploaded"
            )
        return value


class LoritaSpec(_Strict):
    factor: int = Field(3, ge=1, le=MAX_FACTOR, description="N: linear maps per layer (1 = plain).")
    include: list[str] | None = Field(
        None, description="Only factorize layers whose qualified name matches one of these globs."
    )
    exclude: list[str] | None = Field(
        None, description="Never factorize layers whose qualified name matches these globs."
    )
    forward_order: ForwardOrder = Field(
        "auto",
        description="chain: apply factors to activations; product: multiply weights "
        "first; auto: cheaper of the two per layer.",
    )


class TrainSpec(_Strict):
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=65_536)
    optimizer: Optimizer | None = None
    lr: float | None = Field(None, gt=0.0, le=10.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    schedule: Schedule | None = None
    label_smoothing: float | None = Field(None, ge=0.0, lt=1.0)
    augment: bool | None = Field(None, description="Random crop + flip for image sets.")
    amp: bool | None = Field(None, description="bf16 autocast (CUDA only).")
    compile: bool | None = Field(None, description="torch.compile (CUDA only).")
    channels_last: bool | None = None
    seed: int = Field(0, ge=0)


# The fine-tuning's learning rates, as shares of the training's (CompressSpec).
DEFAULT_FINETUNE_LR_SCALES = (0.1, 1.0)
# Bounds that keep a rate meaningful (and its name in an epoch's run label short).
MIN_FINETUNE_LR_SCALE = 0.001
MAX_FINETUNE_LR_SCALE = 100.0


class CompressSpec(_Strict):
    strategy: RankStrategy = Field(
        "accuracy",
        description="accuracy: fewest params/FLOPs within max_accuracy_drop; budget: best "
        "accuracy at a kept share of params/FLOPs; uniform / global: keep_fraction of the "
        "spectrum per layer / pooled across layers.",
    )
    max_accuracy_drop: float = Field(
        0.005,
        description="Allowed accuracy loss, a fraction: 0.01 means one percentage point "
        f"(0.005 = half a point); 0 to {MAX_ACCURACY_DROP_LIMIT}.",
        json_schema_extra={"minimum": 0.0, "maximum": MAX_ACCURACY_DROP_LIMIT},
    )
    target: BudgetTarget = Field("params", description="What the budget and search minimise.")
    budget: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of params or FLOPs to keep (strategy budget)."
    )
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of singular values kept (uniform / global)."
    )
    truncation: Truncation = Field(
        "svd",
        description="How each weight is cut to its rank. data-aware: the rank-r weight "
        "with the least error on the layer's output, from the SVD weighted by its inputs' "
        "statistics on a sample of the training split; svd: the plain SVD of the weight "
        "(least error on the weight itself), the default. The comparisons truncate the "
        "same way.",
    )
    finetune_epochs: int | None = Field(
        None,
        ge=0,
        le=1_000,
        description="Epochs of fine-tuning of the compressed model after truncation "
        "(default: the architecture family's; 3 for the FCN, 1 for the CNNs, 0 for the "
        "ViT; 1 for every family when the job starts from your weights).",
    )
    finetune_search: bool | None = Field(
        None,
        description="With strategy accuracy and fine-tuning: hold the accuracy tolerance "
        "after fine-tuning rather than before, so the search goes on to smaller models "
        "that fine-tuning brings back within it (up to 3 more fine-tunings, each on the "
        "validation split; the job falls back to the search's own choice when none "
        "passes). Default: the architecture family's (on for the CNNs trained from "
        "scratch, whose truncation fine-tuning recovers; off for the others).",
    )
    finetune_lr_scales: list[float] = Field(
        default_factory=lambda: list(DEFAULT_FINETUNE_LR_SCALES),
        min_length=1,
        max_length=4,
        description="The learning rates the fine-tuning after truncation tries, as shares "
        "of train.lr: each fine-tunes the same truncated model and the one best on the "
        "validation split is kept, so the fine-tuning costs finetune_epochs per rate "
        "(one value: that rate alone). The reduced rate suits a light cut, the "
        "training's own a deep one. The plain+finetune and pruning comparisons try the "
        "same rates.",
    )
    distill: bool = Field(
        True,
        description="Fine-tuning after truncation also matches the uncompressed model's "
        "outputs (knowledge distillation): your own model when the job starts from your "
        "weights, else the model before truncation. The plain+finetune comparison distils "
        "from the N=1 model the same way; pruning fine-tunes on the labels (it does better "
        "so).",
    )
    quantize: Quantize = Field(
        "none",
        description="int8: also write model.int8.onnx, the compressed model quantized to 8 "
        "bits (static, activations calibrated on a sample of the training split), measured "
        "with onnxruntime on the test split beside the float32 models.",
    )
    keep_float: KeepFloat = Field(
        "none",
        description="With quantize int8: first_last keeps the first and the last weight "
        "layer in float32 (the layers that most often lose accuracy in 8 bits).",
    )

    @field_validator("max_accuracy_drop")
    @classmethod
    def _drop_is_a_fraction(cls, value: float) -> float:
        if not 0.0 <= value <= MAX_ACCURACY_DROP_LIMIT:  # also refuses NaN
            raise ValueError(tolerance_message(value))
        return value

    @field_validator("finetune_lr_scales")
    @classmethod
    def _distinct_rates(cls, value: list[float]) -> list[float]:
        low, high = MIN_FINETUNE_LR_SCALE, MAX_FINETUNE_LR_SCALE
        bad = [rate for rate in value if not low <= rate <= high]  # NaN too
        if bad:
            raise ValueError(
                f"{bad[0]} is not a share of the training's learning rate to fine-tune at; "
                f"give rates from {low:g} to {high:g}, e.g. 0.1,1"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"{value} repeats a rate; list each rate once")
        return value

    @model_validator(mode="after")
    def _strategy_needs(self) -> CompressSpec:
        if self.strategy == "budget" and self.budget is None:
            raise ValueError("strategy 'budget' needs compress.budget (share to keep, 0-1]")
        if self.strategy in ("uniform", "global") and self.keep_fraction is None:
            raise ValueError(
                f"strategy {self.strategy!r} needs compress.keep_fraction (share to keep, 0-1]"
            )
        if self.keep_float != "none" and self.quantize == "none":
            raise ValueError(
                "compress.keep_float applies to the int8 model only; add compress.quantize 'int8'"
            )
        return self


class JobSpec(_Strict):
    model: ModelSpec
    data: DataSpec
    lorita: LoritaSpec = Field(default_factory=LoritaSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    compress: CompressSpec = Field(default_factory=CompressSpec)
    baseline: bool = Field(
        False,
        description="Also train a plain N=1 model with the same recipe for comparison "
        "(the same as comparisons ['plain']).",
    )
    comparisons: list[Comparison] = Field(
        default_factory=list,
        description="Methods to compare LoRITa with, on the same data and budget: plain "
        "(N=1 truncated by the same rank search), plain+finetune (N=1 truncated to LoRITa's "
        "size, then fine-tuned), pruning (structured pruning of N=1 to LoRITa's size, then "
        "fine-tuned). One N=1 model is trained for all of them.",
    )

    @model_validator(mode="after")
    def _baseline_is_plain(self) -> JobSpec:
        # `baseline: true` (older clients) and comparisons ["plain"] mean the same job;
        # both fields are kept in step so either reader sees what ran.
        chosen = set(self.comparisons) | ({"plain"} if self.baseline else set())
        self.comparisons = [name for name in COMPARISONS if name in chosen]
        self.baseline = "plain" in chosen
        return self
