"""A job that starts from the user's trained model: load it, measure it, and put
LoRITa's result beside the simplest thing the user could have done instead.

The pipeline calls three functions here:
- `load_user_model`: the architecture built for the dataset with the uploaded
  weights loaded strictly (core.models.weights: names, shapes, dtypes, no NaN);
- `measure_user_model`: its own test (and validation) accuracy, size and FLOPs as
  uploaded, and the accuracy of its balanced split (the warm start) before any
  training, which must be the same model;
- `plain_truncation_point`: the uploaded model itself truncated to the budget LoRITa
  reached, the same way (compress.truncation). The ranks are chosen like LoRITa's (on
  the validation split, the best accuracy at that share of params or FLOPs); only the
  test accuracy is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from core.catalog import parse_upload_reference
from core.errors import SpecError
from core.factorize import factorize
from core.lowrank import to_lowrank
from core.measure import count_flops, count_params, evaluate
from core.ranks import RankChoice, choice_cost
from core.result import PretrainedBlock, TruncationPoint
from core.spec import CompressSpec, JobSpec

if TYPE_CHECKING:
    from core.job.stages import JobStages


def load_user_model(spec: JobSpec, weights_file: Path | str) -> nn.Module:
    """The spec's architecture (resolved shapes) with the user's weights, in eval mode."""
    from core.models import build_model
    from core.models.weights import load_weights

    model = build_model(
        spec.model.arch, spec.model.num_classes, spec.model.in_channels, spec.model.image_size
    )
    load_weights(model, weights_file, arch=spec.model.arch)
    return model.eval()


@dataclass
class UserModelReference:
    """The uploaded model as measured before LoRITa touched it."""

    accuracy: float
    val_accuracy: float
    warm_start_accuracy: float
    params: int
    flops: int


def measure_user_model(
    model: nn.Module,
    splits: Any,
    *,
    factor: int,
    include: list[str] | None,
    exclude: list[str],
    input_shape: tuple[int, ...],
    device: str,
    amp: bool,
) -> UserModelReference:
    """Test/validation accuracy of the uploaded model, and the test accuracy of its
    balanced split into `factor` maps (which computes the same function)."""
    model = model.to(device).eval()
    warm = factorize(model, factor, include=include, exclude=exclude, init="pretrained")
    return UserModelReference(
        accuracy=evaluate(model, splits.test, device, amp=amp).accuracy,
        val_accuracy=evaluate(model, splits.val, device, amp=amp).accuracy,
        warm_start_accuracy=evaluate(warm.eval(), splits.test, device, amp=amp).accuracy,
        params=count_params(model),
        flops=count_flops(model, input_shape),
    )


def plain_truncation_point(
    job: JobStages, names: list[str], lorita_choice: RankChoice
) -> TruncationPoint:
    """The job's uploaded model (`job.user_model`) truncated, without LoRITa training, to
    the share LoRITa kept: the same truncation, its ranks chosen the way LoRITa's are."""
    model, target = job.user_model, job.spec.compress.target
    share = min(1.0, choice_cost(lorita_choice, target))
    budget = CompressSpec(strategy="budget", target=target, budget=share)
    params, flops = count_params(model), count_flops(model, job.input_shape)
    bases = job.bases(model, names)
    choice = job.choose_ranks(model, names, budget, params=params, flops=flops, bases=bases)
    truncated = to_lowrank(model, choice.ranks, bases=bases).to(job.device).eval()
    truncated_params = count_params(truncated)
    truncated_flops = count_flops(truncated, job.input_shape)
    return TruncationPoint(
        accuracy=evaluate(truncated, job.splits.test, job.device, amp=job.amp).accuracy,
        params=truncated_params,
        flops=truncated_flops,
        params_kept=truncated_params / params,
        flops_kept=truncated_flops / flops,
        ranks=dict(choice.ranks),
    )


def pretrained_block(
    weights: str, reference: UserModelReference, truncation: TruncationPoint
) -> PretrainedBlock:
    return PretrainedBlock(
        weights=weights,
        accuracy=reference.accuracy,
        val_accuracy=reference.val_accuracy,
        warm_start_accuracy=reference.warm_start_accuracy,
        params=reference.params,
        flops=reference.flops,
        plain_truncation=truncation,
    )


def prepare_user_model(
    spec: JobSpec,
    splits: Any,
    weights_file: Path | str | None,
    *,
    exclude: list[str],
    input_shape: tuple[int, ...],
    device: str,
    amp: bool,
) -> tuple[nn.Module, UserModelReference]:
    """Load the job's weights (`weights_file`, or the spec's own path in the CLI) and
    measure the model they make."""
    if weights_file is None and parse_upload_reference(spec.model.weights) is not None:
        raise SpecError(
            f"model.weights {spec.model.weights} names weights uploaded to the service; "
            "run the job there, or give the .safetensors file's path"
        )
    path = Path(weights_file if weights_file is not None else spec.model.weights)
    model = load_user_model(spec, path).to(device)
    reference = measure_user_model(
        model,
        splits,
        factor=spec.lorita.factor,
        include=spec.lorita.include,
        exclude=exclude,
        input_shape=input_shape,
        device=device,
        amp=amp,
    )
    return model, reference
