"""Artifacts of a compression job, and loading them back.

- model.safetensors: the truncated model in the original structure and state-dict
  keys (loads strictly into a freshly built plain model of the architecture);
- lowrank.safetensors + lowrank.json: the compact model, where every layer whose
  rank pays off is two thin layers; lowrank.json holds what rebuilds the skeleton
  (architecture, sizes, {layer: rank});
- model.onnx: the compact model for other runtimes, checked against PyTorch with
  onnxruntime before it is written out as an artifact;
- report.json: the job's Result.

Weights are only ever stored as safetensors (no pickles), so loading cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.atomic import atomic_path, write_text_atomic
from core.errors import LoritaError
from core.lowrank import apply_lowrank_structure, lowrank_structure
from core.result import Result

FORMAT_VERSION = 1
DENSE_FILE = "model.safetensors"
LOWRANK_FILE = "lowrank.safetensors"
LOWRANK_META = "lowrank.json"
ONNX_FILE = "model.onnx"
REPORT_FILE = "report.json"
ARTIFACTS = [DENSE_FILE, LOWRANK_FILE, LOWRANK_META, ONNX_FILE, REPORT_FILE]
ONNX_OPSET = 17


class ExportError(LoritaError):
    """An artifact could not be written or does not reproduce the model."""

    kind = "export"


def save_state(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> int:
    """Write the state dict as safetensors (CPU, contiguous, unshared copies); returns bytes."""
    tensors = {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.state_dict().items()
    }
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata or {"format": "pt"})
        # safetensors creates owner-only files; artifacts are as readable as the report.
        os.chmod(temporary, 0o644)
    return path.stat().st_size


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """Export `model` (eval mode, CPU float32) with a dynamic batch axis and verify it."""
    model = model.to("cpu", torch.float32).eval()
    example = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as temporary:
        try:
            with warnings.catch_warnings():
                # Exporter chatter (deprecations, constant folding notes) is not for users.
                warnings.simplefilter("ignore")
                _export(model, example, temporary)
        except Exception as error:  # noqa: BLE001 - reported to the user as an export failure
            raise ExportError(f"ONNX export failed: {error}") from error
        verify_onnx(model, temporary, input_shape)


def _export(model: nn.Module, example: torch.Tensor, temporary: Path) -> None:
    common = {"input_names": ["input"], "output_names": ["logits"]}
    # The TorchScript-based exporter is fast and dependable for these plain CNN/MLP/ViT
    # graphs; the dynamo exporter is tried only if it fails.
    try:
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
            **common,
        )
    except Exception:  # noqa: BLE001 - fall back to the other exporter
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=max(ONNX_OPSET, 18),
            dynamo=True,
            **common,
        )


def verify_onnx(
    model: nn.Module, path: Path, input_shape: tuple[int, ...], *, batch: int = 3
) -> float:
    """Largest |onnxruntime - PyTorch| output difference; raises ExportError if too big."""
    import onnxruntime

    inputs = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.eval()(inputs).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    difference = float(np.max(np.abs(actual - expected)))
    tolerance = 1e-3 * max(1.0, float(np.max(np.abs(expected))))
    if not math.isfinite(difference) or difference > tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"the ONNX model's outputs differ from PyTorch's by {difference:.3g} "
            f"(tolerance {tolerance:.3g}); the model uses an operation the exporter "
            "does not translate faithfully"
        )
    return difference


def lowrank_metadata(
    *,
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    structure: dict[str, int],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta = {
        "arch": arch,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        "structure": dict(structure),
        "input_shape": [in_channels, image_size, image_size],
        "format_version": FORMAT_VERSION,
    }
    meta.update(extra or {})
    return meta


def save_artifacts(
    out_dir: Path,
    *,
    dense_model: nn.Module,
    lowrank_model: nn.Module,
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    report: dict[str, Any] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write the model artifacts (and report.json if given) into `out_dir`.

    `dense_model`: truncated, original structure; `lowrank_model`: from to_lowrank.
    Returns {file name: size in bytes} of the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_shape = (in_channels, image_size, image_size)
    sizes = {DENSE_FILE: save_state(dense_model, out_dir / DENSE_FILE)}
    sizes[LOWRANK_FILE] = save_state(lowrank_model, out_dir / LOWRANK_FILE)
    meta = lowrank_metadata(
        arch=arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        structure=lowrank_structure(lowrank_model),
        extra=extra_metadata,
    )
    write_text_atomic(out_dir / LOWRANK_META, json.dumps(meta, indent=2) + "\n")
    sizes[LOWRANK_META] = (out_dir / LOWRANK_META).stat().st_size
    export_onnx(lowrank_model, input_shape, out_dir / ONNX_FILE)
    sizes[ONNX_FILE] = (out_dir / ONNX_FILE).stat().st_size
    if report is not None:
        sizes[REPORT_FILE] = write_report(out_dir, report)
    return sizes


def write_report(out_dir: Path, result: Result | dict[str, Any]) -> int:
    """report.json: the Result's own JSON (`Result.model_validate_json` reads it back).

    A plain dict is written as given (a partial report of exported weights alone)."""
    path = Path(out_dir) / REPORT_FILE
    if isinstance(result, Result):
        text = result.model_dump_json(indent=2)
    else:
        text = json.dumps(result, indent=2)
    write_text_atomic(path, text + "\n")
    return path.stat().st_size


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / LOWRANK_META
    if not path.exists():
        raise ExportError(f"{path} not found; is {folder} the output folder of a job?")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{path} has format_version {meta.get('format_version')!r}; this version of "
            f"lorita reads {FORMAT_VERSION}"
        )
    return meta


def _build_plain(meta: dict[str, Any]) -> nn.Module:
    from core.models import build_model

    return build_model(meta["arch"], meta["num_classes"], meta["in_channels"], meta["image_size"])


def _load_weights(model: nn.Module, path: Path) -> nn.Module:
    if not path.exists():
        raise ExportError(f"{path} not found")
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:
        raise ExportError(f"{path.name} does not fit the model: {error}") from error
    return model.eval()


def load_lowrank(folder: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The compact low-rank model saved in `folder`, ready for inference.

    Without `model`, the architecture named in lowrank.json is rebuilt from the zoo;
    with a plain `model` of the same architecture, it is converted (a copy) instead.
    """
    folder = Path(folder)
    meta = _read_metadata(folder)
    plain = _build_plain(meta) if model is None else model
    skeleton = apply_lowrank_structure(plain, meta["structure"], inplace=False)
    return _load_weights(skeleton, folder / LOWRANK_FILE)


def load_dense(folder: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The truncated model in the original structure (model.safetensors)."""
    folder = Path(folder)
    plain = _build_plain(_read_metadata(folder)) if model is None else model
    return _load_weights(plain, folder / DENSE_FILE)
