"""Bring target-layer outputs to the channels-first layout ``[B, C, *grid]``.

CNN layers already give ``[B, C, h, w]`` (or ``[B, C, d, h, w]`` for volumes). Vision
transformers give tokens ``[B, T, C]``: prefix tokens (class, registers, distillation)
followed by the patch tokens. The engine reads the model's :class:`~camlens.tokens.TokenLayout`
once per call (timm, Hugging Face and torchvision attributes, see :mod:`camlens.tokens`) and
drops the prefix tokens — register tokens included — before reshaping the patches to
``(h, w)``, square or not. When the model declares nothing (or a layer's token count does
not fit the declared layout), the grid is guessed: ``T`` or ``T - 1`` must be a perfect
square (a leading class token is dropped); otherwise pass ``grid=(h, w)`` or a
``reshape_transform``. Swin-style models give channels-last ``[B, h, w, C]``; that layout
cannot be told apart from ``[B, C, h, w]`` by shape alone, so it is assumed only for
``nn.LayerNorm`` outputs (which normalise the last dimension, hence channels-last) or when
the user passes :func:`channels_last` as ``reshape_transform``.

For a ViT classifier that reads the class token, explain ``blocks[-1].norm1`` (timm; the
torchvision / Hugging Face equivalents are ``encoder.layers[-1].ln_1`` and
``encoder.layer[-1].layernorm_before`` / ``norm1``): after the last block only the class
token reaches the head, so the last block's output carries no spatial gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from camlens.errors import InputShapeError
from camlens.tokens import TokenLayout

__all__ = [
    "ReshapeTransform",
    "channel_positions",
    "channels_last",
    "default_reshape",
    "tokens_to_grid",
]

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]

_FIX = (
    "pass `grid=(h, w)` (camlens.explain, Explainer, explain_segmentation) or "
    "`reshape_transform=lambda t: camlens.reshape.tokens_to_grid(t, grid=(h, w))`"
)


def tokens_to_grid(
    tokens: torch.Tensor, grid: tuple[int, int] | None = None, *, prefix_tokens: int | None = None
) -> torch.Tensor:
    """``[B, T, C]`` transformer tokens → ``[B, C, h, w]``.

    With ``grid=None`` the grid is square: ``T = h·w`` (no class token) or ``T = 1 + h·w``
    (the first token, the class token, is dropped). Give ``grid`` for other layouts; the
    last ``h·w`` tokens are then taken as the patches. ``prefix_tokens`` (with ``grid``)
    checks that ``T`` is ``prefix_tokens + h·w`` (or ``h·w``).
    """
    if tokens.dim() != 3:
        raise InputShapeError(f"`tokens` must be [B, T, C], got shape {tuple(tokens.shape)}")
    count = tokens.shape[1]
    if grid is None:
        for extra in (0, 1):
            side = math.isqrt(count - extra)
            if side > 0 and side * side == count - extra:
                grid = (side, side)
                break
        else:
            raise InputShapeError(
                f"cannot infer a square patch grid from {count} tokens (neither {count} nor "
                f"{count - 1} is a perfect square, and the model declares no token layout); "
                f"{_FIX}."
            )
    height, width = grid
    if height * width > count:
        raise InputShapeError(f"grid {grid} needs {height * width} tokens, got {count}")
    if prefix_tokens is not None and count not in (prefix_tokens + height * width, height * width):
        raise InputShapeError(
            f"{count} tokens are not {prefix_tokens} prefix tokens + a {height}×{width} grid"
        )
    patches = tokens[:, count - height * width :, :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def _layout_tokens(output: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Tokens by the model's layout; the square guess when this layer does not fit it."""
    if layout.hierarchical:
        grid = layout.grid_for(output.shape[1])
        if grid is not None:
            return tokens_to_grid(output, grid)
    elif layout.fits(output.shape[1]):
        return tokens_to_grid(output, layout.grid)
    if layout.prefix_tokens is None:  # the user's grid=: no guessing behind their back
        raise InputShapeError(
            f"`grid={layout.grid}` needs at least {layout.patches} tokens, the layer gives "
            f"{output.shape[1]}; pass a `reshape_transform` for this layer."
        )
    try:
        return tokens_to_grid(output)
    except InputShapeError:
        raise InputShapeError(
            f"{output.shape[1]} tokens fit neither the model's layout, "
            f"{layout.describe()}, nor a square grid; {_FIX}."
        ) from None


def default_reshape(
    module: nn.Module, output: torch.Tensor, layout: TokenLayout | None = None
) -> torch.Tensor:
    """The layout camlens assumes for ``module``'s ``output`` when no transform is given;
    ``layout`` is the model's token layout (:func:`camlens.tokens.token_layout`), if any."""
    if output.dim() == 3:
        return tokens_to_grid(output) if layout is None else _layout_tokens(output, layout)
    if output.dim() in (4, 5) and isinstance(module, nn.LayerNorm):
        return channels_last(output)
    if output.dim() in (4, 5):
        return output
    raise InputShapeError(
        f"the target layer {type(module).__name__} gives an output of shape "
        f"{tuple(output.shape)}, which has no spatial grid; choose an earlier layer (for a "
        "ViT, `blocks[-1].norm1`: the class token is pooled after the last block), or pass "
        "a `reshape_transform` that returns [B, C, h, w]."
    )


def channels_last(features: torch.Tensor) -> torch.Tensor:
    """``[B, *grid, C]`` (Swin-style, channels last) → ``[B, C, *grid]``."""
    return features.movedim(-1, 1)


# pytorch-grad-cam's reshape transforms (``pytorch_grad_cam.utils.reshape_transforms``, 1.5.x),
# under their names and signatures, with the same outputs, in terms of the functions above.

__all__ += ["fasterrcnn_reshape_transform", "swinT_reshape_transform", "vit_reshape_transform"]


def vit_reshape_transform(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """ViT tokens ``[B, 1 + height·width, C]`` → ``[B, C, height, width]``: the first token
    (the class token) is dropped and the patches are laid out row by row, as
    pytorch-grad-cam's ``vit_reshape_transform`` does. Any other token count is an
    :class:`InputShapeError` (there, a reshape error); for register tokens or non-square
    grids use :func:`tokens_to_grid` or let camlens read the model's layout."""
    if tensor.dim() != 3 or tensor.shape[1] != 1 + height * width:
        raise InputShapeError(
            f"vit_reshape_transform(height={height}, width={width}) expects [B, "
            f"{1 + height * width}, C] (a class token and {height}×{width} patches); got "
            f"{tuple(tensor.shape)}. Pass the grid of your model (input size / patch size)."
        )
    return tokens_to_grid(tensor, (height, width))


def swinT_reshape_transform(tensor: torch.Tensor, height: int = 7, width: int = 7) -> torch.Tensor:
    """Swin tokens ``[B, height·width, C]`` → ``[B, C, height, width]``, as pytorch-grad-cam's
    ``swinT_reshape_transform`` does. Beyond it, a channels-last ``[B, height, width, C]``
    feature map (newer timm Swin stages) is accepted and moved to channels first."""
    if tensor.dim() == 4 and tuple(tensor.shape[1:3]) == (height, width):
        return channels_last(tensor)
    if tensor.dim() != 3 or tensor.shape[1] != height * width:
        raise InputShapeError(
            f"swinT_reshape_transform(height={height}, width={width}) expects [B, "
            f"{height * width}, C] or [B, {height}, {width}, C]; got {tuple(tensor.shape)}. "
            "Pass the grid of the stage you explain."
        )
    return tokens_to_grid(tensor, (height, width))


def fasterrcnn_reshape_transform(x: dict[str, torch.Tensor]) -> torch.Tensor:
    """A Faster R-CNN FPN's feature maps (``{"0": ..., "pool": ...}``) → one ``[B, ΣC, h, w]``
    map: the absolute value of each level, resized bilinearly (``align_corners=False``) to
    the size of the ``"pool"`` level and concatenated along the channels in the dict's
    order, as pytorch-grad-cam's ``fasterrcnn_reshape_transform`` does. Without a ``"pool"``
    level (it needs one) the last level's size is used: torchvision's FPN puts its coarsest
    level, ``"pool"``, last."""
    if not isinstance(x, dict) or not x:
        raise InputShapeError(
            "fasterrcnn_reshape_transform expects a non-empty dict of [B, C, h, w] feature "
            f"maps (a torchvision FPN's output); got {type(x).__name__}"
        )
    size = (x["pool"] if "pool" in x else list(x.values())[-1]).shape[-2:]
    levels = [
        nn.functional.interpolate(value.abs(), size=size, mode="bilinear", align_corners=False)
        for value in x.values()
    ]
    return torch.cat(levels, dim=1)


def channel_positions(
    layer: nn.Module,
    output: torch.Tensor,
    reshape: Any,
    channels: int,
) -> torch.Tensor:
    """``(C, G)``: for each grid channel, the flat positions in one item of the layer's raw
    output that the reshape puts on the grid (found by reshaping a tensor of indices)."""
    numel = output[0].numel()
    index = torch.arange(numel, dtype=torch.float64, device=output.device)
    index = index.reshape(1, *output.shape[1:])
    hint = (
        "AblationCAM zeroes a channel in the layer's own output, so `reshape_transform` must "
        "only select and rearrange values (slicing, reshape, transpose)"
    )
    try:
        grid = reshape(layer, index)
    except Exception as error:
        raise InputShapeError(f"{hint}; it failed on a float64 tensor: {error}") from error
    if not isinstance(grid, torch.Tensor) or grid.dim() < 3 or grid.shape[:2] != (1, channels):
        shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise InputShapeError(f"{hint}; got {shape} for a single item, not (1, {channels}, ...)")
    flat = grid[0].reshape(channels, -1)
    positions = flat.round().long()
    valid = (
        grid.dtype == torch.float64
        and torch.equal(positions.to(flat.dtype), flat)
        and int(positions.min()) >= 0
        and int(positions.max()) < numel
        and torch.unique(positions).numel() == positions.numel()
    )
    if not valid:
        raise InputShapeError(f"{hint}; it computed new values instead.")
    return positions
