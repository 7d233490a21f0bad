"""Small seeded models with the layouts pytorch-grad-cam's tests and examples use
(torchvision's ResNet-18 and VGG-11, timm's ViT and Swin), and its test image.

pytorch-grad-cam's suite reads ``examples/both.png`` and pretrained torchvision / timm
weights; here a seeded random image and camlens's same-layout models stand in, small enough
for the whole folder to run in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlens.models import ResNet, SwinStyle, VisionTransformer, tiny_vgg11
from camlens.models.resnet import BasicBlock


def small_resnet18(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """ResNet-18's layout (two BasicBlocks per stage: ``layer4[-1]``, ``layer4[-2]``), 8 wide."""
    torch.manual_seed(0)
    return ResNet(
        BasicBlock, [2, 2, 2, 2], num_classes=num_classes, width=8, in_channels=in_channels
    ).eval()


def small_vgg11(num_classes: int = 200) -> nn.Module:
    """VGG-11's layout (``features[-1]``), 1/16 of the channels."""
    torch.manual_seed(0)
    return tiny_vgg11(num_classes=num_classes).eval()


@pytest.fixture
def numpy_image() -> np.ndarray:
    """A 48 × 56 BGR ``uint8`` image (pytorch-grad-cam reads ``examples/both.png``)."""
    return np.random.default_rng(0).integers(0, 256, (48, 56, 3), dtype=np.uint8)


@pytest.fixture
def vit() -> nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, num_classes=10).eval()


@pytest.fixture
def swin() -> nn.Module:
    torch.manual_seed(0)
    return SwinStyle(num_classes=10).eval()


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize (the tests only need an image of that size)."""
    rows = np.arange(height) * image.shape[0] // height
    columns = np.arange(width) * image.shape[1] // width
    return image[rows][:, columns]
