"""Reading image files as float RGB arrays and writing arrays as image files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camlens.errors import ImageLoadError
from camlens.image._arrays import _to_uint8_image

PathLike = str | os.PathLike

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
