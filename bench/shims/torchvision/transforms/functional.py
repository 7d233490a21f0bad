"""``torchvision.transforms.functional`` subset for the benchmark-only stand-in.

``to_tensor``, ``normalize`` and ``resize`` (the last is imported by
``pytorch_grad_cam.sess``), following torchvision >= 0.17 semantics
(``resize`` antialiases by default).
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

try:  # PIL is a grad-cam dependency, but keep tensor-only use working without it
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None

__all__ = ["InterpolationMode", "normalize", "resize", "to_tensor"]


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_INT_TO_MODE = {
    0: InterpolationMode.NEAREST,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
    1: InterpolationMode.LANCZOS,
}

_PIL_MODE_TO_NP = {
    "I": np.int32,
    ("I;16" if sys.byteorder == "little" else "I;16B"): np.int16,
    "F": np.float32,
}


def _is_pil(img: Any) -> bool:
    return Image is not None and isinstance(img, Image.Image)


def to_tensor(pic: Any) -> torch.Tensor:
    """torchvision's ``to_tensor``: HWC -> CHW; uint8 -> default float dtype / 255."""
    default_float_dtype = torch.get_default_dtype()
    if isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        if pic.ndim == 2:
            pic = pic[:, :, None]
        img = torch.from_numpy(pic.transpose((2, 0, 1))).contiguous()
        if img.dtype == torch.uint8:
            return img.to(dtype=default_float_dtype).div(255)
        return img
    if not _is_pil(pic):
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
    arr = np.array(pic, _PIL_MODE_TO_NP.get(pic.mode, np.uint8), copy=True)
    img = torch.from_numpy(arr)
    if pic.mode == "1":
        img = 255 * img
    img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
    img = img.permute((2, 0, 1)).contiguous()
    if img.dtype == torch.uint8:
        return img.to(dtype=default_float_dtype).div(255)
    return img


def normalize(tensor: torch.Tensor, mean: Any, std: Any, inplace: bool = False) -> torch.Tensor:
    """torchvision's ``normalize``: ``(tensor - mean) / std`` over the channel dim -3."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
    if not tensor.is_floating_point():
        raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
    if tensor.ndim < 3:
        raise ValueError(
            "Expected tensor to be a tensor image of size (..., C, H, W). Got "
            f"tensor.size() = {tensor.size()}"
        )
    if not inplace:
        tensor = tensor.clone()
    dtype, device = tensor.dtype, tensor.device
    mean_t = torch.as_tensor(mean, dtype=dtype, device=device)
    std_t = torch.as_tensor(std, dtype=dtype, device=device)
    if (std_t == 0).any():
        raise ValueError(
            f"std evaluated to zero after conversion to {dtype}, leading to division by zero."
        )
    if mean_t.ndim == 1:
        mean_t = mean_t.view(-1, 1, 1)
    if std_t.ndim == 1:
        std_t = std_t.view(-1, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


def _output_size(h: int, w: int, size: list[int], max_size: int | None) -> list[int]:
    if len(size) == 1:  # size of the shorter edge; keep the aspect ratio
        short, long = (w, h) if w <= h else (h, w)
        new_short = size[0]
        new_long = int(new_short * long / short)
        if max_size is not None:
            if max_size <= new_short:
                raise ValueError(
                    f"max_size = {max_size} must be strictly greater than the requested "
                    f"size for the smaller edge size = {size}"
                )
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return [new_h, new_w]
    return [size[0], size[1]]


def resize(
    img: Any,
    size: Any,
    interpolation: InterpolationMode | int = InterpolationMode.BILINEAR,
    max_size: int | None = None,
    antialias: bool | None = True,
) -> Any:
    """torchvision's ``resize`` for ``(..., H, W)`` tensors (3-D or 4-D) and PIL images."""
    if isinstance(interpolation, int):
        interpolation = _INT_TO_MODE[interpolation]
    elif not isinstance(interpolation, InterpolationMode):
        raise TypeError("Argument interpolation should be a InterpolationMode or a int")
    if isinstance(size, (list, tuple)):
        if len(size) not in (1, 2):
            raise ValueError(
                f"Size must be an int or a 1 or 2 element tuple/list, not a {len(size)} "
                "element tuple/list"
            )
        if max_size is not None and len(size) != 1:
            raise ValueError(
                "max_size should only be passed if size specifies the length of the smaller "
                "edge, i.e. size should be an int or a sequence of length 1 in torchscript "
                "mode."
            )
    size = [size] if isinstance(size, int) else list(size)

    if _is_pil(img):
        w, h = img.size
        out = _output_size(h, w, size, max_size)
        if [h, w] == out:
            return img
        pil_modes = {
            InterpolationMode.NEAREST: Image.NEAREST,
            InterpolationMode.NEAREST_EXACT: Image.NEAREST,
            InterpolationMode.BILINEAR: Image.BILINEAR,
            InterpolationMode.BICUBIC: Image.BICUBIC,
            InterpolationMode.BOX: Image.BOX,
            InterpolationMode.HAMMING: Image.HAMMING,
            InterpolationMode.LANCZOS: Image.LANCZOS,
        }
        return img.resize(out[::-1], pil_modes[interpolation])

    if not isinstance(img, torch.Tensor):
        raise TypeError(f"img should be PIL Image or Tensor. Got {type(img)}")
    h, w = img.shape[-2:]
    out = _output_size(h, w, size, max_size)
    if [h, w] == out:
        return img

    mode = interpolation.value
    if mode not in ("nearest", "nearest-exact", "bilinear", "bicubic"):
        raise ValueError(f"Tensor resize does not support interpolation {mode!r}")
    antialias = bool(antialias) and mode in ("bilinear", "bicubic")
    squeeze = img.ndim < 4
    x = img.unsqueeze(0) if squeeze else img
    out_dtype = x.dtype
    cast = out_dtype not in (torch.float32, torch.float64)
    if cast:
        x = x.to(torch.float32)
    align_corners = False if mode in ("bilinear", "bicubic") else None
    x = F.interpolate(x, size=out, mode=mode, align_corners=align_corners, antialias=antialias)
    if mode == "bicubic" and out_dtype == torch.uint8:
        x = x.clamp(min=0, max=255)
    if squeeze:
        x = x.squeeze(0)
    if cast:
        if out_dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            x = torch.round(x)
        x = x.to(out_dtype)
    return x
