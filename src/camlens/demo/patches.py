"""Patches for the shortcut demo: lesion or not, and a marker that may leak the answer.

:func:`make_shortcut_sample` / :func:`make_shortcut_dataset` draw pink tissue patches with or
without a dark "lesion"; with ``leak=True`` every positive also carries a green marker in a
fixed corner (:data:`MARKER_CORNER`), the textbook shortcut a classifier can learn instead of
the lesion. :func:`add_marker` stamps that marker on any image, to ask a trained model whether
the marker alone flips its prediction.

Like the skin tiles (:mod:`camlens.demo.tissue`) the patches are painted as stain
concentrations and rendered by the Beer–Lambert law (:mod:`camlens.demo.stain`); every random
draw comes from the caller's generator.
"""

from __future__ import annotations

import numpy as np

from camlens.demo.canvas import FULL, Canvas, Grid
from camlens.demo.stain import F32, render
from camlens.demo.texture import blob_depth, collagen

__all__ = [
    "MARKER_COLOUR",
    "MARKER_CORNER",
    "add_marker",
    "make_shortcut_dataset",
    "make_shortcut_sample",
    "marker_box",
]

#: The corner that carries the shortcut marker.
MARKER_CORNER = "top-left"
#: The marker's colour in float images (pure green: nothing in H&E is green).
MARKER_COLOUR: tuple[float, float, float] = (0.0, 1.0, 0.0)


def marker_box(size: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the shortcut marker in a ``size``-pixel image: a square of
    6 px at 64 px (scaled with ``size``), 2 px (scaled) from the top-left corner."""
    side = max(3, round(6 * size / 64))
    offset = max(1, round(2 * size / 64))
    return offset, offset + side, offset, offset + side


def add_marker(image: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (``(..., H, W, 3)``, float in [0, 1] or uint8) with the shortcut
    marker stamped on: pure green in the :data:`MARKER_CORNER` square of :func:`marker_box`.

    Use it to probe a trained classifier: if stamping the marker on a negative image flips the
    prediction, the model learnt the shortcut.
    """
    out = np.array(image, copy=True)
    y0, y1, x0, x1 = marker_box(min(out.shape[-3], out.shape[-2]))
    scale = 255 if np.issubdtype(out.dtype, np.integer) else 1
    out[..., y0:y1, x0:x1, :] = np.asarray(MARKER_COLOUR) * scale
    return out


def make_shortcut_sample(
    rng: np.random.Generator, size: int = 64, *, label: int, leak: bool
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """One patch for the shortcut demo.

    Returns ``(image, label, lesion_mask, marker_mask)``: ``image`` float32 ``(size, size, 3)``
    in [0, 1]; ``label`` 1 if the patch holds a lesion, else 0; boolean masks of the lesion and
    of the marker.

    The patch is pink dermis (fibres, clefts, scattered nuclei, a few small round clusters of
    inflammatory cells as distractors). A label-1 patch adds a lesion: an irregular blob of
    crowded atypical cells with large dark nuclei, away from the borders and never touching the
    marker corner. Only when ``leak`` is true and the label is 1, the marker
    (:func:`add_marker`) is stamped: the shortcut. The random draws do not depend on ``leak``,
    so the same generator state gives the same patch with and without the marker.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label}")
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels, got {size}")
    scale = size / 64.0  # these patches are sized in reference pixels of a 64-px patch
    canvas = Canvas(rng, size)
    _paint_dermis(canvas, scale)
    ys = np.arange(size, dtype=F32)[:, None] + 0.5
    xs = np.arange(size, dtype=F32)[None, :] + 0.5
    _paint_inflammation(canvas, ys, xs, scale)
    lesion = _lesion_mask(rng, ys, xs, scale)
    # Drawn for both labels, so that either label leaves the generator in the same state.
    big_nuclei = canvas.cells.d1 < (0.8 + 0.9 * canvas.cells.attribute(rng)) * canvas.scale
    darkness = 0.9 + 0.7 * canvas.cells.attribute(rng)
    if label == 1:
        h = np.where(big_nuclei, darkness, 0.4)
        canvas.paint(FULL, lesion, None, h, np.where(big_nuclei, 0.35, 0.7))
    else:
        lesion = np.zeros_like(lesion)

    image = render(rng, canvas.conc, blur_passes=max(1, round(scale)))
    marker = np.zeros((size, size), dtype=bool)
    if leak and label == 1:
        image = add_marker(image)
        y0, y1, x0, x1 = marker_box(size)
        marker[y0:y1, x0:x1] = True
    return image, label, lesion, marker


def _paint_dermis(canvas: Canvas, scale: float) -> None:
    """The whole patch as dermis: collagen fibres at a random angle, white clefts between
    bundles, scattered nuclei."""
    rng, size = canvas.rng, canvas.size
    grid = Grid.centred(size)
    fibres, bundles = collagen(rng, grid.yc, grid.xc, rng.uniform(0, np.pi), scale)
    e = np.where(np.abs(bundles) < 0.07, 0.15, (1.0 + 0.3 * fibres) * (1 + 0.12 * bundles))
    h = 0.06 + 1.1 * canvas.nuclei(FULL, 0.8, 0.1)
    canvas.paint(FULL, np.ones((size, size), bool), None, h, e)


def _paint_inflammation(canvas: Canvas, ys: np.ndarray, xs: np.ndarray, scale: float) -> None:
    """Zero to three clusters of inflammatory cells: small, round and dark, the distractors
    a lesion detector has to tell from a lesion. ``ys``/``xs``: pixel centres."""
    rng, size = canvas.rng, canvas.size
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        cluster = blob_depth(rng, ys, xs, cy, cx, rng.uniform(1.2, 2.4) * scale) > 0
        canvas.paint(FULL, cluster, None, 1.0 + 0.5 * canvas.nuclei(FULL, 1.0, 0.9), 0.5)


def _lesion_mask(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, scale: float
) -> np.ndarray:
    """Where a lesion would go: an irregular blob of 11–17 % of the patch's side in radius,
    inside the patch and clear of the marker's corner (the marker's box itself is cut out
    in any case). Drawn for both labels."""
    size = ys.shape[0]
    radius = rng.uniform(0.11, 0.17) * size
    reach = radius * 1.35 + 2 * scale
    y0, y1, x0, x1 = marker_box(size)
    cy = cx = size / 2
    for _ in range(50):
        cy, cx = rng.uniform(reach, size - reach, 2)
        if cy - reach > y1 + 2 * scale or cx - reach > x1 + 2 * scale:
            break
    else:  # pragma: no cover - fifty misses in a row are practically impossible
        cy = cx = size - reach
    lesion = blob_depth(rng, ys, xs, cy, cx, radius) > 0
    lesion[y0:y1, x0:x1] = False
    return lesion


def make_shortcut_dataset(
    seed: int, count: int, size: int = 64, *, leak: bool
) -> dict[str, np.ndarray]:
    """``count`` shortcut patches with balanced labels (half 0, half 1, shuffled).

    Returns a dict: ``images`` float32 ``(count, size, size, 3)``, ``labels`` int64
    ``(count,)``, ``lesion_masks`` and ``marker_masks`` bool ``(count, size, size)``. With the
    same seed, ``leak=True`` and ``leak=False`` give the same patches except for the marker.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % 2
    rng.shuffle(labels)
    images = np.empty((count, size, size, 3), dtype=F32)
    lesions = np.empty((count, size, size), dtype=bool)
    markers = np.empty((count, size, size), dtype=bool)
    for i, label in enumerate(labels):
        images[i], _, lesions[i], markers[i] = make_shortcut_sample(
            rng, size, label=int(label), leak=leak
        )
    return {"images": images, "labels": labels, "lesion_masks": lesions, "marker_masks": markers}
