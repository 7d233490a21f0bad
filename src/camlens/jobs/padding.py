"""Pad images to the side multiple a dense model needs, and crop its results back.

Segmentation models need ``H`` and ``W`` divisible by their output stride (smp's models raise
in ``check_input_shape``, others fail with a shape error deep inside), and patch models by
their patch size. A job pads each batch at the bottom and right (:func:`padding_for`,
:func:`pad_batch`), explains the padded batch, and crops the final maps back
(:func:`crop`): ``crop(pad_batch(x, p), p)`` is ``x`` exactly.

Raw maps (``layer_maps``) are at the layer's grid over the *padded* image: a grid of
``h × w`` cells covers ``H' × W'`` pixels, so the original ``H × W`` image is the top-left
``h·H/H' × w·W/W'`` of it. Crop them either after upsampling to ``H' × W'`` (then
:func:`crop` with the pixel padding is exact), or at the grid with :func:`grid_padding`
(whole cells that lie in the padding only; the last kept cell may straddle the border).

With ``masks="predicted"``, classes predicted on the padding join the targets; pass
``region=(0, H, 0, W)`` (a box in image coordinates, unchanged by bottom/right padding) to
explain the image only, and pad ground-truth label maps with ``mode="constant"``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["crop", "grid_padding", "model_multiple", "pad_batch", "padding_for", "parse_pad"]

#: ``(top, bottom, left, right)`` in pixels (or grid cells for :func:`grid_padding`).
Padding = tuple[int, int, int, int]
PadMode = Literal["auto", "reflect", "replicate", "constant"]


def _whole(value: object, least: int) -> int | None:
    """``value`` as an int ≥ ``least`` (ints, NumPy ints), or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None
    return number if number >= least else None


def _positive_int(value: object) -> int | None:
    return _whole(value, 1)


def _side_multiple(value: object) -> int | None:
    """A patch size: an int, or a (height, width) pair whose sides are both needed (lcm)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        sides = [_positive_int(v) for v in value]
        if not sides or any(s is None for s in sides):
            return None
        return math.lcm(*(s for s in sides if s is not None))
    return _positive_int(value)


def model_multiple(model: nn.Module) -> int | None:
    """The multiple a model's input height and width must have, as the model declares it.

    Read, in this order (the first one found that is a positive int, or an int pair, wins):

    1. ``model.encoder.output_stride`` — segmentation_models_pytorch (the stride its
       ``check_input_shape`` checks) and camlens' smp-layout models; 1 when the model sets
       ``requires_divisible_input_shape = False`` (smp models that take any size);
    2. ``model.patch_embed.patch_size`` — timm ViTs (an int or a ``(h, w)`` tuple);
    3. ``model.patch_size`` — torchvision's ``VisionTransformer``;
    4. ``model.config.patch_size`` — HuggingFace ViTs.

    A ``(h, w)`` patch size gives the least common multiple of both, so one multiple serves
    both sides. ``None`` when nothing is declared: the multiple is unknown (a plain model, or a
    torchvision segmenter, which takes any size). Padding to the multiple is necessary, not
    always sufficient: a ViT with a fixed ``img_size`` still needs exactly that size.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        stride = _positive_int(getattr(encoder, "output_stride", None))
        if stride is not None:
            return 1 if getattr(model, "requires_divisible_input_shape", True) is False else stride
    patch_embed = getattr(model, "patch_embed", None)
    candidates = [
        getattr(patch_embed, "patch_size", None) if patch_embed is not None else None,
        getattr(model, "patch_size", None),
        getattr(getattr(model, "config", None), "patch_size", None),
    ]
    for candidate in candidates:
        multiple = _side_multiple(candidate)
        if multiple is not None:
            return multiple
    return None


def parse_pad(text: str) -> Literal["auto"] | int | None:
    """The CLI's ``--pad auto|N|none``: ``"auto"`` (the model's multiple, see
    :func:`model_multiple`), an int N ≥ 1 (pad to multiples of N), or None (no padding).

    Case and surrounding spaces are ignored. Raises ValueError for anything else.
    """
    word = str(text).strip().lower()
    if word in ("auto", "none"):
        return "auto" if word == "auto" else None
    try:
        number = int(word, 10)
    except ValueError:
        number = None
    if number is None or number < 1:
        raise ValueError(
            f"--pad must be 'auto', 'none' or a whole number ≥ 1 (the multiple image sides "
            f"are padded to), got {text!r}"
        )
    return number


def padding_for(height: int, width: int, multiple: int) -> Padding:
    """The smallest padding ``(top, bottom, left, right)`` that makes both sides multiples of
    ``multiple``; all of it at the bottom and right, so ``top = left = 0``.

    Why not centred: with bottom/right padding, pixel ``(y, x)`` of the image is pixel
    ``(y, x)`` of the padded image, so boxes, region masks and ground-truth label maps in
    image coordinates stay valid (pad label maps the same way), cropping is a plain
    ``[:H, :W]``, and the layer's grid cells start at the image's corner as they would
    without padding (cell ``i`` covers pixels ``[i·s, (i+1)·s)``) — only the last row and
    column of cells reach into the padding. Centring would shift every cell by up to half
    a stride for a padding of less than ``multiple`` pixels, which the model does not need.
    """
    sides = (_positive_int(height), _positive_int(width), _positive_int(multiple))
    if any(side is None for side in sides):
        raise ValueError(
            f"height, width and multiple must be whole numbers ≥ 1, got {height!r}, "
            f"{width!r}, {multiple!r}"
        )
    rows, columns, step = (int(side or 1) for side in sides)
    return (0, -rows % step, 0, -columns % step)


def _check_padding(padding: Sequence[int]) -> Padding:
    values = [_whole(v, 0) for v in padding]
    if len(values) != 4 or any(v is None for v in values):
        raise ValueError(
            f"padding must be four whole numbers ≥ 0 (top, bottom, left, right), got {padding!r}"
        )
    top, bottom, left, right = (int(v or 0) for v in values)
    return top, bottom, left, right


def pad_batch(
    inputs: torch.Tensor,
    padding: Sequence[int],
    mode: PadMode = "auto",
    value: float = 0.0,
) -> torch.Tensor:
    """Pad the last two axes of ``inputs`` (``(B, C, H, W)``, or any ``(..., H, W)``).

    Modes: ``"reflect"`` mirrors the image without repeating its edge row, so tissue and
    texture continue naturally and no artificial edge enters the model; it needs each
    padding amount smaller than the side it extends. ``"replicate"`` repeats the edge row or
    column. ``"auto"`` (the default) is reflect when every amount is smaller than its side,
    else replicate (tiny images). ``"constant"`` fills with ``value`` — the mode for label
    maps (an ignore index), which must not be mirrored.

    Returns a new tensor (``inputs`` itself when the padding is all zero); undone exactly by
    :func:`crop` with the same ``padding``.
    """
    top, bottom, left, right = _check_padding(padding)
    if inputs.dim() < 2:
        raise ValueError(f"inputs must have at least 2 axes (..., H, W), got {tuple(inputs.shape)}")
    if not (top or bottom or left or right):
        return inputs
    height, width = inputs.shape[-2:]
    if mode == "auto":
        fits = max(top, bottom) < height and max(left, right) < width
        mode = "reflect" if fits else "replicate"
    if mode not in ("reflect", "replicate", "constant"):
        raise ValueError(f"mode must be 'auto', 'reflect', 'replicate' or 'constant', got {mode!r}")
    planes = inputs.reshape(-1, height, width)  # (N, H, W): what every mode takes
    amounts = (left, right, top, bottom)
    if mode == "constant":
        padded = F.pad(planes, amounts, mode="constant", value=value)
    else:
        padded = F.pad(planes, amounts, mode=mode)
    return padded.reshape(*inputs.shape[:-2], *padded.shape[-2:])


def crop(tensor: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
    """Remove ``padding = (top, bottom, left, right)`` from the last two axes of ``tensor``
    (``(..., H', W')`` → ``(..., H' - top - bottom, W' - left - right)``): a view.

    The inverse of :func:`pad_batch` for images and for final maps (computed at the padded
    input's size). For raw maps at a layer's grid use :func:`grid_padding` first, or
    upsample them to the padded size.
    """
    top, bottom, left, right = _check_padding(padding)
    height, width = tensor.shape[-2:]
    if top + bottom >= height or left + right >= width:
        raise ValueError(
            f"padding {tuple(padding)} leaves nothing of a {height}×{width} tensor "
            f"(shape {tuple(tensor.shape)})"
        )
    return tensor[..., top : height - bottom, left : width - right]


def grid_padding(
    padding: Sequence[int], padded_size: Sequence[int], grid_size: Sequence[int]
) -> Padding:
    """The whole grid cells of a raw map that lie entirely in the padding.

    A raw map of ``grid_size = (h, w)`` cells covers the padded image of ``padded_size =
    (H', W')`` pixels, so a padding of ``p`` pixels is ``p·h/H'`` cells; rounding down keeps
    every cell that covers some of the image. ``crop(raw, grid_padding(...))`` then covers
    the original image (the last row or column of cells may straddle its border).
    """
    top, bottom, left, right = _check_padding(padding)
    height, width = (int(s) for s in padded_size)
    rows, columns = (int(s) for s in grid_size)
    return (
        top * rows // height,
        bottom * rows // height,
        left * columns // width,
        right * columns // width,
    )
