"""VGG-11 with torchvision's attribute layout (``features``, ``avgpool``, ``classifier``).

:func:`vgg11` has the state_dict keys and shapes of ``torchvision.models.vgg11``, so paths
such as ``model.features[-1]`` (the last max-pooling) or ``model.features[18]`` (the last
convolution's ReLU) mean the same here as in user code; :func:`tiny_vgg11` is the same
layout with fewer channels, for fast tests.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["VGG", "tiny_vgg11", "vgg11"]

#: torchvision's configuration "A" (VGG-11): output channels of each 3x3 conv, "M" a pooling.
VGG11_LAYOUT: tuple[int | str, ...] = (
    64,
    "M",
    128,
    "M",
    256,
    256,
    "M",
    512,
    512,
    "M",
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """``features`` (conv-ReLU stacks and max-poolings) → ``avgpool`` (adaptive, 7 × 7) →
    ``classifier`` (Linear-ReLU-Dropout twice, then Linear).

    Args:
        num_classes: the classifier's outputs.
        width_divisor: every conv's channels divided by this (1: torchvision's sizes).
        hidden: the classifier's hidden width (torchvision: 4096).
        in_channels: the input's channels.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_divisor: int = 1,
        hidden: int = 4096,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG11_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = max(int(item) // width_divisor, 1)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def vgg11(num_classes: int = 1000) -> VGG:
    """VGG-11 with torchvision's layout and sizes (randomly initialised)."""
    return VGG(num_classes=num_classes)


def tiny_vgg11(num_classes: int = 10, width_divisor: int = 16, hidden: int = 32) -> VGG:
    """VGG-11's layout with 1/16 of the channels and a 32-wide classifier, for fast tests."""
    return VGG(num_classes=num_classes, width_divisor=width_divisor, hidden=hidden)
