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

import torch
from torch import nn

from camlens.errors import InputShapeError
from camlens.tokens import TokenLayout

__all__ = ["ReshapeTransform", "channels_last", "default_reshape", "tokens_to_grid"]

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
