"""Synthetic H&E skin-section tiles with a per-pixel label, for the segmentation demo.

:func:`make_tile` draws one tile: low magnification, seven tissue classes
(:data:`CLASS_NAMES`). Every random draw comes from the caller's
:class:`numpy.random.Generator`, so a seed fixes the tile bit for bit on any machine.

How a tile is made, and why:

* Two steps: :func:`draw_tissue` lays out and paints the tissue as per-pixel labels and stain
  concentrations on a :class:`~camlens.demo.canvas.Canvas`; :func:`~camlens.demo.stain.render`
  turns the concentrations into colour by the Beer–Lambert law, with a random per-slide
  stain variation.
* Geometry follows a skin section (:mod:`camlens.demo.layout`): glass above a wavy skin
  surface, a layered epidermis with rete ridges, dermis with fibre bundles roughly parallel
  to the surface, subcutaneous fat lobules deeper down, and adnexa (follicles with attached
  sebaceous glands, vessels; :mod:`camlens.demo.adnexa`) inside. Sizes are given in
  reference pixels of a 128-px tile and scaled with ``size``, so a 512-px tile shows the same
  field of view at four times the resolution.
* Classes are deliberately *not* separable by colour alone: fat cells and glass are both
  white (fat has thin pink membranes, chicken-wire), the dermis has white clefts, follicle
  sheaths are as purple as the epidermis, sebaceous lobules are as pale as fat. A segmenter
  must use texture and context, which is what makes its CAMs interesting to look at.
* Everything is vectorised; the few per-structure steps work on small bounding boxes.

The order of the steps in :func:`draw_tissue` is also the order of the random draws: it
fixes the data, and the shipped demo models were trained on it, so keep it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from camlens.demo.adnexa import (
    draw_follicle_across,
    draw_follicle_lengthwise,
    draw_gland,
    draw_vessel,
)
from camlens.demo.canvas import FULL, Canvas, Grid, pick_point
from camlens.demo.classes import (
    BACKGROUND,
    CLASS_COLOURS,
    CLASS_NAMES,
    DERMIS,
    EPIDERMIS,
    FAT,
    label_to_rgb,
)
from camlens.demo.layout import Follicle, Skin, draw_skin, fat_lobules, plan_follicles, torn_edge
from camlens.demo.stain import F32, render
from camlens.demo.texture import Voronoi, collagen, noise_at

__all__ = [
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "draw_tissue",
    "label_to_rgb",
    "make_dataset",
    "make_tile",
]


def make_tile(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic H&E skin-section tile and its label map.

    Returns ``(image, labels)``: ``image`` float32 ``(size, size, 3)`` in [0, 1], RGB;
    ``labels`` int64 ``(size, size)`` with class ids indexing :data:`CLASS_NAMES`.

    Layout (randomised per tile): glass beyond the skin surface at one edge (most tiles) and
    sometimes beyond a torn section edge at another; epidermis along the surface; dermis with
    fibre bundles, clefts, fibroblast nuclei and vessels; hair follicles cut lengthwise
    (from the surface down to a bulb) or across (rings), sebaceous glands beside them; fat
    lobules at depth. All randomness comes from ``rng``: the same generator state gives the
    same tile.
    """
    canvas = draw_tissue(rng, size)
    image = render(rng, canvas.conc, blur_passes=max(1, round(canvas.scale / 2)))
    return image, canvas.labels


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``count`` tiles from one seeded generator: images ``(count, size, size, 3)`` float32
    and labels ``(count, size, size)`` int64."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=F32)
    labels = np.empty((count, size, size), dtype=np.int64)
    for i in range(count):
        images[i], labels[i] = make_tile(rng, size)
    return images, labels


def draw_tissue(rng: np.random.Generator, size: int) -> Canvas:
    """The tissue of one tile, not yet rendered: labels and stain concentrations.

    Structures are painted back to front, each overwriting what lies beneath it: dermis
    everywhere, fat, epidermis, vessels, sebaceous glands, the glass beyond the surface, hair
    follicles (whose shafts may stick out into that glass), a torn edge.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    canvas = Canvas(rng, size, fill_label=DERMIS)
    scale = canvas.scale
    grid = Grid.centred(size)
    skin = draw_skin(rng, grid, scale)
    _paint_dermis(canvas, grid, skin)
    _paint_fat(canvas, fat_lobules(rng, grid, skin, scale))
    if skin.surface.present:
        _paint_epidermis(canvas, skin)
    # Adnexa go in the dermis proper: below the epidermis, not in fat or glass.
    free_dermis = (skin.dermal_depth > 3 * scale) & (canvas.labels == DERMIS)
    margin = int(4 * scale)
    _paint_vessels(canvas, skin)
    follicles = plan_follicles(rng, grid, skin, free_dermis, margin, scale)
    _paint_glands(canvas, follicles, free_dermis, margin)
    if skin.surface.present:
        _paint_glass(canvas, skin.depth < 0)
    _paint_follicles(canvas, skin, follicles)
    torn = torn_edge(rng, grid, skin.surface, scale)
    if torn is not None:
        _paint_glass(canvas, torn)
    return canvas


def _paint_dermis(canvas: Canvas, grid: Grid, skin: Skin) -> None:
    """The whole tile as dermis: eosin fibre bundles with white clefts, fibres running in two
    wavy directions (one roughly parallel to the surface) that take turns across the tile,
    scattered fibroblast nuclei; paler and more cellular just under the epidermis (the
    papillary dermis)."""
    rng, scale = canvas.rng, canvas.scale
    theta = skin.surface.angle + np.pi / 2 + rng.normal(0, 0.3)
    fibres, bundles = collagen(rng, grid.yc, grid.xc, theta, scale)
    papillary = np.clip(1 - skin.dermal_depth / (12 * scale), 0, 1) if skin.surface.present else 0.0
    e = (1.0 + 0.3 * fibres) * (1 - 0.4 * papillary) * (1 + 0.12 * bundles)
    e = np.where(np.abs(bundles) < 0.07, 0.12, np.maximum(e, 0.2))
    h = 0.05 + 1.2 * canvas.nuclei(FULL, 0.8, 0.06) + 0.1 * papillary
    canvas.paint(FULL, np.ones((canvas.size, canvas.size), bool), None, h, e)


def _paint_fat(canvas: Canvas, lobules: np.ndarray) -> None:
    """Subcutaneous fat in the ``lobules``: large empty cells with thin pink membranes
    (chicken-wire). A whole cell is fat when its centre lies in a lobule, so the lobules'
    borders follow the cell walls."""
    if not lobules.any():
        return
    rng, scale, size = canvas.rng, canvas.scale, canvas.size
    cells = Voronoi(rng, size, size, rng.uniform(9, 13) * scale)
    iy = np.clip(cells.seed_y.astype(np.intp), 0, size - 1)
    ix = np.clip(cells.seed_x.astype(np.intp), 0, size - 1)
    fat = lobules[iy, ix][cells.ids]
    membrane = (cells.d2 - cells.d1) < 1.1 * scale
    h, e = np.where(membrane, 0.05, 0.0), np.where(membrane, 0.85, 0.02)
    canvas.paint(FULL, fat, FAT, h, e)


class _EpidermisLayers(NamedTuple):
    """Boolean maps of the epidermis' layers, from the surface down (they may overlap;
    the higher layer wins)."""

    horny: np.ndarray  # cornified layer at the surface
    flakes: np.ndarray  # where the cornified layer holds keratin (elsewhere it is split)
    granular: np.ndarray  # dark band just below the cornified layer
    basal: np.ndarray  # one dark cell row on the dermis


def _epidermis_layers(rng: np.random.Generator, skin: Skin, scale: float) -> _EpidermisLayers:
    """Random thicknesses of the epidermis' layers, as maps."""
    depth = skin.depth
    horny = depth < rng.uniform(1.0, 2.8) * scale
    flakes = noise_at(rng, skin.frame.along / (6 * scale), depth / (0.7 * scale)) > -0.2
    granular = ~horny & (depth < rng.uniform(1.5, 3.5) * scale)
    basal = skin.dermal_depth > -1.6 * scale
    return _EpidermisLayers(horny, flakes, granular, basal)


def _paint_epidermis(canvas: Canvas, skin: Skin) -> None:
    """The epidermis between the surface and the dermis: a flaky cornified layer, a dark
    granular layer, spinous cells (purple, darker with depth, with nuclei and cell borders)
    and a dark basal layer, sometimes with melanin."""
    rng = canvas.rng
    layers = _epidermis_layers(rng, skin, canvas.scale)
    epidermis = (skin.depth >= 0) & (skin.dermal_depth < 0)
    h = 0.55 + 0.35 * skin.depth / skin.thickness + 0.55 * canvas.nuclei(FULL, 0.75, 0.8)
    e = 0.55 + 0.25 * canvas.borders(FULL, 0.5)
    h = np.where(layers.granular, 1.3, np.where(layers.basal, 1.5, h))
    e = np.where(layers.granular, 0.5, np.where(layers.basal, 0.4, e))
    h = np.where(layers.horny, 0.05, h)
    e = np.where(layers.horny, np.where(layers.flakes, 0.75, 0.12), e)
    melanin = np.where(layers.basal, rng.uniform(0, 0.6) * (rng.random() < 0.3), 0.0)
    canvas.paint(FULL, epidermis, EPIDERMIS, h, e, melanin)


def _paint_vessels(canvas: Canvas, skin: Skin) -> None:
    """One to seven small blood vessels anywhere below the epidermis (a pick may miss)."""
    rng, scale = canvas.rng, canvas.scale
    for _ in range(int(rng.integers(1, 8))):
        at = pick_point(rng, (skin.dermal_depth > 2 * scale) & (canvas.labels != EPIDERMIS), 0)
        if at is not None:
            draw_vessel(canvas, *at)


def _paint_glands(
    canvas: Canvas, follicles: list[Follicle], free_dermis: np.ndarray, margin: int
) -> None:
    """Zero to two sebaceous glands: beside a lengthwise follicle while there is one, else
    free in the dermis (a free pick may miss)."""
    rng, scale = canvas.rng, canvas.scale
    lengthwise = [follicle for follicle in follicles if follicle.lengthwise]
    for k in range(int(rng.choice(3, p=[0.3, 0.45, 0.25]))):
        radius = rng.uniform(7, 12) * scale
        if k < len(lengthwise):
            at = lengthwise[k].beside(rng, radius)
        else:
            at = pick_point(rng, free_dermis, margin)
        if at is not None:
            draw_gland(canvas, *at, radius)


def _paint_glass(canvas: Canvas, mask: np.ndarray) -> None:
    """Bare glass (background) where ``mask``."""
    canvas.paint(FULL, mask, BACKGROUND, 0.01, 0.02)


def _paint_follicles(canvas: Canvas, skin: Skin, follicles: list[Follicle]) -> None:
    """The planned hair follicles; the shaft of a lengthwise one sticks out of the surface
    into the glass in 60 % of them, by up to 25 ref px."""
    rng, scale = canvas.rng, canvas.scale
    for follicle in follicles:
        if follicle.lengthwise:
            outside = rng.uniform(0, 25) * scale * (rng.random() < 0.6)
            draw_follicle_lengthwise(canvas, skin.depth, follicle, outside)
        else:
            draw_follicle_across(canvas, *follicle.start, follicle.radius)
