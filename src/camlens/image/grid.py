"""Arranging pictures in a grid, each with an optional text label above it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from camlens.errors import InputShapeError
from camlens.image._arrays import _to_uint8_image


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
