"""Loading, preprocessing and drawing images for class activation maps.

This package is a drop-in replacement for ``pytorch_grad_cam.utils.image`` (1.5.x)::

    from camlens.image import preprocess_image, show_cam_on_image

``preprocess_image`` and ``show_cam_on_image`` return the same numbers as their
pytorch-grad-cam namesakes for the same arguments, bit for bit, without OpenCV or
torchvision: the OpenCV colour maps are rebuilt here (see :func:`colormap_lut`).

Everything is importable from ``camlens.image``; the code lives in one module per concept:

* :mod:`~camlens.image.colormaps`: OpenCV's colour maps (:func:`colormap_lut`),
  :func:`apply_colormap` and :func:`signed_heatmap`;
* :mod:`~camlens.image.io`: :func:`load_image` and :func:`save_image`;
* :mod:`~camlens.image.preprocess`: :func:`preprocess_image` and :func:`scale_to_unit`;
* :mod:`~camlens.image.overlay`: :func:`show_cam_on_image` and :func:`overlay`;
* :mod:`~camlens.image.labels`: :func:`label_palette` and :func:`mask_to_rgb`;
* :mod:`~camlens.image.grid`: :func:`make_grid`.

Conventions, unless a function says otherwise:

* images are ``numpy`` arrays laid out ``[H, W, C]`` (channels last);
* a float image holds values in ``[0, 1]``, a ``uint8`` image values in ``[0, 255]``;
* colours are RGB. The one exception is ``show_cam_on_image(..., use_rgb=False)``,
  which returns OpenCV's BGR order on purpose, as pytorch-grad-cam does.
"""

from __future__ import annotations

from camlens.image.colormaps import (
    COLORMAP_AUTUMN,
    COLORMAP_BONE,
    COLORMAP_CIVIDIS,
    COLORMAP_COOL,
    COLORMAP_DEEPGREEN,
    COLORMAP_HOT,
    COLORMAP_HSV,
    COLORMAP_INFERNO,
    COLORMAP_JET,
    COLORMAP_MAGMA,
    COLORMAP_NAMES,
    COLORMAP_OCEAN,
    COLORMAP_PARULA,
    COLORMAP_PINK,
    COLORMAP_PLASMA,
    COLORMAP_RAINBOW,
    COLORMAP_SPRING,
    COLORMAP_SUMMER,
    COLORMAP_TURBO,
    COLORMAP_TWILIGHT,
    COLORMAP_TWILIGHT_SHIFTED,
    COLORMAP_VIRIDIS,
    COLORMAP_WINTER,
    SIGNED_NEGATIVE_RGB,
    SIGNED_POSITIVE_RGB,
    apply_colormap,
    colormap_lut,
    signed_heatmap,
)
from camlens.image.colormaps import ColormapLike as ColormapLike
from camlens.image.familiar import (
    create_labels_legend,
    deprocess_image,
    scale_cam_image,
    show_factorization_on_image,
)
from camlens.image.grid import make_grid
from camlens.image.io import PathLike as PathLike
from camlens.image.io import load_image, save_image
from camlens.image.labels import label_palette, mask_to_rgb
from camlens.image.overlay import overlay, show_cam_on_image
from camlens.image.preprocess import preprocess_image, scale_to_unit

__all__ = [
    "COLORMAP_AUTUMN",
    "COLORMAP_BONE",
    "COLORMAP_CIVIDIS",
    "COLORMAP_COOL",
    "COLORMAP_DEEPGREEN",
    "COLORMAP_HOT",
    "COLORMAP_HSV",
    "COLORMAP_INFERNO",
    "COLORMAP_JET",
    "COLORMAP_MAGMA",
    "COLORMAP_NAMES",
    "COLORMAP_OCEAN",
    "COLORMAP_PARULA",
    "COLORMAP_PINK",
    "COLORMAP_PLASMA",
    "COLORMAP_RAINBOW",
    "COLORMAP_SPRING",
    "COLORMAP_SUMMER",
    "COLORMAP_TURBO",
    "COLORMAP_TWILIGHT",
    "COLORMAP_TWILIGHT_SHIFTED",
    "COLORMAP_VIRIDIS",
    "COLORMAP_WINTER",
    "SIGNED_NEGATIVE_RGB",
    "SIGNED_POSITIVE_RGB",
    "apply_colormap",
    "colormap_lut",
    "create_labels_legend",
    "deprocess_image",
    "label_palette",
    "load_image",
    "make_grid",
    "mask_to_rgb",
    "overlay",
    "preprocess_image",
    "save_image",
    "scale_cam_image",
    "scale_to_unit",
    "show_cam_on_image",
    "show_factorization_on_image",
    "signed_heatmap",
]
