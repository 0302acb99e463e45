"""The job spec: one pydantic model shared by the CLI, the API and the worker.

Every training and compression field may be left out; `resolve_spec` fills the
gaps from the per-architecture recipe (core.recipes) and from the dataset
(number of classes, input channels, image size). Names are checked against the
torch-free catalog (core.catalog), so the API validates specs without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.catalog import REGISTRY, arch_help, available_datasets, dataset_help, is_dataset_reference

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "onecycle", "step", "plateau", "constant"]
ForwardOrder = Literal["auto", "chain", "product"]
RankStrategy = Literal["accuracy", "budget", "uniform", "global"]
BudgetTarget = Literal["params", "flops"]

MAX_FACTOR = 6


class _Strict(BaseModel):
    # Unknown keys are mistakes (a typo like "epoch" would otherwise be ignored).
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    arch: str = Field(description=f"Architecture: {arch_help()}.")
    num_classes: int | None = Field(None, ge=2, le=100_000, description="Inferred from data.")
    in_channels: int | None = Field(None, ge=1, le=64, description="Inferred from data.")
    image_size: int | None = Field(None, ge=4, le=1024, description="Inferred from data.")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        value = value.strip()
        REGISTRY.lookup(value)  # its SpecError (a ValueError) names the choices
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
            raise ValueError(
                f"unknown dataset {value!r}; choose one of {', '.join(available_datasets())}, "
                "upload:ID for an uploaded dataset, or a path ending in .npz or .zip"
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


class CompressSpec(_Strict):
    strategy: RankStrategy = Field(
        "accuracy",
        description="accuracy: fewest params/FLOPs within max_accuracy_drop; budget: best "
        "accuracy at a kept share of params/FLOPs; uniform / global: keep_fraction of the "
        "spectrum per layer / pooled across layers.",
    )
    max_accuracy_drop: float = Field(
        0.005, ge=0.0, le=1.0, description="Allowed accuracy loss (0.005 = half a point)."
    )
    target: BudgetTarget = Field("params", description="What the budget and search minimise.")
    budget: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of params or FLOPs to keep (strategy budget)."
    )
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="Share of singular values kept (uniform / global)."
    )
    finetune_epochs: int = Field(0, ge=0, le=1_000, description="Fine-tune after truncation.")

    @model_validator(mode="after")
    def _strategy_needs(self) -> CompressSpec:
        if self.strategy == "budget" and self.budget is None:
            raise ValueError("strategy 'budget' needs compress.budget (share to keep, 0-1]")
        if self.strategy in ("uniform", "global") and self.keep_fraction is None:
            raise ValueError(
                f"strategy {self.strategy!r} needs compress.keep_fraction (share to keep, 0-1]"
            )
        return self


class JobSpec(_Strict):
    model: ModelSpec
    data: DataSpec
    lorita: LoritaSpec = Field(default_factory=LoritaSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    compress: CompressSpec = Field(default_factory=CompressSpec)
    baseline: bool = Field(
        False, description="Also train a plain N=1 model with the same recipe for comparison."
    )
