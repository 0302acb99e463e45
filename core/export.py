"""Artifacts of a compression job, and loading them back.

- model.safetensors: the truncated model in the original structure and state-dict
  keys (loads strictly into a freshly built plain model of the architecture);
- lowrank.safetensors + lowrank.json: the compact model, where every layer whose
  rank pays off is two thin layers; lowrank.json holds what rebuilds the skeleton
  (architecture, sizes, {layer: rank});
- model.onnx: the compact model for other runtimes, checked against PyTorch with
  onnxruntime before it is written out as an artifact (core.onnx_export); its
  metadata_props describe the input (string key/values, JSON for structured ones);
- report.json: the job's Result; MODEL_CARD.md: the same for people (core.model_card).

Exported models take raw input: with an input contract (core.contract), model.onnx
starts with the preprocessing step and load_lowrank / load_dense return the network
behind it (core.preprocess), so the data goes in as the user has it. The weight
files keep the plain networks' state-dict keys; the contract lives in lowrank.json
(and in the safetensors headers).

Weights are only ever stored as safetensors (no pickles), so loading cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from core.atomic import atomic_path, write_text_atomic
from core.lowrank import apply_lowrank_structure, lowrank_structure
from core.onnx_export import ONNX_INPUT, ONNX_OUTPUT, ExportError, export_onnx
from core.preprocess import RawInputModel, with_raw_input
from core.result import InputContract, Result

# 2: lowrank.json has "input" (the input contract) and the loaders apply it.
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
DENSE_FILE = "model.safetensors"
LOWRANK_FILE = "lowrank.safetensors"
LOWRANK_META = "lowrank.json"
ONNX_FILE = "model.onnx"
REPORT_FILE = "report.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
ARTIFACTS = [DENSE_FILE, LOWRANK_FILE, LOWRANK_META, ONNX_FILE, REPORT_FILE, MODEL_CARD_FILE]


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


def lowrank_metadata(
    *,
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    structure: dict[str, int],
    input_contract: InputContract | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta = {
        "arch": arch,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        "structure": dict(structure),
        # The network's own input (normalised NCHW); "input" is what the loaders take.
        "input_shape": [in_channels, image_size, image_size],
        "format_version": FORMAT_VERSION,
    }
    if input_contract is not None:
        meta["input"] = input_contract.model_dump(mode="json")
    meta.update(extra or {})
    return meta


def onnx_metadata(
    input_contract: InputContract | None,
    network_input_shape: tuple[int, ...],
    model_info: dict[str, Any] | None = None,
) -> dict[str, str]:
    """metadata_props of model.onnx: how to feed it and what it is (all values strings,
    JSON for structured ones)."""
    meta = {
        "format_version": str(FORMAT_VERSION),
        "input_name": ONNX_INPUT,
        "input_dtype": "float32",
        "output_name": ONNX_OUTPUT,
        "output": "class scores (logits), one row per input; argmax is the class index",
    }
    if input_contract is None:
        meta["input_shape"] = json.dumps(["batch", *network_input_shape])
        meta["input_layout"] = "NCHW"
        meta["preprocessing"] = json.dumps("none: the input must already be normalised")
    else:
        meta.update(input_contract.metadata())
    for key, value in (model_info or {}).items():
        if value is not None:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
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
    input_contract: InputContract | None = None,
    model_info: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write the model artifacts (and report.json if given) into `out_dir`.

    `dense_model`: truncated, original structure; `lowrank_model`: from to_lowrank; both
    take normalised tensors. With `input_contract`, model.onnx and the loaders take raw
    input (the contract's layout and values) and apply the preprocessing themselves.
    `model_info` (accuracies, spec, ...) goes into model.onnx's metadata.
    Returns {file name: size in bytes} of the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    network_shape = (in_channels, image_size, image_size)
    headers = {"format": "pt", "format_version": str(FORMAT_VERSION)}
    if input_contract is not None:
        headers["input_contract"] = input_contract.model_dump_json()
    sizes = {DENSE_FILE: save_state(dense_model, out_dir / DENSE_FILE, headers)}
    sizes[LOWRANK_FILE] = save_state(lowrank_model, out_dir / LOWRANK_FILE, headers)
    meta = lowrank_metadata(
        arch=arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        structure=lowrank_structure(lowrank_model),
        input_contract=input_contract,
        extra=extra_metadata,
    )
    write_text_atomic(out_dir / LOWRANK_META, json.dumps(meta, indent=2) + "\n")
    sizes[LOWRANK_META] = (out_dir / LOWRANK_META).stat().st_size
    exported = with_raw_input(lowrank_model.to("cpu"), input_contract)
    shape = tuple(input_contract.shape) if input_contract is not None else network_shape
    export_onnx(
        exported,
        shape,
        out_dir / ONNX_FILE,
        metadata=onnx_metadata(input_contract, network_shape, model_info),
    )
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
    if meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise ExportError(
            f"{path} has format_version {meta.get('format_version')!r}; this version of "
            f"lorita reads {', '.join(str(v) for v in READABLE_FORMAT_VERSIONS)}"
        )
    return meta


def read_input_contract(folder: str | Path) -> InputContract | None:
    """The raw input the folder's models take (None for folders written before there
    was one: their models take normalised tensors)."""
    meta = _read_metadata(Path(folder))
    return InputContract.model_validate(meta["input"]) if "input" in meta else None


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


def _with_contract(network: nn.Module, meta: dict[str, Any], preprocess: bool) -> nn.Module:
    if not preprocess or "input" not in meta:
        return network
    return RawInputModel(network, InputContract.model_validate(meta["input"])).eval()


def load_lowrank(
    folder: str | Path, model: nn.Module | None = None, *, preprocess: bool = True
) -> nn.Module:
    """The compact low-rank model saved in `folder`, ready for inference on raw input.

    It takes the data as the dataset stores it (see MODEL_CARD.md or
    `read_input_contract(folder)`: layout, values) and normalises it itself.
    `preprocess=False` returns the bare network, which takes normalised NCHW tensors
    as in training. Without `model`, the architecture named in lowrank.json is rebuilt
    from the zoo; with a plain `model` of the same architecture, it is converted (a
    copy) instead.
    """
    folder = Path(folder)
    meta = _read_metadata(folder)
    plain = _build_plain(meta) if model is None else model
    skeleton = apply_lowrank_structure(plain, meta["structure"], inplace=False)
    network = _load_weights(skeleton, folder / LOWRANK_FILE)
    return _with_contract(network, meta, preprocess)


def load_dense(
    folder: str | Path, model: nn.Module | None = None, *, preprocess: bool = True
) -> nn.Module:
    """The truncated model in the original structure (model.safetensors), on raw input
    like load_lowrank (`preprocess=False`: the bare network)."""
    folder = Path(folder)
    meta = _read_metadata(folder)
    plain = _build_plain(meta) if model is None else model
    return _with_contract(_load_weights(plain, folder / DENSE_FILE), meta, preprocess)
