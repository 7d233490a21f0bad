"""Array checks and conversions shared by the modules of :mod:`camlens.image`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camlens.errors import InputShapeError, NonFiniteError


def _to_numpy(array: Any) -> np.ndarray:
    """View a numpy array, torch tensor (any device) or nested list as a numpy array."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _check_finite(array: np.ndarray, what: str) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise NonFiniteError(f"{what} contains NaN or infinity; clean it before drawing it")


def _to_uint8_image(image: Any, what: str, *, keep_channels: bool = False) -> np.ndarray:
    """Convert an image to ``uint8``: ``[H, W, 3]`` RGB, or with ``keep_channels`` as is.

    Accepted: ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` and ``[H, W, 4]`` arrays (or torch
    tensors) of ``uint8``, ``bool`` (False/True -> 0/255), other integers in [0, 255], or
    floats in [0, 1] (clipped, then rounded). Without ``keep_channels`` grey is replicated
    to 3 channels and RGBA is composited over white.
    """
    arr = _to_numpy(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputShapeError(
            f"{what} must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"{what} has integer values outside [0, 255] ({arr.min()}..{arr.max()}); "
                "convert it to uint8 or to floats in [0, 1] first"
            )
        out = arr.astype(np.uint8)
    elif arr.dtype.kind == "f":
        _check_finite(arr, what)
        out = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise TypeError(f"{what} has unsupported dtype {arr.dtype}")
    if keep_channels:
        return out
    if out.ndim == 2:
        return np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[2] == 4:
        alpha = out[:, :, 3:].astype(np.float32) / np.float32(255)
        rgb = out[:, :, :3].astype(np.float32) * alpha + np.float32(255) * (1 - alpha)
        return np.rint(rgb).astype(np.uint8)
    return out
