"""The token layout of a vision transformer: how many prefix tokens, and the patch grid.

A ViT block outputs ``[B, T, C]`` tokens: ``P`` prefix tokens (a class token, register
tokens, a distillation token) followed by ``h·w`` patch tokens in row-major order. ``T``
alone does not say where the patches start, nor the grid's shape: a pathology model with a
class token and 4 registers on a 224×336 input gives ``T = 1 + 4 + 16·24``. So the layout is
read from the model, once per call, and combined with the input's spatial size ``(H, W)``:

* **timm** (``VisionTransformer``, ``Eva``, DeiT, …): ``num_prefix_tokens`` (else
  ``cls_token`` + ``num_reg_tokens`` / ``reg_token`` + ``dist_token``); the patch size from
  ``patch_embed.patch_size``; the grid is ``patch_embed.grid_size`` for fixed-size models and
  ``(H // p, W // p)`` when ``dynamic_img_size`` (on the model or on ``patch_embed``) is true
  or ``patch_embed.strict_img_size`` is false (rounded up with ``patch_embed.dynamic_img_pad``).
* **Hugging Face** (ViT, DeiT, DINOv2, DINOv2-with-registers): ``config.patch_size``; one
  class token, plus ``config.num_register_tokens``, plus one for a ``distillation_token``
  (DeiT); the grid is ``(H // p, W // p)`` (the embeddings are computed on the actual input;
  ``config.image_size`` is only the size the position embeddings were trained for).
* **torchvision** (``VisionTransformer``): ``patch_size`` (an int) and ``class_token``: one
  prefix token, grid ``(H // p, W // p)``.

The model itself is read first, then its submodules in order, so a ViT encoder inside a
segmenter or a wrapper declares the layout too. A layout that a layer's token count does not
fit is ignored for that layer (e.g. the later stages of a hierarchical model), and the square
guess of :func:`camlens.reshape.tokens_to_grid` applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from camlens.errors import InputShapeError

__all__ = ["TokenLayout", "declared_layout", "token_layout"]


@dataclass(frozen=True)
class TokenLayout:
    """Patch tokens form the ``grid`` ``(h, w)`` after ``prefix_tokens`` leading tokens.

    ``prefix_tokens=None`` (a ``grid=`` given by the user for a model that declares nothing)
    means: whatever precedes the last ``h·w`` tokens. ``source`` says where the layout was
    read, for error messages.
    """

    grid: tuple[int, int]
    prefix_tokens: int | None = None
    source: str = "grid="
    #: a hierarchical transformer (Swin): no prefix tokens, and each stage halves the grid,
    #: so a layer's token count tells its stage (:meth:`grid_for`)
    hierarchical: bool = False

    @property
    def patches(self) -> int:
        """``h·w``, the number of patch tokens."""
        return self.grid[0] * self.grid[1]

    def grid_for(self, count: int) -> tuple[int, int] | None:
        """The grid of a layer with ``count`` tokens: the patch grid, or for a hierarchical
        layout the grid of the stage whose ``⌈h/2ˢ⌉·⌈w/2ˢ⌉`` is ``count``."""
        if not self.hierarchical:
            return self.grid if self.fits(count) else None
        height, width = self.grid
        for stage in range(8):
            grid = (-(-height // 2**stage), -(-width // 2**stage))
            if grid[0] * grid[1] == count:
                return grid
        return None

    def fits(self, count: int) -> bool:
        """Whether ``count`` tokens follow this layout: ``prefix + h·w`` tokens, or only the
        ``h·w`` patches (a layer before the prefix tokens are added or after they are dropped)."""
        if self.hierarchical:
            return self.grid_for(count) is not None
        if self.prefix_tokens is None:
            return count >= self.patches
        return count in (self.prefix_tokens + self.patches, self.patches)

    def describe(self) -> str:
        """E.g. ``"5 prefix tokens + a 16×24 patch grid (timm attributes)"``."""
        prefix = "" if self.prefix_tokens is None else f"{self.prefix_tokens} prefix tokens + "
        return f"{prefix}a {self.grid[0]}×{self.grid[1]} patch grid ({self.source})"


def _pair(value: object) -> tuple[int, int] | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    positive = isinstance(value, Sequence) and len(value) == 2
    if positive and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _divide(size: tuple[int, int], patch: tuple[int, int], ceil: bool = False) -> tuple[int, int]:
    if ceil:
        return (-(-size[0] // patch[0]), -(-size[1] // patch[1]))
    return (size[0] // patch[0], size[1] // patch[1])


def _tokens_of(module: nn.Module, name: str) -> int:
    """1 for a ``[1, 1, C]`` token parameter, ``n`` for ``[1, n, C]``, 0 when absent."""
    token = getattr(module, name, None)
    if token is None:
        return 0
    shape = getattr(token, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) == 3 else 1


def _timm(module: nn.Module, size: tuple[int, int]) -> TokenLayout | None:
    embed = getattr(module, "patch_embed", None)
    patch = _pair(getattr(embed, "patch_size", None))
    prefix = getattr(module, "num_prefix_tokens", None)
    if patch is None or not (isinstance(prefix, int) or hasattr(module, "cls_token")):
        return None
    if not isinstance(prefix, int):
        registers = getattr(module, "num_reg_tokens", None)
        if not isinstance(registers, int):
            registers = _tokens_of(module, "reg_token")
        prefix = _tokens_of(module, "cls_token") + registers + _tokens_of(module, "dist_token")
    dynamic = bool(getattr(module, "dynamic_img_size", False)) or bool(
        getattr(embed, "dynamic_img_size", False)
    )
    fixed = _pair(getattr(embed, "grid_size", None))
    if dynamic or fixed is None or not getattr(embed, "strict_img_size", True):
        grid = _divide(size, patch, ceil=bool(getattr(embed, "dynamic_img_pad", False)))
    else:
        grid = fixed
    return TokenLayout(grid, prefix, "timm attributes")


#: Hugging Face model types of hierarchical (Swin-like) vision transformers.
_HIERARCHICAL = frozenset({"swin", "swinv2", "donut-swin", "maskformer-swin"})


def _huggingface(module: nn.Module, size: tuple[int, int]) -> TokenLayout | None:
    config = getattr(module, "config", None)
    patch = _pair(getattr(config, "patch_size", None))
    if patch is None:
        return None
    if getattr(config, "model_type", None) in _HIERARCHICAL:
        # no class token; stage s has the patch grid halved s times (patch merging pads odd
        # sides, hence the rounding up)
        grid = _divide(size, patch, ceil=True)
        return TokenLayout(grid, 0, "Hugging Face Swin config", hierarchical=True)
    registers = getattr(config, "num_register_tokens", 0)
    prefix = 1 + (registers if isinstance(registers, int) else 0)
    if any(hasattr(m, "distillation_token") for m in module.modules()):
        prefix += 1
    return TokenLayout(_divide(size, patch), prefix, "Hugging Face config")


def _torchvision(module: nn.Module, size: tuple[int, int]) -> TokenLayout | None:
    patch = getattr(module, "patch_size", None)
    if not isinstance(patch, int) or not hasattr(module, "class_token"):
        return None
    return TokenLayout(_divide(size, (patch, patch)), 1, "torchvision attributes")


def declared_layout(model: nn.Module, input_size: Sequence[int]) -> TokenLayout | None:
    """The layout the model (or its first submodule that declares one) gives an input of
    spatial size ``(H, W)``; ``None`` when nothing declares one or the input is not 2D."""
    if len(input_size) != 2:
        return None
    size = (int(input_size[0]), int(input_size[1]))
    for _name, module in model.named_modules():
        for reader in (_timm, _huggingface, _torchvision):
            layout = reader(module, size)
            if layout is not None and layout.patches > 0:
                return layout
    return None


def token_layout(
    model: nn.Module, input_size: Sequence[int], grid: Sequence[int] | None = None
) -> TokenLayout | None:
    """The token layout for ``model`` on inputs of spatial size ``input_size``.

    ``grid=(h, w)`` (the user's) overrides the declared grid; the declared prefix count is
    kept, or, when the model declares nothing, the last ``h·w`` tokens are the patches.
    """
    declared = declared_layout(model, input_size)
    if grid is None:
        return declared
    pair = _pair(tuple(grid)) if isinstance(grid, Sequence) else None
    if pair is None:
        raise InputShapeError(f"`grid` must be two positive ints (h, w), got {grid!r}")
    prefix = declared.prefix_tokens if declared is not None else None
    return TokenLayout(pair, prefix, "grid=")
