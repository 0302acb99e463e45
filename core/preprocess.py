"""The preprocessing step of exported models, and the raw arrays it expects.

`RawInput` performs, inside the model, what the data pipeline does before training
(core.data.splits): reorder to NCHW, cast to float32, divide by the contract's
divisor, subtract the channel mean and divide by the channel std, with the same
float32 operations in the same order, so a raw array gives the same outputs as the
pipeline's normalised tensor did. `RawInputModel` puts it in front of a network;
the loaders of core.export and model.onnx are built from it.

Training and the rank search keep working on the normalised tensors; only the
exported artifacts are wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.result import InputContract

if TYPE_CHECKING:
    from core.data.splits import RawDataset


class RawInput(nn.Module):
    """Raw images in the contract's layout -> normalised (N, C, H, W) float32."""

    def __init__(self, contract: InputContract) -> None:
        super().__init__()
        self.layout = contract.layout
        self.sample_shape = tuple(contract.shape)
        self.divisor = float(contract.divisor)
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(contract.mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(contract.std, dtype=torch.float32).view(shape))

    def _check(self, x: torch.Tensor) -> None:
        sample = tuple(x.shape[1:])
        if sample == self.sample_shape:
            return
        # (N, 1, H, W) is unambiguous for one-channel data stored as (N, H, W).
        if self.layout == "NHW" and sample == (1, *self.sample_shape):
            return
        expected = ", ".join(str(v) for v in ("N", *self.sample_shape))
        raise ValueError(
            f"expected raw input of shape ({expected}) in layout {self.layout}, as the "
            f"training data was stored; got {tuple(x.shape)}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        self._check(x)
        if self.layout == "NHW" and x.dim() == 3:
            x = x.unsqueeze(1)
        elif self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        x = x.to(device=self.mean.device, dtype=torch.float32)
        if self.divisor != 1.0:
            x = x / self.divisor
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"layout={self.layout}, shape={self.sample_shape}, divisor={self.divisor:g}"


class RawInputModel(nn.Module):
    """A network that takes raw input: `preprocess` (RawInput), then `network`.

    `network` is the bare model that takes normalised tensors (as in training);
    `contract` says what the raw input is.
    """

    def __init__(self, network: nn.Module, contract: InputContract) -> None:
        super().__init__()
        self.preprocess = RawInput(contract)
        self.network = network
        self.contract = contract

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(x))


def with_raw_input(network: nn.Module, contract: InputContract | None) -> nn.Module:
    """`network` behind its preprocessing; as is when there is no contract."""
    return network if contract is None else RawInputModel(network, contract)


def raw_arrays(raw: RawDataset, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a loaded dataset in the user's own layout and values.

    These are the arrays an exported model takes: the dataset's values before any
    division or normalisation, in the axis order it stores (the contract's layout).
    """
    x = getattr(raw, f"x_{split}")
    y = getattr(raw, f"y_{split}")
    if raw.layout == "NHW":
        x = x[:, 0]
    elif raw.layout == "NHWC":
        x = x.permute(0, 2, 3, 1)
    return x.contiguous().numpy(), y.numpy()
