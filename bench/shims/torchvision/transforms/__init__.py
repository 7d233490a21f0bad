"""``torchvision.transforms`` subset for the benchmark-only torchvision stand-in.

Only ``Compose``, ``ToTensor`` and ``Normalize`` (what pytorch-grad-cam's
``preprocess_image`` uses), with torchvision's numeric semantics.
"""

from __future__ import annotations

from typing import Any

import torch

from . import functional
from .functional import InterpolationMode

__all__ = ["Compose", "InterpolationMode", "Normalize", "ToTensor", "functional"]


class Compose:
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms: list) -> None:
        self.transforms = transforms

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """PIL image / ``HxWxC`` ndarray -> ``CxHxW`` tensor; uint8 is scaled to [0, 1]."""

    def __call__(self, pic: Any) -> torch.Tensor:
        return functional.to_tensor(pic)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normalize(torch.nn.Module):
    """``(x - mean[c]) / std[c]`` per channel of a float ``(..., C, H, W)`` tensor."""

    def __init__(self, mean: Any, std: Any, inplace: bool = False) -> None:
        super().__init__()
        self.mean = mean
        self.std = std
        self.inplace = inplace

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return functional.normalize(tensor, self.mean, self.std, self.inplace)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"
