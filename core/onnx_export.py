"""model.onnx: export a model to ONNX with a dynamic batch axis, check it against
PyTorch with onnxruntime, and read or write its metadata_props.

onnx and onnxruntime are imported where they are used: loading the weights of a job
needs neither.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.atomic import atomic_path
from core.errors import LoritaError
from core.preprocess import RawInputModel

ONNX_OPSET = 17
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"


# Defined here, the lower layer, and raised by core.export's writers and loaders too.
class ExportError(LoritaError):
    """An artifact could not be written or does not reproduce the model."""

    kind = "export"


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """Export `model` (eval mode, CPU float32) with a dynamic batch axis and verify it.

    `metadata`: string key/values stored as the ONNX model's metadata_props.
    """
    model = model.to("cpu", torch.float32).eval()
    example = _sample_inputs(model, input_shape, 2, seed=0)
    with atomic_path(path) as temporary:
        try:
            with warnings.catch_warnings():
                # Exporter chatter (deprecations, constant folding notes) is not for users.
                warnings.simplefilter("ignore")
                _export(model, example, temporary)
        except Exception as error:  # noqa: BLE001 - reported to the user as an export failure
            raise ExportError(f"ONNX export failed: {error}") from error
        verify_onnx(model, temporary, input_shape)
        if metadata:
            write_onnx_metadata(temporary, metadata)


def write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Set the model's metadata_props (replacing keys of the same name)."""
    import onnx

    proto = onnx.load(str(path))
    values = {entry.key: entry.value for entry in proto.metadata_props}
    values.update({key: str(value) for key, value in metadata.items()})
    del proto.metadata_props[:]
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file, as a dict (values are strings)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


def _sample_inputs(model: nn.Module, input_shape: tuple[int, ...], batch: int, *, seed: int):
    """Inputs to export and verify with: raw-looking values for a raw-input model (spread
    over the data's value range, so the network sees normalised inputs of a usual size),
    standard normal ones for a network that takes normalised tensors."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, RawInputModel):
        low, high = model.contract.value_range
        uniform = torch.rand((batch, *input_shape), generator=generator)
        return low + (high - low) * uniform
    return torch.randn((batch, *input_shape), generator=generator)


def _export(model: nn.Module, example: torch.Tensor, temporary: Path) -> None:
    common = {"input_names": [ONNX_INPUT], "output_names": [ONNX_OUTPUT]}
    # The TorchScript-based exporter is fast and dependable for these plain CNN/MLP/ViT
    # graphs; the dynamo exporter is tried only if it fails.
    try:
        torch.onnx.export(
            model,
            (example,),
            str(temporary),
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
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

    inputs = _sample_inputs(model, input_shape, batch, seed=1)
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
