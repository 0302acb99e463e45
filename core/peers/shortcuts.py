"""ResNet's zero-padding shortcut (core.models.resnet.PadShortcut) and structured pruning.

Torch-Pruning's dependency graph cannot follow a channel pad, so for the search each
PadShortcut is written as a traceable 1x1 selection conv (to_traceable), and after
pruning that conv becomes a parameter-free channel scatter (from_traceable).
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.resnet import PadShortcut

# Weight of a selection entry: non-zero, so the mapping survives pruning and can be
# read back, but so small that its square is 0 in float32 and it adds nothing to a
# channel's magnitude importance.
_SELECTION_MARK = 1e-30


class SelectionShortcut(nn.Conv2d):
    """A zero-padding shortcut written as a 1x1 strided conv, for tracing only.

    DepGraph treats `F.pad` on the channel dimension as element-wise and would couple
    channel i of the input with channel i of the output; as a conv, its inputs and
    outputs are pruned with their own groups, and entry [j, i] records that output
    channel j carries input channel i.
    """

    def __init__(self, shortcut: PadShortcut, in_channels: int) -> None:
        out_channels = in_channels + shortcut.extra
        super().__init__(in_channels, out_channels, 1, stride=shortcut.stride, bias=False)
        with torch.no_grad():
            self.weight.zero_()
            before = shortcut.extra // 2
            for i in range(in_channels):
                self.weight[before + i, i] = _SELECTION_MARK


class ChannelScatterShortcut(nn.Module):
    """Parameter-free shortcut of a pruned residual stage: strided subsampling, then
    output channel j is input channel `source[j]`, or zero where `source[j]` equals the
    input width (the channels the original shortcut padded with zeros)."""

    def __init__(self, source: torch.Tensor, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("source", source.to(torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        with_zero = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        return with_zero.index_select(1, self.source)

    @classmethod
    def from_selection(cls, selection: SelectionShortcut) -> ChannelScatterShortcut:
        matrix = selection.weight.detach()[:, :, 0, 0] != 0
        carried = matrix.any(dim=1)
        source = torch.where(carried, matrix.float().argmax(dim=1), selection.in_channels)
        return cls(source.cpu(), selection.stride[0])

    def extra_repr(self) -> str:
        return f"out={self.source.numel()}, stride={self.stride}"


def _in_channels_of(model: nn.Module, modules: list[nn.Module], example: torch.Tensor) -> dict:
    """Input width of each module, from one forward pass (a shortcut does not store it)."""
    widths: dict[int, int] = {}

    def record(module: nn.Module, args: tuple) -> None:  # returns None: inputs unchanged
        widths[id(module)] = args[0].shape[1]

    hooks = [m.register_forward_pre_hook(record) for m in modules]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return widths


def to_traceable(model: nn.Module, example: torch.Tensor) -> None:
    pads = {name: m for name, m in model.named_modules() if type(m) is PadShortcut}
    if not pads:
        return
    widths = _in_channels_of(model, list(pads.values()), example)
    for name, shortcut in pads.items():
        stand_in = SelectionShortcut(shortcut, widths[id(shortcut)])
        _set_submodule(model, name, stand_in.to(example.device, example.dtype))


def from_traceable(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, SelectionShortcut):
            scatter = ChannelScatterShortcut.from_selection(module)
            _set_submodule(model, name, scatter.to(module.weight.device))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
