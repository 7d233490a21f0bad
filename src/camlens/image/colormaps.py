"""OpenCV's colour maps, rebuilt without OpenCV, and drawing values with them.

:func:`colormap_lut` gives the exact 256-entry tables of ``cv2.applyColorMap``;
:func:`apply_colormap` colours values in ``[0, 1]`` with them, and :func:`signed_heatmap`
draws a signed map on a blue-white-red scale.

This module is longer than its siblings because about half of it is table data: OpenCV's
codes and names, the corner points of the piecewise-linear maps (``_ANCHORED``) and the
compressed tables of the data-defined maps (``_TABULATED``).
"""

from __future__ import annotations

import base64
import functools
import math
import zlib
from typing import Any, NamedTuple

import numpy as np

from camlens.errors import InputShapeError
from camlens.image._arrays import _check_finite, _to_numpy

ColormapLike = int | str | np.ndarray

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


def _values_to_index(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to colour-table rows as pytorch-grad-cam does: ``uint8(255 * v)``.

    The product is truncated (0.999 -> 254), in the input's own float precision. Values
    outside [0, 1] are clipped first (OpenCV-free code would otherwise wrap them around).
    """
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    return np.clip(255 * values, 0, 255).astype(np.uint8)


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
