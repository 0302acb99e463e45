"""Fully connected network, as in the paper's MNIST experiments.

Blocks of Linear -> BatchNorm1d -> ReLU, then a Linear classifier. Every Linear
is eligible for factorization. The network flattens its input itself, so it
takes the same (N, C, H, W) batches as the convolutional models.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

DEFAULT_HIDDEN = (500, 500, 500)


class FCN(nn.Module):
    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = DEFAULT_HIDDEN
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_features
        for out in hidden:
            # The bias is kept (as in the authors' code) even though BatchNorm follows:
            # the plain and the factorized model must have the same parameters.
            blocks += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            width = out
        blocks.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.flatten(1))


def build_fcn(
    num_classes: int, in_channels: int, image_size: int, hidden: Sequence[int] = DEFAULT_HIDDEN
) -> FCN:
    return FCN(in_channels * image_size * image_size, num_classes, hidden)
