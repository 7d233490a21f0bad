"""Turning images into model inputs, and scaling maps to ``[0, 1]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from camlens.errors import InputShapeError
from camlens.image._arrays import _check_finite, _to_numpy
from camlens.postprocess import SCALE_EPSILON

#: ImageNet's channel statistics: the normalisation most pretrained backbones expect (the
#: default of the command line and of whole-slide runs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_image(
    img: np.ndarray | Image.Image,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """Turn an ``[H, W, C]`` image into a normalised model input ``[1, C, H, W]``.

    Same defaults and numbers as pytorch-grad-cam's ``preprocess_image`` (torchvision's
    ``ToTensor`` then ``Normalize``), without torchvision:

    * ``uint8`` input is divided by 255 in float32 (torch's default dtype);
    * float input is taken **as is**, in its own dtype (float64 stays float64): a float
      image in ``[0, 255]`` is *not* rescaled, exactly like ``ToTensor``;
    * then ``(x - mean[c]) / std[c]`` per channel, in the tensor's dtype.

    The defaults ``mean = std = (0.5, 0.5, 0.5)`` map ``[0, 1]`` to ``[-1, 1]``. For
    ImageNet models pass ``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``.

    Beyond pytorch-grad-cam, grey ``[H, W]`` (or ``[H, W, 1]``) input is accepted and
    replicated to ``len(mean)`` channels, giving ``[1, 3, H, W]`` for the defaults, and a
    Pillow image is accepted (converted to RGB unless it is grey).

    Raises:
        InputShapeError: the array is not ``[H, W]`` / ``[H, W, C]``, or ``C`` does not
            match ``len(mean)``.
        TypeError: integer input other than ``uint8`` (torchvision fails on it too).
        ValueError: a ``std`` entry is zero.
    """
    if isinstance(img, torch.Tensor):
        raise TypeError(
            "preprocess_image expects an [H, W, C] numpy array (or a PIL image); got a "
            "torch.Tensor, which is probably already a model input"
        )
    if isinstance(img, Image.Image):
        img = np.asarray(img if img.mode in ("RGB", "L") else img.convert("RGB"))
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputShapeError(f"preprocess_image expects [H, W, C] or [H, W]; got {arr.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if arr.dtype == np.uint8:
        tensor = chw.to(dtype=torch.get_default_dtype()).div(255)
    elif arr.dtype.kind == "f":
        tensor = chw
    else:
        raise TypeError(
            f"preprocess_image expects uint8 (0..255) or float (0..1) pixels; got {arr.dtype}"
        )
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype).reshape(-1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype).reshape(-1)
    if mean_t.numel() != std_t.numel():
        raise InputShapeError(f"mean has {mean_t.numel()} entries but std has {std_t.numel()}")
    channels, wanted = tensor.shape[0], mean_t.numel()
    if channels == 1 and wanted > 1:
        tensor = tensor.expand(wanted, -1, -1)
    elif wanted not in (1, channels):
        raise InputShapeError(
            f"the image has {channels} channels but mean/std have {wanted} entries"
        )
    if bool((std_t == 0).any()):
        raise ValueError(f"std evaluated to zero in {tensor.dtype}: {list(std)}")
    out = tensor.sub(mean_t.view(-1, 1, 1)).div(std_t.view(-1, 1, 1))
    return out.unsqueeze(0)


def scale_to_unit(array: Any, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Min-max scale to ``[0, 1]`` as pytorch-grad-cam's ``scale_cam_image`` does.

    ``(x - min) / (1e-7 + max(x - min))``, computed in the input's float precision and
    returned as float32, so the numbers equal pytorch-grad-cam's. The ``1e-7`` keeps a
    constant map (all zeros included) at zero instead of NaN; the maximum lands at
    ``1 - ~1e-7`` rather than exactly 1.

    Args:
        array: any shape; numpy array or torch tensor.
        axis: axes to scale over; ``None`` (default) scales the whole array together. Use
            ``axis=(-2, -1)`` to scale each ``[H, W]`` map of a batch on its own, as
            ``scale_cam_image`` does.

    Raises:
        NonFiniteError: the input contains NaN or infinity.
        InputShapeError: the input is empty.
    """
    arr = _to_numpy(array)
    if arr.size == 0:
        raise InputShapeError("cannot scale an empty array")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    _check_finite(arr, "array")
    shifted = arr - np.min(arr, axis=axis, keepdims=True)
    scaled = shifted / (SCALE_EPSILON + np.max(shifted, axis=axis, keepdims=True))
    return np.asarray(scaled, dtype=np.float32)
