"""ResNets with torchvision's attribute layout, plus an smp-style dilated ResNet encoder.

The state_dict keys and shapes of :func:`resnet50` / :func:`resnet18` are those of
``torchvision.models.resnet50`` / ``resnet18``, so target-layer paths such as
``model.layer4[-1]`` or ``model.layer4[-1].conv3`` mean the same thing here as in user code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetEncoder",
    "init_weights",
    "resnet18",
    "resnet50",
    "tiny_resnet",
]


def init_weights(module: nn.Module) -> None:
    """Initialise a model in place: kaiming-normal convs, BatchNorm weight 1 / bias 0.

    This is torchvision's ResNet init. Linear layers keep PyTorch's default init. Everything
    draws from the global torch RNG, so a model built after ``torch.manual_seed`` is
    deterministic.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """torchvision's projection shortcut: ``Sequential(conv1x1, bn)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual, torchvision's ``BasicBlock`` layout (ResNet-18/34).

    Unlike torchvision this block accepts ``dilation > 1``, which the dilated encoder needs.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block, torchvision's ``Bottleneck`` (ResNet v1.5).

    The stride sits on the 3x3 conv (``conv2``), as in torchvision, so the layouts and the
    spatial sizes of every intermediate activation match.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class _ResNetTrunk(nn.Module):
    """Stem + four stages shared by :class:`ResNet` and :class:`ResNetEncoder`."""

    def __init__(
        self,
        block: Block,
        layers: list[int] | tuple[int, int, int, int],
        width: int = 64,
        in_channels: int = 3,
        dilations: tuple[int, int, int, int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must have 4 entries, got {list(layers)}")
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = (1, 2, 2, 2)
        self.layer1 = self._make_layer(block, width, layers[0], strides[0], dilations[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], strides[1], dilations[1])
        self.layer3 = self._make_layer(block, width * 4, layers[2], strides[2], dilations[2])
        self.layer4 = self._make_layer(block, width * 8, layers[3], strides[3], dilations[3])

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int, dilation: int
    ) -> nn.Sequential:
        # A dilated stage keeps its resolution (stride 1) and dilates every 3x3 conv in it,
        # which is what smp's ``make_dilated`` does to a pretrained torchvision ResNet.
        if dilation > 1:
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _downsample(self.inplanes, planes * block.expansion, stride)
        modules: list[nn.Module] = [block(self.inplanes, planes, stride, downsample, dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            modules.append(block(self.inplanes, planes, dilation=dilation))
        return nn.Sequential(*modules)


class ResNet(_ResNetTrunk):
    """Image classifier with torchvision's ``ResNet`` attribute layout.

    Attributes: ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``; ``width`` scales
    every stage (64 gives the real ResNets).
    """

    def __init__(
        self,
        block: Block,
        layers: list[int] | tuple[int, int, int, int],
        num_classes: int = 1000,
        width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__(block, layers, width=width, in_channels=in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class ResNetEncoder(_ResNetTrunk):
    """segmentation_models_pytorch-style ResNet encoder (a trunk without ``avgpool``/``fc``).

    Same attribute names and state_dict keys as the torchvision trunk, so smp target paths like
    ``model.encoder.layer4`` work. ``output_stride=16`` dilates ``layer4`` (dilation 2),
    ``output_stride=8`` dilates ``layer3`` (2) and ``layer4`` (4); 32 dilates nothing.
    ``forward`` returns smp's six features ``[x, stem, layer1, layer2, layer3, layer4]``.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int] | tuple[int, int, int, int],
        width: int = 64,
        in_channels: int = 3,
        output_stride: int = 16,
    ) -> None:
        dilations = {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}
        if output_stride not in dilations:
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        super().__init__(
            block, layers, width=width, in_channels=in_channels, dilations=dilations[output_stride]
        )
        self.output_stride = output_stride
        e = block.expansion
        self.out_channels: tuple[int, ...] = (
            in_channels,
            width,
            width * e,
            width * 2 * e,
            width * 4 * e,
            width * 8 * e,
        )
        init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [x]
        x = self.relu(self.bn1(self.conv1(x)))
        features.append(x)
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 with exactly torchvision's layout (25,557,032 parameters at 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 with exactly torchvision's layout (11,689,512 parameters at 1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


def tiny_resnet(num_classes: int = 10, width: int = 8, in_channels: int = 3) -> ResNet:
    """A very small ResNet (BasicBlock, one block per stage) with the torchvision layout.

    Fast enough for unit tests while keeping paths such as ``model.layer4[-1].conv2``.
    """
    return ResNet(
        BasicBlock, [1, 1, 1, 1], num_classes=num_classes, width=width, in_channels=in_channels
    )
