"""Seeded synthetic data for the embedded demo (``camlens demo``): the public names in one
place.

Two generators, numpy only; every random draw comes from the caller's
:class:`numpy.random.Generator`, so a seed fixes the data bit for bit on any machine.

* :func:`make_tile` / :func:`make_dataset` (:mod:`camlens.demo.tissue`): low-magnification H&E
  skin-section tiles with a per-pixel label for seven tissue classes (:data:`CLASS_NAMES`),
  for the segmentation demo.
* :func:`make_shortcut_sample` / :func:`make_shortcut_dataset` (:mod:`camlens.demo.patches`):
  pink tissue patches with or without a dark "lesion"; with ``leak=True`` every positive also
  carries a green marker in a fixed corner (:data:`MARKER_CORNER`), the textbook shortcut a
  classifier can learn instead of the lesion. :func:`add_marker` stamps that marker on any
  image, to ask a trained model whether the marker alone flips its prediction.

Both are painted as stain concentrations and rendered by the Beer–Lambert law
(:mod:`camlens.demo.stain`) from shared random textures (:mod:`camlens.demo.texture`).
"""

from __future__ import annotations

from camlens.demo.classes import (  # noqa: F401 - the class ids are re-exported outside __all__
    BACKGROUND,
    CLASS_COLOURS,
    CLASS_NAMES,
    DERMIS,
    EPIDERMIS,
    FAT,
    FOLLICLE,
    SEBACEOUS,
    VESSEL,
    label_to_rgb,
)
from camlens.demo.patches import (
    MARKER_COLOUR,
    MARKER_CORNER,
    add_marker,
    make_shortcut_dataset,
    make_shortcut_sample,
    marker_box,
)
from camlens.demo.tissue import make_dataset, make_tile

__all__ = [
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "MARKER_COLOUR",
    "MARKER_CORNER",
    "add_marker",
    "label_to_rgb",
    "make_dataset",
    "make_shortcut_dataset",
    "make_shortcut_sample",
    "make_tile",
    "marker_box",
]
