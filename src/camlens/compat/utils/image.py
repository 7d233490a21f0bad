"""``pytorch_grad_cam.utils.image`` → camlens's image helpers (NumPy and Pillow; no OpenCV,
SciPy or matplotlib), plus :func:`scale_accross_batch_and_channels` (upstream's spelling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from camlens.errors import InputShapeError
from camlens.image import (
    create_labels_legend,
    deprocess_image,
    preprocess_image,
    scale_cam_image,
    show_cam_on_image,
    show_factorization_on_image,
)

__all__ = [
    "create_labels_legend",
    "deprocess_image",
    "preprocess_image",
    "scale_accross_batch_and_channels",
    "scale_cam_image",
    "show_cam_on_image",
    "show_factorization_on_image",
]


def scale_accross_batch_and_channels(tensor: Any, target_size: Sequence[int]) -> np.ndarray:
    """``(B, C, h, w)`` maps → ``(B, C, height, width)``: each map min–max scaled and resized
    by :func:`scale_cam_image`; ``target_size`` is ``(width, height)`` (OpenCV's order)."""
    array = np.asarray(tensor)
    if array.ndim != 4:
        raise InputShapeError(f"expected maps (B, C, h, w), got shape {array.shape}")
    batch, channels = array.shape[:2]
    width, height = (int(s) for s in target_size)
    scaled = scale_cam_image(array.reshape(batch * channels, *array.shape[2:]), (width, height))
    return scaled.reshape(batch, channels, height, width)
