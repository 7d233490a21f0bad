"""``pytorch_grad_cam.sobel_cam`` → camlens: the Sobel edge map, a model-free baseline
"explanation" (OpenCV's numbers, computed with NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from camlens.errors import InputShapeError

__all__ = ["sobel_cam"]

_SMOOTH = np.array([1.0, 2.0, 1.0])
_DERIVATIVE = np.array([-1.0, 0.0, 1.0])


def _saturate(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _grey(img: np.ndarray) -> np.ndarray:
    """OpenCV's RGB → grey: fixed-point weights for ``uint8``, exact ones otherwise."""
    if img.dtype == np.uint8:
        r, g, b = (img[..., i].astype(np.int64) for i in range(3))
        return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).astype(np.float64)
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _filter(grey: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """A separable 3 × 3 correlation with OpenCV's default border (reflect, edge not
    repeated)."""
    padded = np.pad(grey, 1, mode="reflect")
    vertical = sum(w * padded[i : i + grey.shape[0], :] for i, w in enumerate(rows))
    return sum(w * vertical[:, j : j + grey.shape[1]] for j, w in enumerate(columns))


def sobel_cam(img: Any) -> np.ndarray:
    """``(H, W, 3)`` RGB image → ``(H, W)`` ``uint8``: the mean of the absolute horizontal
    and vertical Sobel derivatives of its grey levels, each saturated to ``uint8``."""
    array = np.asarray(img)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InputShapeError(f"sobel_cam expects an RGB image (H, W, 3), got {array.shape}")
    grey = _grey(array)
    horizontal = _saturate(np.abs(_filter(grey, _SMOOTH, _DERIVATIVE)))
    vertical = _saturate(np.abs(_filter(grey, _DERIVATIVE, _SMOOTH)))
    return _saturate(0.5 * horizontal.astype(np.float64) + 0.5 * vertical)
