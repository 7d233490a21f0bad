"""pytorch-grad-cam's other image helpers (``pytorch_grad_cam.utils.image``, 1.5.x), under their
names and signatures: :func:`deprocess_image`, :func:`scale_cam_image`,
:func:`create_labels_legend` and :func:`show_factorization_on_image`.

They give pytorch-grad-cam's numbers without OpenCV, SciPy or matplotlib: the bilinear resize
is torch's half-pixel one (OpenCV's ``INTER_LINEAR`` to within float32 rounding, ~1e-7),
OpenCV's 8-bit HSV round trip and matplotlib's ``gist_rainbow`` are rebuilt here. Where a
number differs, the function's docstring says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from camlens.errors import InputShapeError
from camlens.image._arrays import _check_finite, _to_numpy
from camlens.image.preprocess import scale_to_unit
from camlens.postprocess import upsample

__all__ = [
    "create_labels_legend",
    "deprocess_image",
    "scale_cam_image",
    "show_factorization_on_image",
]


def deprocess_image(img: Any) -> np.ndarray:
    """An array of any range as a viewable ``uint8`` image (e.g. a guided-backprop gradient).

    ``x ← (x - mean) / (std + 1e-5) · 0.1 + 0.5``, clipped to ``[0, 1]``, times 255,
    truncated to ``uint8``: mean and (population) standard deviation over the whole array,
    in the array's own precision, as pytorch-grad-cam's ``deprocess_image``. The shape is
    kept. A torch tensor is accepted too.
    """
    arr = _to_numpy(img)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    _check_finite(arr, "img")
    arr = arr - np.mean(arr)
    arr = arr / (np.std(arr) + 1e-5)
    arr = np.clip(arr * 0.1 + 0.5, 0, 1)
    return (arr * 255).astype(np.uint8)


def scale_cam_image(cam: Any, target_size: Sequence[int] | None = None) -> np.ndarray:
    """Min-max each map of ``cam`` (``[N, H, W]`` or ``[N, D, H, W]``) to ``[0, 1]``, then
    resize it to ``target_size``; float32, as pytorch-grad-cam's ``scale_cam_image``.

    Each map becomes ``(m - min) / (1e-7 + max(m - min))`` (:func:`scale_to_unit`).
    ``target_size`` is in OpenCV's order, ``(width, height)`` (``(width, height, depth)``
    for volumes), so 2-D maps come back ``[N, height, width]``.

    The 2-D resize is bilinear with half-pixel centres and no antialiasing, OpenCV's
    ``INTER_LINEAR``: the numbers equal pytorch-grad-cam's to within ~1e-6 (float32
    rounding). Volumes differ: pytorch-grad-cam resizes them with SciPy's cubic-spline
    ``zoom``, camlens trilinearly (half-pixel centres), so 3-D maps agree only roughly.

    Raises:
        InputShapeError: ``cam`` is not ``[N, H, W]`` / ``[N, D, H, W]``, or ``target_size``
            has the wrong length.
        NonFiniteError: ``cam`` contains NaN or infinity.
    """
    arr = _to_numpy(cam)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise InputShapeError(
            f"scale_cam_image expects maps [N, H, W] or [N, D, H, W]; got shape {arr.shape}"
        )
    scaled = scale_to_unit(arr, axis=tuple(range(1, arr.ndim)))
    if target_size is None:
        return scaled
    size = tuple(int(s) for s in target_size)
    if len(size) != arr.ndim - 1 or min(size) < 1:
        raise InputShapeError(
            f"target_size must give {arr.ndim - 1} positive sizes ((width, height)"
            f"{'' if arr.ndim == 3 else ', depth)'}) for maps of shape {arr.shape}; got "
            f"{target_size!r}"
        )
    resized = upsample(torch.from_numpy(scaled), size[::-1])
    return np.ascontiguousarray(resized.numpy(), dtype=np.float32)


def create_labels_legend(
    concept_scores: Any, labels: Mapping[int, str] | Sequence[str], top_k: int = 2
) -> list[str]:
    """One legend string per concept: its ``top_k`` best-scoring classes, best first, as
    ``"name:score"`` lines joined by ``"\\n"``, as pytorch-grad-cam's
    ``create_labels_legend``.

    ``concept_scores`` is ``[n_concepts, n_classes]``; ``labels[c]`` names class ``c`` (a
    dict or a list); only the first three comma-separated parts of a name are kept
    (ImageNet's ``"tench, Tinca tinca"`` style); scores are printed with two decimals.
    Ties are ordered as there (reversed ``argsort``: the higher class index first).
    """
    scores = _to_numpy(concept_scores)
    if scores.ndim != 2:
        raise InputShapeError(
            f"concept_scores must be [n_concepts, n_classes]; got shape {scores.shape}"
        )
    best = np.argsort(scores, axis=1)[:, ::-1][:, :top_k]
    legends = []
    for concept, categories in enumerate(best):
        lines = []
        for category in categories:
            try:
                name = labels[int(category)]
            except (KeyError, IndexError):
                raise KeyError(f"labels has no name for class {int(category)}") from None
            short = ",".join(str(name).split(",")[:3])
            lines.append(f"{short}:{scores[concept, category]:.2f}")
        legends.append("\n".join(lines))
    return legends


# matplotlib's gist_rainbow (``matplotlib._cm._gist_rainbow_data``): position, then RGB.
_GIST_RAINBOW = (
    (0.000, (1.00, 0.00, 0.16)),
    (0.030, (1.00, 0.00, 0.00)),
    (0.215, (1.00, 1.00, 0.00)),
    (0.400, (0.00, 1.00, 0.00)),
    (0.586, (0.00, 1.00, 1.00)),
    (0.770, (0.00, 0.00, 1.00)),
    (0.954, (1.00, 0.00, 1.00)),
    (1.000, (1.00, 0.00, 0.75)),
)


def _gist_rainbow(values: np.ndarray, size: int = 256) -> np.ndarray:
    """matplotlib's ``colormaps["gist_rainbow"](values)`` for floats in [0, 1): ``[N, 4]``.

    The 256-entry table is built as ``LinearSegmentedColormap`` builds it (piecewise
    linear between the nodes, in the same float64 steps) and indexed by
    ``int(value · 256)``."""
    nodes = np.array([x for x, _ in _GIST_RAINBOW]) * (size - 1)
    colours = np.array([c for _, c in _GIST_RAINBOW])
    samples = (size - 1) * np.linspace(0, 1, size)
    ind = np.searchsorted(nodes, samples)[1:-1]
    distance = (samples[1:-1] - nodes[ind - 1]) / (nodes[ind] - nodes[ind - 1])
    inner = distance[:, None] * (colours[ind] - colours[ind - 1]) + colours[ind - 1]
    table = np.clip(np.concatenate([colours[:1], inner, colours[-1:]]), 0.0, 1.0)
    index = np.clip((np.asarray(values, dtype=np.float64) * size).astype(int), 0, size - 1)
    return np.concatenate([table[index], np.ones((len(index), 1))], axis=1)


def _hue_saturation(rgb: np.ndarray) -> tuple[int, int]:
    """OpenCV's 8-bit ``COLOR_RGB2HSV`` hue (0..179) and saturation of one uint8 colour
    (fixed point with 12 fractional bits, as ``RGB2HSV_b``)."""
    r, g, b = (int(c) for c in rgb)
    value, diff = max(r, g, b), max(r, g, b) - min(r, g, b)
    shift, half = 12, 1 << 11
    sat_div = round((255 << shift) / value) if value else 0
    hue_div = round((180 << shift) / (6 * diff)) if diff else 0
    saturation = (diff * sat_div + half) >> shift
    if value == r:
        hue = g - b
    elif value == g:
        hue = b - r + 2 * diff
    else:
        hue = r - g + 4 * diff
    hue = (hue * hue_div + half) >> shift
    return (hue + 180 if hue < 0 else hue), saturation


def _value_ramp(rgb: np.ndarray) -> np.ndarray:
    """``[256, 3]`` uint8: the colour ``rgb`` with its HSV value set to 0..255, through
    OpenCV's 8-bit ``RGB2HSV`` then ``HSV2RGB``.

    ``HSV2RGB`` is OpenCV's vectorised 8-bit path (``HSV2RGB_b`` with ``HSV2RGB_simd``):
    float32 arithmetic (``1 - s·h`` fused), truncated to ``uint8``. OpenCV rounds instead
    for the few pixels left over at the end of a row after its SIMD blocks (how many
    depends on the CPU's vector width), so those may be one level higher there."""
    hue, saturation = _hue_saturation(rgb)
    f32 = np.float32
    v = np.arange(256, dtype=f32) * (f32(1) / f32(255))
    s = f32(saturation) * (f32(1) / f32(255))
    h = f32(hue) * (f32(6) / f32(180))
    sector = int(h)  # h >= 0: truncation is the floor
    h = f32(h - f32(sector))
    sector -= int(f32(sector) * (f32(1) / f32(6))) * 6
    one = f32(1)
    # ``1 - s·h`` as a fused multiply-add (one rounding), as OpenCV's x86-64 build computes it
    fused = [f32(1.0 - float(s) * float(k)) for k in (h, one - h)]
    tab = [v, v * (one - s), v * fused[0], v * fused[1]]
    blue, green, red = (tab[i] for i in _SECTORS[sector])
    ramp = np.stack([red, green, blue], axis=1) * f32(255)
    return np.clip(ramp, 0, 255).astype(np.uint8)


#: OpenCV's ``sector_data``: which of ``tab`` is blue, green, red in each hue sector.
_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))


def _legend(
    height: int, width: int, colors: Sequence[np.ndarray], labels: Sequence[str]
) -> np.ndarray:
    """A white ``[height, width, 3]`` panel with one coloured line and label per concept."""
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    font_size = max(6, int(14 * height / 256 / max(1, len(labels) / 6)))
    try:
        font: Any = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    line_width = max(1, round(5 * height / 256))
    margin = max(2, width // 32)
    top = margin
    for color, label in zip(colors, labels, strict=True):
        rgb = tuple(int(c * 255) for c in np.asarray(color, dtype=np.float64)[:3])
        box = draw.multiline_textbbox((0, 0), str(label), font=font)
        text_height = max(box[3] - box[1], line_width)
        middle = top + text_height // 2
        draw.line([(margin, middle), (margin + 4 * font_size, middle)], rgb, line_width)
        draw.multiline_text((2 * margin + 4 * font_size, top), str(label), (0, 0, 0), font)
        top += text_height + margin
    return np.asarray(panel, dtype=np.uint8)


def show_factorization_on_image(
    img: np.ndarray,
    explanations: np.ndarray,
    colors: Sequence[np.ndarray] | None = None,
    image_weight: float = 0.5,
    concept_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Colour-code concept heatmaps (Deep Feature Factorization) on ``img``, as
    pytorch-grad-cam's ``show_factorization_on_image``.

    Each pixel shows the concept whose heatmap is highest there (the first on ties), in the
    concept's colour with its HSV value set to ``uint8(255 · heatmap)`` (OpenCV's 8-bit
    HSV round trip, rebuilt here: same bytes); the result is
    ``uint8(255 · (img · image_weight + colours · (1 - image_weight)))``.

    Args:
        img: ``[H, W, 3]`` RGB floats in [0, 1] (a uint8 image is divided by 255 first).
        explanations: ``[n_concepts, H, W]`` heatmaps in [0, 1] (values outside are
            clipped). Unlike pytorch-grad-cam, the array is not modified.
        colors: one RGB(A) float colour per concept; default matplotlib's ``gist_rainbow``
            at ``0, 1/n, 2/n, ...`` (rebuilt here, same colours).
        image_weight: the image's share of the blend.
        concept_labels: one string per concept; when given, a legend panel of the image's
            size is put to the right (``[H, 2W, 3]``). pytorch-grad-cam draws it with
            matplotlib; camlens draws lines and text with Pillow, so the legend's pixels
            differ while the left half is identical.

    Returns:
        ``uint8`` ``[H, W, 3]`` (``[H, 2W, 3]`` with a legend).
    """
    image = np.asarray(img)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / np.float32(255)
    maps = np.asarray(_to_numpy(explanations))
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputShapeError(f"img must be [H, W, 3]; got shape {image.shape}")
    if maps.ndim != 3 or maps.shape[1:] != image.shape[:2]:
        raise InputShapeError(
            f"explanations must be [n_concepts, H, W] with the image's H, W "
            f"{image.shape[:2]}; got shape {maps.shape}"
        )
    _check_finite(maps, "explanations")
    count = maps.shape[0]
    if colors is None:
        colors = list(_gist_rainbow(np.arange(0, 1, 1.0 / count)[:count]))
    if len(colors) < count:
        raise ValueError(f"{count} concepts need {count} colors; got {len(colors)}")
    if concept_labels is not None and len(concept_labels) != count:
        raise ValueError(f"{count} concepts need {count} concept_labels; got {len(concept_labels)}")
    winner = maps.argmax(axis=0)
    values = np.clip(255 * maps, 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape, dtype=np.float32)
    for i in range(count):
        base = (np.asarray(colors[i], dtype=np.float64)[:3] * 255).astype(np.uint8)
        ramp = _value_ramp(base).astype(np.float32) / np.float32(255)
        here = winner == i
        mask[here] = ramp[values[i][here]]
    result = (image * image_weight + mask * (1 - image_weight)) * 255
    result = result.astype(np.uint8)
    if concept_labels is None:
        return result
    legend = _legend(result.shape[0], result.shape[1], colors[:count], concept_labels)
    return np.hstack((result, legend))
