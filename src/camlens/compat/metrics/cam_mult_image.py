"""``pytorch_grad_cam.metrics.cam_mult_image`` → camlens: the confidence-change classes
(:mod:`camlens.metrics.familiar`, over :func:`camlens.metrics.confidence_change`) and the
perturbation they apply."""

from __future__ import annotations

import torch

from camlens.metrics.familiar import (
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
)

__all__ = [
    "CamMultImageConfidenceChange",
    "DropInConfidence",
    "IncreaseInConfidence",
    "multiply_tensor_with_cam",
]


def multiply_tensor_with_cam(input_tensor: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """The (normalised) input times the map, broadcast over channels: ``(C, H, W) · (H, W)``."""
    return input_tensor * cam
