"""The tissue classes of the demo's synthetic skin tiles, their ids and display colours."""

from __future__ import annotations

import numpy as np

__all__ = [
    "BACKGROUND",
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "DERMIS",
    "EPIDERMIS",
    "FAT",
    "FOLLICLE",
    "SEBACEOUS",
    "VESSEL",
    "label_to_rgb",
]

#: Segmentation classes; the index is the class id in the label maps.
CLASS_NAMES: tuple[str, ...] = (
    "background",
    "dermis_ecm",
    "epidermis",
    "sebaceous_gland",
    "hair_follicle",
    "blood_vessel",
    "fat",
)

BACKGROUND, DERMIS, EPIDERMIS, SEBACEOUS, FOLLICLE, VESSEL, FAT = range(len(CLASS_NAMES))

#: One distinct RGB colour per class (row = class id), for drawing label maps.
CLASS_COLOURS: np.ndarray = np.array(
    [
        (0, 0, 0),  # background: black
        (236, 150, 190),  # dermis_ecm: pink
        (110, 50, 170),  # epidermis: purple
        (250, 215, 60),  # sebaceous_gland: yellow
        (150, 85, 30),  # hair_follicle: brown
        (225, 25, 35),  # blood_vessel: red
        (110, 200, 245),  # fat: light blue
    ],
    dtype=np.uint8,
)
CLASS_COLOURS.setflags(write=False)


def label_to_rgb(labels: np.ndarray) -> np.ndarray:
    """Class-id map (any shape) → uint8 RGB (shape + ``(3,)``) in :data:`CLASS_COLOURS`."""
    return CLASS_COLOURS[labels]
