"""Loading, preprocessing and drawing images for class activation maps.

This module is a drop-in replacement for ``pytorch_grad_cam.utils.image`` (1.5.x)::

    from camlens.image import preprocess_image, show_cam_on_image

``preprocess_image`` and ``show_cam_on_image`` return the same numbers as their
pytorch-grad-cam namesakes for the same arguments, bit for bit, without OpenCV or
torchvision: the OpenCV colour maps are rebuilt here (see :func:`colormap_lut`).

Conventions, unless a function says otherwise:

* images are ``numpy`` arrays laid out ``[H, W, C]`` (channels last);
* a float image holds values in ``[0, 1]``, a ``uint8`` image values in ``[0, 255]``;
* colours are RGB. The one exception is ``show_cam_on_image(..., use_rgb=False)``,
  which returns OpenCV's BGR order on purpose, as pytorch-grad-cam does.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from camlens.errors import ImageLoadError, InputShapeError, NonFiniteError

__all__ = [
    "COLORMAP_AUTUMN",
    "COLORMAP_BONE",
    "COLORMAP_CIVIDIS",
    "COLORMAP_COOL",
    "COLORMAP_DEEPGREEN",
    "COLORMAP_HOT",
    "COLORMAP_HSV",
    "COLORMAP_INFERNO",
    "COLORMAP_JET",
    "COLORMAP_MAGMA",
    "COLORMAP_NAMES",
    "COLORMAP_OCEAN",
    "COLORMAP_PARULA",
    "COLORMAP_PINK",
    "COLORMAP_PLASMA",
    "COLORMAP_RAINBOW",
    "COLORMAP_SPRING",
    "COLORMAP_SUMMER",
    "COLORMAP_TURBO",
    "COLORMAP_TWILIGHT",
    "COLORMAP_TWILIGHT_SHIFTED",
    "COLORMAP_VIRIDIS",
    "COLORMAP_WINTER",
    "SIGNED_NEGATIVE_RGB",
    "SIGNED_POSITIVE_RGB",
    "apply_colormap",
    "colormap_lut",
    "label_palette",
    "load_image",
    "make_grid",
    "mask_to_rgb",
    "overlay",
    "preprocess_image",
    "save_image",
    "scale_to_unit",
    "show_cam_on_image",
    "signed_heatmap",
]

PathLike = str | os.PathLike
ColormapLike = int | str | np.ndarray

# --------------------------------------------------------------------------------------
# Colour maps
# --------------------------------------------------------------------------------------

# OpenCV's integer codes (``cv2.COLORMAP_*``), so that code written for OpenCV keeps its
# meaning: ``show_cam_on_image(img, mask, colormap=cv2.COLORMAP_VIRIDIS)`` and
# ``colormap=COLORMAP_VIRIDIS`` (or ``"viridis"``) draw the same picture.
COLORMAP_AUTUMN = 0
COLORMAP_BONE = 1
COLORMAP_JET = 2
COLORMAP_WINTER = 3
COLORMAP_RAINBOW = 4
COLORMAP_OCEAN = 5
COLORMAP_SUMMER = 6
COLORMAP_SPRING = 7
COLORMAP_COOL = 8
COLORMAP_HSV = 9
COLORMAP_PINK = 10
COLORMAP_HOT = 11
COLORMAP_PARULA = 12
COLORMAP_MAGMA = 13
COLORMAP_INFERNO = 14
COLORMAP_PLASMA = 15
COLORMAP_VIRIDIS = 16
COLORMAP_CIVIDIS = 17
COLORMAP_TWILIGHT = 18
COLORMAP_TWILIGHT_SHIFTED = 19
COLORMAP_TURBO = 20
COLORMAP_DEEPGREEN = 21

#: Name of every supported colour map, indexed by its OpenCV code.
COLORMAP_NAMES: tuple[str, ...] = (
    "autumn",
    "bone",
    "jet",
    "winter",
    "rainbow",
    "ocean",
    "summer",
    "spring",
    "cool",
    "hsv",
    "pink",
    "hot",
    "parula",
    "magma",
    "inferno",
    "plasma",
    "viridis",
    "cividis",
    "twilight",
    "twilight_shifted",
    "turbo",
    "deepgreen",
)

_Anchors = tuple[tuple[float, float], ...]


class _AnchoredMap(NamedTuple):
    """A colour map that OpenCV defines as a table sampled from a piecewise-linear curve.

    ``size`` is the number of points of OpenCV's base table (sampled at ``k / (size - 1)``);
    ``red``/``green``/``blue`` are the ``(x, value)`` corners of each channel's curve.
    With ``sqrt`` the curve gives the squared value (Octave's ``pink``).
    """

    size: int
    red: _Anchors
    green: _Anchors
    blue: _Anchors
    sqrt: bool = False


_RAMP_UP: _Anchors = ((0.0, 0.0), (1.0, 1.0))
_RAMP_DOWN: _Anchors = ((0.0, 1.0), (1.0, 0.0))
_ZERO: _Anchors = ((0.0, 0.0), (1.0, 0.0))
_ONE: _Anchors = ((0.0, 1.0), (1.0, 1.0))

# The corners below reproduce OpenCV's base tables (themselves GNU Octave's maps of 64
# entries, Matlab's jet of 256 entries, an approximation of Matlab's parula from 9 points).
# BONE and PINK mix a grey ramp with Octave's "hot" whose knees sit at 3/8 and 3/4:
# bone = (7 * grey + hot[::-1]) / 8 and pink = sqrt((2 * grey + hot) / 3).
_ANCHORED: dict[str, _AnchoredMap] = {
    "jet": _AnchoredMap(
        256,
        red=((0.0, 0.0), (3 / 8, 0.0), (5 / 8, 1.0), (7 / 8, 1.0), (1.0, 0.5)),
        green=((0.0, 0.0), (1 / 8, 0.0), (3 / 8, 1.0), (5 / 8, 1.0), (7 / 8, 0.0), (1.0, 0.0)),
        blue=((0.0, 0.5), (1 / 8, 1.0), (3 / 8, 1.0), (5 / 8, 0.0), (1.0, 0.0)),
    ),
    "hot": _AnchoredMap(
        64,
        red=((0.0, 0.0), (0.4, 1.0), (1.0, 1.0)),
        green=((0.0, 0.0), (0.4, 0.0), (0.8, 1.0), (1.0, 1.0)),
        blue=((0.0, 0.0), (0.8, 0.0), (1.0, 1.0)),
    ),
    "bone": _AnchoredMap(
        64,
        red=((0.0, 0.0), (3 / 4, 21 / 32), (1.0, 1.0)),
        green=((0.0, 0.0), (3 / 8, 21 / 64), (3 / 4, 25 / 32), (1.0, 1.0)),
        blue=((0.0, 0.0), (3 / 8, 29 / 64), (1.0, 1.0)),
    ),
    "pink": _AnchoredMap(
        64,
        red=((0.0, 0.0), (3 / 8, 7 / 12), (1.0, 1.0)),
        green=((0.0, 0.0), (3 / 8, 1 / 4), (3 / 4, 5 / 6), (1.0, 1.0)),
        blue=((0.0, 0.0), (3 / 4, 1 / 2), (1.0, 1.0)),
        sqrt=True,
    ),
    "autumn": _AnchoredMap(64, red=_ONE, green=_RAMP_UP, blue=_ZERO),
    "spring": _AnchoredMap(64, red=_ONE, green=_RAMP_UP, blue=_RAMP_DOWN),
    "cool": _AnchoredMap(64, red=_RAMP_UP, green=_RAMP_DOWN, blue=_ONE),
    "summer": _AnchoredMap(
        64, red=_RAMP_UP, green=((0.0, 0.5), (1.0, 1.0)), blue=((0.0, 0.4), (1.0, 0.4))
    ),
    "winter": _AnchoredMap(11, red=_ZERO, green=_RAMP_UP, blue=((0.0, 1.0), (1.0, 0.5))),
    "ocean": _AnchoredMap(
        64,
        red=((0.0, 0.0), (2 / 3, 0.0), (1.0, 1.0)),
        green=((0.0, 0.0), (1 / 3, 0.0), (1.0, 1.0)),
        blue=_RAMP_UP,
    ),
    "deepgreen": _AnchoredMap(
        64,
        red=((0.0, 0.0), (2 / 3, 0.0), (1.0, 1.0)),
        green=_RAMP_UP,
        blue=((0.0, 0.0), (1 / 3, 0.0), (1.0, 1.0)),
    ),
    "hsv": _AnchoredMap(
        64,
        red=((0.0, 1.0), (1 / 6, 1.0), (1 / 3, 0.0), (2 / 3, 0.0), (5 / 6, 1.0), (1.0, 1.0)),
        green=((0.0, 0.0), (1 / 6, 1.0), (1 / 2, 1.0), (2 / 3, 0.0), (1.0, 0.0)),
        blue=((0.0, 0.0), (1 / 3, 0.0), (1 / 2, 1.0), (5 / 6, 1.0), (1.0, 0.0)),
    ),
    "rainbow": _AnchoredMap(
        64,
        red=((0.0, 1.0), (0.4, 1.0), (0.6, 0.0), (0.8, 0.0), (1.0, 2 / 3)),
        green=((0.0, 0.0), (0.4, 1.0), (0.6, 1.0), (0.8, 0.0), (1.0, 0.0)),
        blue=((0.0, 0.0), (0.6, 0.0), (0.8, 1.0), (1.0, 1.0)),
    ),
    "parula": _AnchoredMap(
        9,
        red=tuple(
            (k / 8, v)
            for k, v in enumerate(
                (0.2078, 0.0118, 0.0784, 0.0235, 0.2196, 0.5725, 0.8510, 0.9882, 0.9765)
            )
        ),
        green=tuple(
            (k / 8, v)
            for k, v in enumerate(
                (0.1647, 0.3882, 0.5216, 0.6549, 0.7255, 0.7490, 0.7294, 0.8078, 0.9843)
            )
        ),
        blue=tuple(
            (k / 8, v)
            for k, v in enumerate(
                (0.5294, 0.8824, 0.8314, 0.7765, 0.6196, 0.4510, 0.3373, 0.1804, 0.0549)
            )
        ),
    ),
}

# Maps that are measured data rather than simple curves (matplotlib's viridis family,
# Google's turbo, twilight): the exact 256 x RGB tables that OpenCV 4.x/5.x produces, stored
# per channel as byte differences (mod 256), zlib-compressed and base64-encoded.
_TABULATED: dict[str, str] = {
    "cividis": (
        "eNqNUgESgCAIA/QlPaj/v0YTQQPFqzHGrA4vFCAE5pRTIgFKKHHoCbC5pUL48tAjBv14TJsjU1jaj166GTja"
        "lS//F6cOpix2y4PZrZ+sGR98zJRu5PNlqvBJtwFA7fegTlF9a3htvEEnmoO4fu4bL/ub7LQyQ9hkpoigqBQO"
        "RhsIPU3nQx8="
    ),
    "inferno": (
        "eNp9UYEShSAIg+z9/x9nyTYRXxfMIVzSMczNBvyB7CDCCZAv4YM+C+USLiLigNKMJIQnSLQu6gNykeE1fpc9"
        "ULS199JOB3VffaM91LyAolsddY6fytRd5BawGXLGaf6SQ33qe5yubxpJaJng6VyJJqoq/cufkoeDcOmkV7t2"
        "vvJMKERb00I5ctMobQB2Dqf9EJ7KDUcebaA="
    ),
    "magma": (
        "eNp9UgESwyAIE9z/v+xuAUOwdhAD55lWgWFjAGZYMGfYcAdFssPetfSX5En3VHRwXMOtbCTghaTkP7Yu2X59"
        "uIJ/AS3qFmWiarrS96B+pgU2wrUHWnqvcEnagReu9BMf9+m0mQQkTZ74XSOuFiOjzWg9sKPQSwoIJMEbsEiJ"
        "EJxNq5mtyWXJ7DF0+vqIX8rJLbk="
    ),
    "plasma": (
        "eNp9UtESgCAII3vppe/uqzsyBTbIC+YGxaWB596ttY5hm9NmgIZQEJ7IEGtSCmBSIkkkFQLp7mQwgipEX5BP"
        "yKFeZbVFtX6HN4iDkH3+tS3T/9fEQbQymIonAkiu2E0wBTT70+jocJgC0dYXY0EWCaey1j9ZPhWnOV61c/ns"
        "/JIM7VX3A3xkoAs="
    ),
    "turbo": (
        "eNpdklsWwyAIRPGZfncl/e/+d2W0wgDSDCPnNDH2An5yiiI2J4I10UJarInYWlj7F3u/JXyRMkfh2KocVZaq"
        "VHm23+VjD7YJJzmchGkhlErRDp4QQjdb4pbFGrLGu5iy51wiVUQLIZwBtzCsEG9cMOdHXw0/Gb+X4PSOHuit"
        "hFCEV/GneWPDQ3bgskFN7RTr+7pEvV+99e3WWt3GmLQlOguMQIH1DoTWmvHQEMfx0LZjH+8C0kIbVHLxTqLT"
        "rDPq6e3yYqZfAlLjUDedvyC/2OkHqdZpkQ=="
    ),
    "twilight": (
        "eNp1UlsSAyEIA7f3v19/9xwVKiSg25liiI6vZRNvd1vImDYfYcg1b5nmgdi/UhYvWo2IYJc9Fh0b4xtuDd4S"
        "N6jqiIa4AhfQFMxV7NMxtJpmMgQpRRzkPEhrB1blzXpRDeo6K0UW/8QsmhukGmfin1uwUimr81ZPiaPmLHls"
        "iUqm0oqCjdLoYnsORifVg3D5qVvEt0defbvrUh7D0xOnw7LPlnBGJSI+gaR6WhDVLV043Bmnk/DoX/Bo+6p4"
        "GFQlng7iRVRPaVKFL8MVN60="
    ),
    "twilight_shifted": (
        "eNp1UtsRwzAII0lH6CD96/571aaWhGznruWZAPZZwOsQneApgxGKYUMc1FheITLrUF+3iC7IBbkRQsidqo/I"
        "ITlsJlVUf6HEdLeqLoX0YXunkhq12Ea/zOkAzj9x4UJmLAvHZSR2MhUvMx3p2Hypu6q+sq3up/Fsz58I/GLz"
        "/mEsbR2oK7LQ9R+9RLsjF9y3X+tBPQbL1Lg8LT8fJgyh9sPGi7Iis2ru2UYoqdFxRq19IMuINLpugDV6weL6"
        "xD9iclur3BeM2S89UDSJ"
    ),
    "viridis": (
        "eNqFUokRhCAMTLC1K+H6L+VQshtYyehlv+AoyEw+5hcsBNPqaZ2k3ZoKjTRJbTPQ4Qcc8JB7CxGD9zqgoCCt"
        "koYvZOsAT9PInkbP2Nqt7P8Te1vb3tlyW0IY+wIwk0R857WbXHTeSA8qGy7J6JQZeqj+MGFzdjhMg1Nb/aBk"
        "II2kxiJe7xgzXrK1EyuPiAo="
    ),
}


def _linspace_f32(n: int) -> np.ndarray:
    """``n`` points from 0 to 1 computed as OpenCV does: ``i * float32(1 / (n - 1))`` in float32."""
    step = np.float32(1.0) / np.float32(n - 1)
    return np.arange(n, dtype=np.float32) * step


def _interp_f32(x: np.ndarray, y: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Linear interpolation with OpenCV's float32 arithmetic and bracket choice.

    OpenCV's ``interp1`` picks, for each query, the bracket ``x[lo] < xi <= x[hi]`` and
    evaluates ``y[lo] + (xi - x[lo]) * (y[hi] - y[lo]) / (x[hi] - x[lo])`` in float32.
    The rounding of that expression decides on which side of ``k + 0.5`` many entries of
    the final table fall, so a float64 ``np.interp`` would be off by one in dozens of places.
    """
    hi = np.clip(np.searchsorted(x, xi, side="left"), 1, len(x) - 1)
    lo = hi - 1
    return y[lo] + (xi - x[lo]) * (y[hi] - y[lo]) / (x[hi] - x[lo])


def _build_anchored_lut(spec: _AnchoredMap) -> np.ndarray:
    """Rebuild OpenCV's 256-entry table (RGB, uint8) from the corners of each channel.

    Steps, all as in OpenCV's ``colormap.cpp``: sample the curves at ``size`` points into a
    float32 base table, interpolate it at 256 float32 points, scale by 255 and round half to
    even (``Mat::convertTo``).
    """
    grid = np.arange(spec.size) / (spec.size - 1)
    x = _linspace_f32(spec.size)
    xi = _linspace_f32(256)
    channels = []
    for anchors in (spec.red, spec.green, spec.blue):
        xs, ys = zip(*anchors, strict=True)
        base = np.interp(grid, xs, ys)
        if spec.sqrt:
            base = np.sqrt(base)
        values = _interp_f32(x, base.astype(np.float32), xi)
        channels.append(np.rint(values * np.float32(255)))
    return np.clip(np.stack(channels, axis=1), 0, 255).astype(np.uint8)


def _decode_tabulated(blob: str) -> np.ndarray:
    deltas = np.frombuffer(zlib.decompress(base64.b64decode(blob)), dtype=np.uint8)
    planes = np.cumsum(deltas.reshape(3, 256), axis=1, dtype=np.int64) % 256
    return np.ascontiguousarray(planes.T.astype(np.uint8))


@functools.cache
def _named_lut(name: str) -> np.ndarray:
    if name in _ANCHORED:
        lut = _build_anchored_lut(_ANCHORED[name])
    else:
        lut = _decode_tabulated(_TABULATED[name])
    lut.setflags(write=False)
    return lut


def _colormap_name(colormap: int | str) -> str:
    if isinstance(colormap, str):
        key = colormap.strip().lower().replace("-", "_")
        key = key.removeprefix("cv2.").removeprefix("colormap_")
        if key in COLORMAP_NAMES:
            return key
        raise ValueError(f"unknown colour map {colormap!r}; use one of {', '.join(COLORMAP_NAMES)}")
    code = int(colormap)
    if 0 <= code < len(COLORMAP_NAMES):
        return COLORMAP_NAMES[code]
    raise ValueError(
        f"unknown colour map code {colormap!r}; OpenCV codes run from 0 (autumn) to "
        f"{len(COLORMAP_NAMES) - 1} (deepgreen), or pass a name such as 'jet' or 'viridis'"
    )


def colormap_lut(colormap: ColormapLike = "jet") -> np.ndarray:
    """Return a colour map's 256-entry lookup table, ``uint8 [256, 3]``, in **RGB** order.

    Entry ``k`` is the colour of the value ``k / 255``. The tables equal OpenCV's
    ``cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)[:, 0, ::-1]``
    exactly (checked against opencv-python 5.0), so pictures match pytorch-grad-cam's.

    ``colormap`` may be an OpenCV code (``cv2.COLORMAP_JET == COLORMAP_JET == 2``), a name
    (``"jet"``, ``"viridis"``, ``"COLORMAP_TURBO"``; see :data:`COLORMAP_NAMES`) or a user
    table of shape ``[256, 3]`` or ``[256, 1, 3]`` (``uint8``). A user table is read in
    OpenCV's **BGR** order, as ``cv2.applyColorMap(src, user_table)`` reads it, so code that
    passed such a table to pytorch-grad-cam gets the same colours.

    Piecewise-linear maps (jet, hot, bone, ...) are rebuilt from their corner points with
    OpenCV's float32 arithmetic; data-defined maps (viridis, magma, inferno, plasma, cividis,
    turbo, twilight) come from compact tables stored in this module.
    """
    if isinstance(colormap, np.ndarray):
        table = colormap
        if table.dtype != np.uint8 or table.shape not in ((256, 3), (256, 1, 3)):
            raise InputShapeError(
                "a user colour map must be a uint8 array of shape [256, 3] or [256, 1, 3] "
                f"(BGR, like OpenCV's); got {table.dtype} {table.shape}"
            )
        return np.ascontiguousarray(table.reshape(256, 3)[:, ::-1])
    if isinstance(colormap, bool) or not isinstance(colormap, (int, np.integer, str)):
        raise TypeError(
            "colormap must be an OpenCV code (int), a name (str) or a [256, 3] uint8 table; "
            f"got {type(colormap).__name__}"
        )
    return _named_lut(_colormap_name(colormap))


# --------------------------------------------------------------------------------------
# Small array helpers
# --------------------------------------------------------------------------------------


def _to_numpy(array: Any) -> np.ndarray:
    """View a numpy array, torch tensor (any device) or nested list as a numpy array."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _check_finite(array: np.ndarray, what: str) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise NonFiniteError(f"{what} contains NaN or infinity; clean it before drawing it")


def _values_to_index(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to colour-table rows as pytorch-grad-cam does: ``uint8(255 * v)``.

    The product is truncated (0.999 -> 254), in the input's own float precision. Values
    outside [0, 1] are clipped first (OpenCV-free code would otherwise wrap them around).
    """
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    return np.clip(255 * values, 0, 255).astype(np.uint8)


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


# --------------------------------------------------------------------------------------
# Loading and preprocessing
# --------------------------------------------------------------------------------------

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def load_image(path: PathLike) -> np.ndarray:
    """Read an image file as float32 RGB ``[H, W, 3]`` with values in ``[0, 1]``.

    This is the input that :func:`preprocess_image` and :func:`show_cam_on_image` expect; for
    an 8-bit RGB PNG it equals pytorch-grad-cam's usual recipe
    ``np.float32(cv2.imread(path)[:, :, ::-1]) / 255`` exactly (JPEG decoders of Pillow and
    OpenCV may differ by a level here and there).

    * The EXIF orientation tag is applied, so the array is upright as viewers show it
      (OpenCV's ``imread`` does the same by default).
    * Transparency (RGBA, LA, PA, palette or grey images with a transparent entry) is
      composited over **white**, the usual background of slides and documents:
      ``value = colour * alpha + (1 - alpha)``. A fully transparent pixel becomes white.
    * Grey (L), 1-bit and palette (P) images are expanded to three equal or looked-up
      channels; CMYK and YCbCr are converted by Pillow.
    * 16-bit grey (Pillow modes ``I;16``, ``I;16B``, ...) is divided by 65535. Mode ``I``
      (32-bit integers, e.g. some TIFFs) is read the same way; values outside
      ``[0, 65535]`` are clipped, with a ``UserWarning``.
    * Float images (mode ``F``, e.g. 32-bit TIFFs) are taken as they are when inside
      ``[0, 1]``; otherwise they are clipped to ``[0, 1]`` with a ``UserWarning`` (open such
      a file with Pillow yourself to keep its own range). NaN or infinity is an error.
    * 16-bit-per-channel colour PNGs (48-bit RGB, 64-bit RGBA): Pillow (13.x) reads them
      as 8-bit RGB/RGBA, keeping only the high byte of each sample, so these arrive with
      8-bit precision (65535 -> 1.0, 257 -> 1/255, 255 -> 0.0). Only grey keeps 16 bits.
    * Multi-frame files (GIF, TIFF stacks) give their first frame.

    Raises:
        ImageLoadError: the file is missing, is a directory, is not an image Pillow can
            read, is truncated/corrupt, or has a mode that cannot be converted to RGB. The
            message names the file and the reason.
    """
    file = Path(path)
    if not file.exists():
        raise ImageLoadError(f"cannot load image '{file}': no such file")
    if file.is_dir():
        raise ImageLoadError(f"cannot load image '{file}': it is a directory, not a file")
    try:
        with Image.open(file) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
        rgb, note = _pil_to_unit_rgb(upright)
    except ImageLoadError as exc:
        raise ImageLoadError(f"cannot load image '{file}': {exc}") from None
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"cannot load image '{file}': not an image format that Pillow recognises"
        ) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"cannot load image '{file}': {exc}") from exc
    if note:
        warnings.warn(f"load_image('{file}'): {note}", UserWarning, stacklevel=2)
    return rgb


def _pil_to_unit_rgb(image: Image.Image) -> tuple[np.ndarray, str]:
    """Convert an opened Pillow image to float32 RGB in [0, 1]; also return a warning text."""
    mode = image.mode
    note = ""
    if mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image).astype(np.float32) / np.float32(65535)
    elif mode == "I":
        raw = np.asarray(image)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            note = (
                f"32-bit integer values span {raw.min()}..{raw.max()}; read as 16-bit, "
                "values outside [0, 65535] were clipped"
            )
        grey = np.clip(raw, 0, 65535).astype(np.float32) / np.float32(65535)
    elif mode == "F":
        raw = np.asarray(image, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise ImageLoadError("the float image contains NaN or infinity")
        if raw.size and (raw.min() < 0 or raw.max() > 1):
            note = (
                f"float values span {raw.min():g}..{raw.max():g}; clipped to [0, 1] "
                "(open the file with Pillow to keep the original range)"
            )
        grey = np.clip(raw, 0.0, 1.0).astype(np.float32)
    else:
        has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
        target = "RGBA" if has_alpha else "RGB"
        try:
            converted = image if image.mode == target else image.convert(target)
        except ValueError as exc:
            raise ImageLoadError(f"unsupported image mode {mode!r} ({exc})") from exc
        data = np.asarray(converted)
        rgb = data[:, :, :3].astype(np.float32) / np.float32(255)
        if has_alpha:
            alpha = data[:, :, 3:].astype(np.float32) / np.float32(255)
            rgb = rgb * alpha + (np.float32(1) - alpha)
        return np.ascontiguousarray(rgb, dtype=np.float32), note
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)), note


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


# --------------------------------------------------------------------------------------
# Drawing maps
# --------------------------------------------------------------------------------------


def _as_map(mask: Any, what: str) -> np.ndarray:
    """Return a ``[H, W]`` map from ``[H, W]``, ``[1, H, W]`` or ``[H, W, 1]`` input."""
    arr = _to_numpy(mask)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]):
        arr = arr[0] if arr.shape[0] == 1 else arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputShapeError(f"{what} must be a non-empty [H, W] map; got shape {arr.shape}")
    _check_finite(arr, what)
    return arr


def show_cam_on_image(
    img: np.ndarray,
    mask: np.ndarray,
    use_rgb: bool = False,
    colormap: ColormapLike = COLORMAP_JET,
    image_weight: float = 0.5,
) -> np.ndarray:
    """Overlay a CAM on an image as a heat map; same pixels as pytorch-grad-cam 1.5.x.

    Args:
        img: float image ``[H, W, 3]`` in ``[0, 1]`` (RGB or BGR; grey ``[H, W]`` is
            accepted too).
        mask: the CAM ``[H, W]`` in ``[0, 1]``, e.g. ``grayscale_cam[0]``.
        use_rgb: give the heat map in RGB order. The default ``False`` gives **BGR**, as
            pytorch-grad-cam does (ready for ``cv2.imwrite``); pass ``True`` when ``img``
            is RGB, e.g. from :func:`load_image`.
        colormap: OpenCV code or name, see :func:`colormap_lut`.
        image_weight: ``result = image_weight * img + (1 - image_weight) * heatmap``.

    Returns:
        ``uint8 [H, W, 3]``.

    The computation follows pytorch-grad-cam step by step, quirks included: the mask is
    turned into table rows by truncation (``uint8(255 * mask)``), the blend is divided by its
    own maximum (so the brightest pixel is always 255 and a dark picture gets brighter), and
    the final ``uint8(255 * cam)`` truncates. Where pytorch-grad-cam's output is undefined
    this function differs: mask values outside ``[0, 1]`` are clipped instead of wrapping
    around, a blend whose maximum is 0 gives black instead of NaN garbage, and NaN or
    infinity in ``img`` or ``mask`` raises :class:`NonFiniteError`.

    Raises:
        ValueError: ``img`` has values above 1 (e.g. a 0..255 image; pytorch-grad-cam raises
            a plain ``Exception`` there), or ``image_weight`` is outside ``[0, 1]``.
        InputShapeError: ``img`` and ``mask`` do not have the same height and width.
    """
    heat_mask = _as_map(mask, "mask")
    image = _to_numpy(img)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputShapeError(f"img must be [H, W, 3] (or [H, W]); got shape {image.shape}")
    if image.shape[:2] != heat_mask.shape:
        raise InputShapeError(
            f"img is {image.shape[0]}x{image.shape[1]} but mask is "
            f"{heat_mask.shape[0]}x{heat_mask.shape[1]}; resize the CAM to the image first"
        )
    _check_finite(image, "img")

    table = colormap_lut(colormap)  # RGB
    heatmap = table[_values_to_index(heat_mask)]
    if not use_rgb:
        heatmap = heatmap[:, :, ::-1]
    heatmap = np.float32(heatmap) / 255

    if np.max(image) > 1:
        raise ValueError(
            f"img must be a float image in the range [0, 1]; its maximum is {np.max(image)} "
            "(divide a 0..255 image by 255 first)"
        )
    if not 0 <= image_weight <= 1:
        raise ValueError(f"image_weight must be in the range [0, 1]; got {image_weight}")

    cam = (1 - image_weight) * heatmap + image_weight * image
    peak = np.max(cam)
    if peak == 0:
        return np.zeros(cam.shape, dtype=np.uint8)
    cam = cam / peak
    return np.clip(255 * cam, 0, 255).astype(np.uint8)


def apply_colormap(values: Any, colormap: ColormapLike = "jet") -> np.ndarray:
    """Colour a map of values in ``[0, 1]``: ``[...]`` -> ``uint8 [..., 3]`` **RGB**.

    A value ``v`` gets table row ``uint8(255 * v)`` (truncated), the same rule as
    :func:`show_cam_on_image`, so both draw identical colours. Values outside ``[0, 1]`` are
    clipped; scale raw CAMs with :func:`scale_to_unit` first, or draw signed maps with
    :func:`signed_heatmap`.

    Raises:
        NonFiniteError: the values contain NaN or infinity.
    """
    arr = _to_numpy(values)
    _check_finite(arr, "values")
    return colormap_lut(colormap)[_values_to_index(arr)]


#: Colour of the most negative value in :func:`signed_heatmap` (a blue).
SIGNED_NEGATIVE_RGB: tuple[int, int, int] = (33, 102, 172)
#: Colour of the most positive value in :func:`signed_heatmap` (a red).
SIGNED_POSITIVE_RGB: tuple[int, int, int] = (178, 24, 43)


def signed_heatmap(raw: Any, limit: float | None = None) -> np.ndarray:
    """Draw a signed, unnormalised map with a blue-white-red scale centred at zero.

    Min-max scaling (what ``show_cam_on_image`` needs) hides the sign of a raw CAM: the most
    negative pixel becomes "cold" and zero becomes "warm". This view keeps it honest: zero
    is white, negative evidence fades to :data:`SIGNED_NEGATIVE_RGB` (blue) and positive
    evidence to :data:`SIGNED_POSITIVE_RGB` (red), both reached at ``|raw| == limit``.

    Args:
        raw: any-shaped map ``[...]``, usually ``[H, W]``; numpy array or torch tensor.
        limit: value drawn at full colour. ``None`` uses ``max(|raw|)``, so the scale is
            symmetric; pass a fixed limit to compare several maps on one scale. Values beyond
            ``±limit`` saturate.

    Returns:
        ``uint8 [..., 3]`` RGB. An all-zero map is all white.

    Raises:
        NonFiniteError: ``raw`` contains NaN or infinity.
        ValueError: ``limit`` is not a positive finite number.
    """
    arr = _to_numpy(raw).astype(np.float64)
    _check_finite(arr, "raw")
    if limit is None:
        scale = float(np.max(np.abs(arr))) if arr.size else 0.0
    else:
        scale = float(limit)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"limit must be a positive finite number; got {limit}")
    t = np.clip(arr / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(arr)
    white = np.full(3, 255.0)
    positive = np.clip(t, 0.0, None)[..., None]
    negative = np.clip(-t, 0.0, None)[..., None]
    rgb = (
        white
        - positive * (white - np.asarray(SIGNED_POSITIVE_RGB, dtype=np.float64))
        - negative * (white - np.asarray(SIGNED_NEGATIVE_RGB, dtype=np.float64))
    )
    return np.rint(rgb).astype(np.uint8)


def overlay(img: Any, heat_rgb: Any, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend a colour picture over an image: ``(1 - alpha) * img + alpha * heat``.

    A plain blend, unlike :func:`show_cam_on_image` which also divides by the maximum (and
    so brightens dark pictures). Both inputs may be ``uint8`` or float in ``[0, 1]``, grey or
    RGB(A) (see :func:`make_grid` for the accepted forms); they must have the same height
    and width.

    Returns:
        ``uint8 [H, W, 3]``.

    Raises:
        ValueError: ``alpha`` is outside ``[0, 1]``.
        InputShapeError: the two pictures have different sizes.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in the range [0, 1]; got {alpha}")
    base = _to_uint8_image(img, "img").astype(np.float64)
    heat = _to_uint8_image(heat_rgb, "heat_rgb").astype(np.float64)
    if base.shape != heat.shape:
        raise InputShapeError(
            f"img is {base.shape[0]}x{base.shape[1]} but heat_rgb is "
            f"{heat.shape[0]}x{heat.shape[1]}"
        )
    return np.rint((1 - alpha) * base + alpha * heat).astype(np.uint8)


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


# --------------------------------------------------------------------------------------
# Grids and files
# --------------------------------------------------------------------------------------


def make_grid(
    images: Sequence[Any],
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    pad: int = 4,
    label_height: int | None = None,
) -> np.ndarray:
    """Arrange images in a grid, each with an optional text label above it.

    Args:
        images: pictures of any sizes: ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or
            ``[H, W, 4]``, as ``uint8``, ``bool`` or floats in ``[0, 1]`` (numpy or torch).
            Grey is replicated to RGB, RGBA is composited over white.
        labels: one string per image (``"\\n"`` starts a new line), drawn in black with
            Pillow's default font (``ImageFont.load_default()``), centred over the image.
        ncols: images per row; ``None`` puts them all side by side in one row.
        pad: white margin, in pixels, around and between the cells.
        label_height: pixels reserved for each label; ``None`` fits the tallest label.

    Each cell is as wide as the widest image of its column and as tall as the tallest of
    its row; smaller images are centred in their cell on white.

    Returns:
        ``uint8 [H, W, 3]`` RGB.
    """
    tiles = [_to_uint8_image(image, f"images[{i}]") for i, image in enumerate(images)]
    if not tiles:
        raise ValueError("make_grid needs at least one image")
    if labels is not None and len(labels) != len(tiles):
        raise InputShapeError(f"got {len(tiles)} images but {len(labels)} labels")
    columns = len(tiles) if ncols is None else int(ncols)
    if columns < 1:
        raise ValueError(f"ncols must be at least 1; got {ncols}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0; got {pad}")
    rows = -(-len(tiles) // columns)

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    if labels is None:
        strip = 0
    elif label_height is None:
        heights = [_text_size(measure, str(text), font)[1] for text in labels]
        strip = max(heights) + 4
    else:
        strip = max(0, int(label_height))

    col_w = [0] * columns
    row_h = [0] * rows
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        col_w[c] = max(col_w[c], tile.shape[1])
        row_h[r] = max(row_h[r], tile.shape[0])
    width = sum(col_w) + pad * (columns + 1)
    height = sum(row_h) + rows * strip + pad * (rows + 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)

    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x0 = pad + sum(col_w[:c]) + pad * c
        y0 = pad + sum(row_h[:r]) + (strip + pad) * r
        if strip and labels is not None:
            canvas[y0 : y0 + strip, x0 : x0 + col_w[c]] = _render_label(
                str(labels[i]), col_w[c], strip, font
            )
        h, w = tile.shape[:2]
        ty = y0 + strip + (row_h[r] - h) // 2
        tx = x0 + (col_w[c] - w) // 2
        canvas[ty : ty + h, tx : tx + w] = tile
    return canvas


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top)


def _render_label(text: str, width: int, height: int, font: Any) -> np.ndarray:
    """Draw ``text`` centred on a white ``[height, width, 3]`` strip (clipped at its edges)."""
    strip = Image.new("RGB", (max(width, 1), height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(0, (width - (right - left)) // 2) - left
    y = (height - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(strip)[:, :width]


def save_image(path: PathLike, array: Any) -> Path:
    """Write an image with Pillow; PNG (lossless) unless the suffix names another format.

    ``array`` is ``[H, W]`` / ``[H, W, 1]`` (saved as 8-bit grey), ``[H, W, 3]`` (RGB) or
    ``[H, W, 4]`` (RGBA), of ``uint8`` or floats in ``[0, 1]`` (clipped and rounded to 8
    bits); ``bool`` becomes 0/255. Note that :func:`show_cam_on_image` returns BGR unless
    called with ``use_rgb=True``: save its RGB output, or flip it with ``[..., ::-1]``.

    Returns:
        The path written, as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    pixels = np.ascontiguousarray(_to_uint8_image(array, "array", keep_channels=True))
    fmt = "PNG" if target.suffix.lower() in ("", ".png") else None
    Image.fromarray(pixels).save(target, format=fmt)
    return target


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
    scaled = shifted / (1e-7 + np.max(shifted, axis=axis, keepdims=True))
    return np.asarray(scaled, dtype=np.float32)
