"""Drawing a map over an image: pytorch-grad-cam's ``show_cam_on_image`` and a plain blend."""

from __future__ import annotations

from typing import Any

import numpy as np

from camlens.errors import InputShapeError
from camlens.image._arrays import _check_finite, _to_numpy, _to_uint8_image
from camlens.image.colormaps import COLORMAP_JET, ColormapLike, _values_to_index, colormap_lut


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
