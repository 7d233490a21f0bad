"""Colouring segmentation label maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from camlens.errors import InputShapeError
from camlens.image._arrays import _to_numpy


def label_palette(n: int = 256) -> np.ndarray:
    """Return ``n`` distinct colours, ``uint8 [n, 3]``, for segmentation labels.

    The PASCAL VOC scheme: the bits of the label are spread over the high bits of R, G and B
    (bit 0 -> R, bit 1 -> G, bit 2 -> B, then the next bit down in each channel). Label 0 is
    black (background), 1 is dark red, 2 dark green, 3 olive, 4 navy, ...
    """
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    labels = np.arange(n, dtype=np.int64)
    palette = np.zeros((n, 3), dtype=np.int64)
    for level in range(8):
        for channel in range(3):
            bit = (labels >> (3 * level + channel)) & 1
            palette[:, channel] |= bit << (7 - level)
    return palette.astype(np.uint8)


def mask_to_rgb(labels: Any, palette: Any = None) -> np.ndarray:
    """Colour an integer label map: ``[H, W]`` -> ``uint8 [H, W, 3]`` RGB.

    Args:
        labels: integer (or bool) labels, any shape; numpy array or torch tensor.
        palette: ``[N, 3]`` RGB colours (``uint8`` values), label ``k`` gets ``palette[k]``.
            Defaults to :func:`label_palette` with 256 entries (label 0 black).

    Raises:
        TypeError: the labels are not integers.
        ValueError: a label is negative or has no colour in the palette.
    """
    arr = _to_numpy(labels)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"labels must be integers; got {arr.dtype}")
    colours = label_palette() if palette is None else np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) == 0:
        raise InputShapeError(f"palette must be [N, 3]; got shape {colours.shape}")
    colours = np.clip(colours, 0, 255).astype(np.uint8)
    index = arr.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= len(colours)):
        raise ValueError(
            f"labels span {index.min()}..{index.max()} but the palette has {len(colours)} "
            "colours (labels must be in [0, N))"
        )
    return colours[index]
