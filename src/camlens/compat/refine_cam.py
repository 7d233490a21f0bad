"""``pytorch_grad_cam.refine_cam`` → camlens: RefineCAM, a product of per-layer CAMs.

One ``base_method`` instance per target layer (extra keyword arguments go to each); each
gives its final map in [0, 1]; their product, min–max scaled, is the result. Multiplying
keeps what every layer agrees on, which denoises maps of early layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.familiar import BaseCAM, GradCAMPlusPlus
from camlens.image import scale_cam_image
from camlens.layers import LayerSpec
from camlens.reshape import ReshapeTransform

__all__ = ["RefineCAM"]


class RefineCAM:
    """``RefineCAM(model, target_layers, reshape_transform=None,
    base_method=GradCAMPlusPlus, **kwargs)``; ``cam(input_tensor, targets=None,
    eigen_smooth=False)`` → ``(B, H, W)`` float32 in [0, 1]."""

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        base_method: type[BaseCAM] = GradCAMPlusPlus,
        **kwargs: Any,
    ) -> None:
        self.base_cam_per_layer = [
            base_method(model, [layer], reshape_transform, **kwargs) for layer in target_layers
        ]

    def __enter__(self) -> RefineCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: hooks exist only during a call."""
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.forward(*args, **kwargs)

    def forward(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """The product of the per-layer maps, min–max scaled per image."""
        maps = [
            cam(input_tensor, targets, eigen_smooth=eigen_smooth) for cam in self.base_cam_per_layer
        ]
        return scale_cam_image(np.prod(np.stack(maps), axis=0))
