"""VGG, CIFAR style (conv stack + small classifier), with or without BatchNorm.

Max-pooling layers are only placed while the feature map is still larger than
1x1, so the same configuration works for 8x8, 28x28 and 32x32 inputs; an
adaptive average pool before the classifier makes any remaining size 1x1.
"""

from __future__ import annotations

from torch import Tensor, nn

POOL = "M"
# Output channels of each 3x3 conv, "M" for a 2x2 max-pool (Simonyan & Zisserman, table 1).
CONFIGS: dict[str, list[int | str]] = {
    name: [POOL if item == POOL else int(item) for item in layout.split()]
    for name, layout in {
        "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
        "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
        "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
        "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
    }.items()
}


def _features(
    config: list[int | str], in_channels: int, image_size: int, batch_norm: bool
) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for item in config:
        if item == POOL:
            if size > 1:
                # ceil_mode keeps odd sizes (7 -> 4) from shrinking to nothing too early.
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                size = (size + 1) // 2
            continue
        layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """`layout` is a key of CONFIGS; without `batch_norm` the conv and hidden Linear
    layers are followed by ReLU only (the original VGG)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        *,
        layout: str,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        config = CONFIGS[layout]
        self.features = _features(config, in_channels, image_size, batch_norm)
        self.pool = nn.AdaptiveAvgPool2d(1)
        width = int([c for c in config if c != POOL][-1])
        norm = [nn.BatchNorm1d(width)] if batch_norm else []
        self.classifier = nn.Sequential(
            nn.Linear(width, width), *norm, nn.ReLU(inplace=True), nn.Linear(width, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
