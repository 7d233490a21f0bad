"""A small 3D CNN for volumetric inputs ``[B, C, D, H, W]`` (e.g. CT/MRI classification)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camlens.models.resnet import init_weights

__all__ = ["Tiny3DCNN"]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class Tiny3DCNN(nn.Module):
    """Volume classifier with a ResNet-like naming (``stem, layer1..layer4, avgpool, fc``).

    Each stage is ``Sequential(Conv3d, BatchNorm3d, ReLU)``; layer2..layer4 halve D, H and W,
    so CAMs on ``layer4`` are 3D maps at 1/8 of the input resolution.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.stem = _conv_block(in_channels, width, stride=1)
        self.layer1 = _conv_block(width, width, stride=1)
        self.layer2 = _conv_block(width, width * 2, stride=2)
        self.layer3 = _conv_block(width * 2, width * 4, stride=2)
        self.layer4 = _conv_block(width * 4, width * 8, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(width * 8, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
