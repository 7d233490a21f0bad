"""Where the tissue is on a slide: detection on a thumbnail, and masks a user draws.

A *thumbnail* is an ``(h, w, 3)`` uint8 RGB picture of the whole slide; every mask here is a
boolean ``(h, w)`` array on the thumbnail's grid (True = tissue, or inside the user's region).

Connectivity, the same everywhere in ``camlens.slide``: tissue pixels are **8-connected**
(pixels that touch diagonally are one piece) and background pixels **4-connected** (glass
does not leak through a diagonal). This is the dual pair that gives every piece of tissue a
well-defined outline: a background region enclosed by tissue, even at a diagonal gap, is a
hole; :mod:`camlens.slide.geojson` writes the same pieces and holes.

Components are labelled in numpy over the runs of each row (a run is a horizontal stretch of
set pixels): runs of neighbouring rows that overlap are joined, and the resulting graph is
reduced to its components by repeated min-label hooking with pointer jumping, all vectorised,
so a 2000 × 2000 thumbnail takes a few tens of milliseconds. :func:`fill_polygon` rasterises
the regions :mod:`camlens.slide.geojson` reads, sampling pixel centres.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from camlens.errors import CamlensError, ImageLoadError, InputShapeError

__all__ = [
    "RegionError",
    "detect_tissue",
    "fill_mask_holes",
    "fill_polygon",
    "label_components",
    "mask_from_png",
    "otsu_threshold",
    "remove_small_components",
]

#: The largest relative difference of aspect ratio between a user's mask image and the slide.
ASPECT_TOLERANCE = 0.02


class RegionError(CamlensError, ValueError):
    """A region file (GeoJSON, mask image) is malformed, empty or does not fit the slide."""


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold that best splits ``values`` into two classes (Otsu's method).

    N. Otsu, "A threshold selection method from gray-level histograms", IEEE Transactions on
    Systems, Man, and Cybernetics 9(1):62–66, 1979: among all cuts of a 256-bin histogram,
    take the one that maximises the between-class variance ``ω0 ω1 (μ0 − μ1)²``.

    ``values``: uint8 (or any integer type with values in 0–255; one bin per value) or floats
    in [0, 1] (bin ``k`` holds ``[k/256, (k+1)/256)``, 1.0 in the last bin). Returns a float
    in the units of ``values``: foreground is ``values > threshold``. When several cuts tie
    (empty bins between two modes) the middle of the tied range is returned, so a two-valued
    sample is split half-way between its values. A sample with a single value returns it.
    """
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError("otsu_threshold needs at least one value")
    if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        if values.min() < 0 or values.max() > 255:
            raise ValueError("integer values for otsu_threshold must lie in 0–255")
        bins = values.astype(np.intp).ravel()
        integer = True
    elif np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise ValueError("float values for otsu_threshold must be finite and lie in [0, 1]")
        bins = np.minimum((values.ravel() * 256).astype(np.intp), 255)
        integer = False
    else:
        raise TypeError(f"otsu_threshold takes integer or float values, not {values.dtype}")
    histogram = np.bincount(bins, minlength=256).astype(np.float64)
    probability = histogram / histogram.sum()
    omega = np.cumsum(probability)[:-1]  # weight of the class at or below each cut k
    mu = np.cumsum(probability * np.arange(256))[:-1]
    mu_total = mu[-1] + 255 * probability[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * omega - mu) ** 2 / (omega * (1.0 - omega))
    between[~np.isfinite(between)] = 0.0  # cuts with an empty class
    best = between.max()
    if best <= 0.0:  # one occupied bin: nothing to split
        return float(values.max())
    cuts = np.flatnonzero(between >= best * (1.0 - 1e-9))
    cut = (cuts.min() + cuts.max()) / 2.0  # the cut lies after bin `cut`
    return float(cut + 0.5) if integer else float((cut + 1.0) / 256.0)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, starts and (exclusive) ends of the runs of True in each row, in raster order."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    change = np.diff(padded, axis=1)
    rows, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)
    return rows, starts, ends


def label_components(mask: np.ndarray, *, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected components of a boolean ``(h, w)`` mask.

    ``connectivity`` 8 joins diagonal neighbours, 4 only edge neighbours. Returns ``(labels,
    count)``: int32 ``(h, w)`` labels, 0 outside the mask and ``1..count`` inside, numbered in
    the raster order of each component's first pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputShapeError(f"`mask` must be (h, w), got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"`connectivity` must be 4 or 8, got {connectivity!r}")
    height, width = mask.shape
    labels = np.zeros((height, width), dtype=np.int32)
    rows, starts, ends = _runs(mask)
    count = len(rows)
    if count == 0:
        return labels, 0
    # Run a (row r) touches run b (row r + 1) when their column ranges overlap, widened by
    # one column each way for diagonal neighbours. Keys order runs by (row, column).
    stride = width + 2
    start_keys = rows.astype(np.int64) * stride + starts
    end_keys = rows.astype(np.int64) * stride + ends
    below = (rows.astype(np.int64) + 1) * stride
    diagonal = connectivity == 8
    first = np.searchsorted(end_keys, below + starts, side="left" if diagonal else "right")
    stop = np.searchsorted(start_keys, below + ends, side="right" if diagonal else "left")
    degree = np.maximum(stop - first, 0)
    upper = np.repeat(np.arange(count), degree)
    offsets = np.arange(len(upper)) - np.repeat(np.cumsum(degree) - degree, degree)
    lower = first[upper] + offsets
    parent = np.arange(count)
    while True:  # hook each edge's roots onto the smaller one, then jump to the roots
        root_upper, root_lower = parent[upper], parent[lower]
        differ = root_upper != root_lower
        if not differ.any():
            break
        high = np.maximum(root_upper[differ], root_lower[differ])
        low = np.minimum(root_upper[differ], root_lower[differ])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    roots, run_labels = np.unique(parent, return_inverse=True)
    lengths = ends - starts
    pixel_rows = np.repeat(rows, lengths)
    pixel_columns = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
        lengths.sum()
    )
    labels[pixel_rows, pixel_columns] = np.repeat(run_labels + 1, lengths)
    return labels, len(roots)


def remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_area`` pixels."""
    labels, count = label_components(mask, connectivity=8)
    if count == 0 or min_area <= 1:
        return np.asarray(mask, dtype=bool).copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes set: 4-connected background regions that do not touch the
    image border (the background of 8-connected tissue)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = label_components(~mask, connectivity=4)
    if count == 0:
        return mask.copy()
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    hole = np.ones(count + 1, dtype=bool)
    hole[border] = False
    hole[0] = False
    return mask | hole[labels]


def fill_polygon(rings: Sequence[np.ndarray], mask: np.ndarray) -> None:
    """Set (in place) the pixels of ``mask`` whose centres are inside one polygon.

    ``rings``: ``(n, 2)`` arrays of ``(x, y)`` vertices, not repeating the first, exterior
    and holes alike (even-odd rule), in thumbnail pixel units (pixel ``(r, c)`` has its centre at
    ``(c + 0.5, r + 0.5)``). Along each row's centre line the crossings with the edges are
    found (an edge owns the rows whose centre ``y`` lies in ``[y_low, y_high)``, so a vertex
    on a centre line counts once); every crossing flips the pixels whose centres are to its
    right, and a running parity fills the inside. Exact where Pillow's ``ImageDraw.polygon``
    is not: it fills pixels the outline touches, so a pixel-edge outline would grow a pixel.
    """
    height, width = mask.shape
    start = np.concatenate(rings)
    end = np.concatenate([np.roll(ring, -1, axis=0) for ring in rings])
    low = np.minimum(start[:, 1], end[:, 1])
    high = np.maximum(start[:, 1], end[:, 1])
    first = np.clip(np.ceil(low - 0.5), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(high - 0.5), 0, height).astype(np.int64)
    count = np.maximum(stop - first, 0)
    if not count.any():
        return
    edge = np.repeat(np.arange(len(count)), count)
    row = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    (x0, y0), (x1, y1) = start[edge].T, end[edge].T
    crossing = x0 + (row + 0.5 - y0) * (x1 - x0) / (y1 - y0)
    column = np.clip(np.floor(crossing - 0.5) + 1, 0, width).astype(np.int64)
    top = int(row.min())
    rows = int(row.max()) + 1 - top
    flips = np.bincount((row - top) * (width + 1) + column, minlength=rows * (width + 1))
    parity = np.cumsum(flips.reshape(rows, width + 1)[:, :width], axis=1) % 2 == 1
    mask[top : top + rows] |= parity


def _box_blur(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` × ``size`` window (odd ``size``), edges replicated."""
    radius = size // 2
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    padded = F.pad(tensor, (radius, radius, radius, radius), mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)[0, 0].numpy()


def detect_tissue(
    thumbnail: np.ndarray,
    *,
    threshold: float | None = None,
    min_area: int = 64,
    fill_holes: bool = True,
    background_max: int = 220,
    dark_max: int = 30,
    smooth: int = 3,
    min_threshold: float = 0.05,
) -> np.ndarray:
    """A boolean ``(h, w)`` mask of the tissue on an ``(h, w, 3)`` uint8 RGB thumbnail.

    Stained tissue is coloured and glass is grey, so pixels are classified by their
    saturation ``S = (max − min) / max`` of R, G, B (HSV's S; 0 where max is 0):

    1. ``S`` is averaged over a ``smooth`` × ``smooth`` box (odd; 1 or 0 switches it off),
       which removes noise and JPEG speckle.
    2. Near-white pixels (every channel above ``background_max``: glass, even slightly
       tinted) and near-black ones (every channel at most ``dark_max``: out-of-scan areas,
       black borders, whose tiny channel differences give a large ``S``) are background.
    3. Tissue is ``S > threshold``; by default the threshold is :func:`otsu_threshold` of
       the remaining pixels' ``S``, but never below ``min_threshold``, so that a blank slide
       (only glass noise to split) gives no tissue.
    4. 8-connected components smaller than ``min_area`` thumbnail pixels are dropped (dust,
       specks), then, if ``fill_holes``, holes are filled (:func:`fill_mask_holes`; also a large
       lumen enclosed by tissue).

    Not handled: pen marks (coloured, so they are tissue here), dark debris or folds
    brighter than ``dark_max``, and bubbles' edges. A thumbnail without tissue gives an
    all-False mask, not an error: what to do then is the caller's decision.
    """
    thumbnail = np.asarray(thumbnail)
    if thumbnail.ndim != 3 or thumbnail.shape[2] != 3 or thumbnail.dtype != np.uint8:
        raise InputShapeError(
            f"`thumbnail` must be an (h, w, 3) uint8 RGB array; got shape {thumbnail.shape} "
            f"and dtype {thumbnail.dtype}"
        )
    if min_area < 0:
        raise ValueError(f"`min_area` must be at least 0, got {min_area}")
    red, green, blue = thumbnail[..., 0], thumbnail[..., 1], thumbnail[..., 2]
    brightest = np.maximum(np.maximum(red, green), blue)  # 10× faster than .max(axis=2)
    darkest = np.minimum(np.minimum(red, green), blue)
    saturation = (brightest.astype(np.float32) - darkest) / np.maximum(brightest, 1)
    if smooth > 1:
        if smooth % 2 == 0:
            raise ValueError(f"`smooth` must be odd (a centred box), got {smooth}")
        saturation = _box_blur(saturation, smooth)
    candidate = (darkest <= background_max) & (brightest > dark_max)
    if not candidate.any():
        return np.zeros(candidate.shape, dtype=bool)
    if threshold is None:
        values = np.clip(saturation[candidate], 0.0, 1.0)
        threshold = max(otsu_threshold(values), min_threshold)
    mask = candidate & (saturation > threshold)
    mask = remove_small_components(mask, min_area)
    if fill_holes:
        mask = fill_mask_holes(mask)
    return mask


def mask_from_png(path: str | os.PathLike, shape: Sequence[int]) -> np.ndarray:
    """A user's mask image as a boolean mask on the thumbnail grid ``shape = (h, w)``.

    Any mode Pillow reads: a pixel is inside when any of its bands is nonzero (palette
    images: a nonzero palette index), and outside when it is fully transparent (alpha 0).
    The image is resampled to ``(h, w)`` by nearest neighbour (pixel centres), so it may have
    any resolution, but its aspect ratio must match the slide's within 2 %: another ratio
    means a mask of another slide, or a crop. An image with no pixel inside is refused too.
    """
    from PIL import Image, UnidentifiedImageError

    height, width = (int(v) for v in shape)
    name = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            bands = image.getbands()
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ImageLoadError(f"{name}: cannot read the mask image ({error})") from None
    if pixels.ndim == 2:
        inside = pixels != 0
    else:
        alpha = bands.index("A") if "A" in bands else None
        colour = [k for k in range(pixels.shape[2]) if k != alpha]
        inside = (pixels[..., colour] != 0).any(axis=2)
        if alpha is not None:
            inside &= pixels[..., alpha] != 0
    image_height, image_width = inside.shape
    ratio = (image_width / image_height) / (width / height)
    if abs(ratio - 1.0) > ASPECT_TOLERANCE:
        raise RegionError(
            f"{name}: the mask is {image_width}×{image_height} (aspect "
            f"{image_width / image_height:.3f}) but the slide's thumbnail is {width}×{height} "
            f"(aspect {width / height:.3f}); draw the mask over the whole slide"
        )
    if not inside.any():
        raise RegionError(f"{name}: the mask is empty (no nonzero pixel)")
    rows = ((np.arange(height) + 0.5) * image_height / height).astype(np.intp)
    columns = ((np.arange(width) + 0.5) * image_width / width).astype(np.intp)
    return inside[np.minimum(rows, image_height - 1)][:, np.minimum(columns, image_width - 1)]
