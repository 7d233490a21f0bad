"""Bring target-layer outputs to the channels-first layout ``[B, C, *grid]``.

CNN layers already give ``[B, C, h, w]`` (or ``[B, C, d, h, w]`` for volumes). Vision
transformers give tokens ``[B, T, C]``: the grid is inferred when ``T`` or ``T - 1`` is a
perfect square (a leading class token is dropped). Swin-style models give channels-last
``[B, h, w, C]``; that layout cannot be told apart from ``[B, C, h, w]`` by shape alone,
so it is assumed only for ``nn.LayerNorm`` outputs (which normalise the last dimension,
hence channels-last) or when the user passes :func:`channels_last` as
``reshape_transform``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from camlens.errors import InputShapeError

__all__ = ["ReshapeTransform", "channels_last", "default_reshape", "tokens_to_grid"]

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """``[B, T, C]`` transformer tokens → ``[B, C, h, w]``.

    With ``grid=None`` the grid is square: ``T = h·w`` (no class token) or ``T = 1 + h·w``
    (the first token, the class token, is dropped). Give ``grid`` for other layouts; the
    last ``h·w`` tokens are then taken as the patches.
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
                f"{count - 1} is a perfect square); pass `reshape_transform=lambda t: "
                "camlens.reshape.tokens_to_grid(t, grid=(h, w))`."
            )
    height, width = grid
    if height * width > count:
        raise InputShapeError(f"grid {grid} needs {height * width} tokens, got {count}")
    patches = tokens[:, count - height * width :, :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def channels_last(features: torch.Tensor) -> torch.Tensor:
    """``[B, *grid, C]`` (Swin-style, channels last) → ``[B, C, *grid]``."""
    return features.movedim(-1, 1)


def default_reshape(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """The layout camlens assumes for ``module``'s ``output`` when no transform is given."""
    if output.dim() == 3:
        return tokens_to_grid(output)
    if output.dim() in (4, 5) and isinstance(module, nn.LayerNorm):
        return channels_last(output)
    if output.dim() in (4, 5):
        return output
    raise InputShapeError(
        f"the target layer {type(module).__name__} gives an output of shape "
        f"{tuple(output.shape)}, which has no spatial grid; choose an earlier layer, or pass "
        "a `reshape_transform` that returns [B, C, h, w]."
    )
