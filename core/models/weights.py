"""A user's weights (.safetensors) checked against an architecture, and loaded into it.

core.weights checks the file itself without torch (the API does that on upload);
this module needs torch for what only a built model knows: the names and shapes of
its state dict. `check_weights_file` builds the model on the meta device, so an
upload of a large architecture is checked without allocating its parameters;
`load_weights` loads the tensors one at a time (safetensors.safe_open, never a
pickle) into a real model, refusing NaN or infinite values.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from core.errors import SpecError
from core.models import build_model
from core.weights import (
    DEFAULT_MAX_BYTES,
    WeightsError,
    WeightsHeader,
    check_shapes,
    read_header,
)


def expected_state(
    arch: str, num_classes: int, in_channels: int, image_size: int, **options
) -> dict[str, torch.Tensor]:
    """The state dict of `arch` as built for the dataset, on the meta device (shapes and
    dtypes, no memory). A model whose construction needs real numbers (a few compute
    values with .item(), or a build check runs an operation without a meta kernel) is
    built on the CPU instead, which also raises the real error if there is one."""
    try:
        with torch.device("meta"):
            model = build_model(arch, num_classes, in_channels, image_size, **options)
    except (NotImplementedError, RuntimeError, SpecError):
        model = build_model(arch, num_classes, in_channels, image_size, **options)
    return model.state_dict()


def _check_against(header: WeightsHeader, expected: dict[str, torch.Tensor], *, arch: str) -> None:
    check_shapes(header.shapes(), {k: tuple(v.shape) for k, v in expected.items()}, arch=arch)
    wrong_kind = [
        name
        for name, entry in header.tensors.items()
        if entry.is_float != expected[name].dtype.is_floating_point
    ]
    if wrong_kind:
        details = ", ".join(
            f"{name} is {header.tensors[name].dtype}, expected {expected[name].dtype}"
            for name in wrong_kind
        )
        raise WeightsError(f"the weights do not fit {arch}: wrong dtype: {details}")


def check_weights_file(
    path: Path | str,
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **options,
) -> WeightsHeader:
    """The header of a weights file that fits `arch`; WeightsError listing what does not.

    Reads the header only (no tensor); `load_weights` checks the values.
    """
    header = read_header(path, max_bytes=max_bytes)
    expected = expected_state(arch, num_classes, in_channels, image_size, **options)
    _check_against(header, expected, arch=arch)
    return header


def load_weights(
    model: nn.Module, path: Path | str, *, arch: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> nn.Module:
    """Load a checked weights file into `model` (strictly, in place); returns `model`.

    Every tensor is read on its own and refused if it holds NaN or infinity, so a
    bad file fails here with its tensor's name instead of as a diverged training.
    """
    header = read_header(path, max_bytes=max_bytes)
    target = model.state_dict()
    _check_against(header, target, arch=arch)
    state = {}
    with safe_open(str(path), framework="pt") as handle:
        for name in header.tensors:
            tensor = handle.get_tensor(name)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise WeightsError(
                    f"tensor {name} holds {bad} NaN or infinite value(s); "
                    "these weights cannot be compressed"
                )
            state[name] = tensor.to(target[name].dtype)
    model.load_state_dict(state, strict=True)
    return model
