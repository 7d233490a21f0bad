"""What zeroing one channel of a tensor subtracts after a linear module.

Zeroing channel ``k`` of a layer's output ``A`` subtracts ``D = e_k ⊗ A_k``. For a module
``f`` that is linear — a convolution, an eval-mode batch norm, an average pooling, dropout
in eval mode — ``f(A − D) = f(A) − f₀(D)``, with ``f₀`` the operation without its bias
(a batch norm's ``f₀`` is its per-channel scale ``weight / sqrt(running_var + eps)``).
``f₀(D)`` is cheap because ``D`` has a single non-zero channel: a convolution of it reads
one input channel instead of ``C_in``, computed for many ablated copies at once as one
grouped convolution (a group per copy). :func:`through` maps a :class:`Delta` through one
module, or says it cannot (not linear in its current mode, or the result would cost as
much as the module itself: a dense difference before a convolution).

Used by :mod:`camlens.methods.linear_suffix` (AblationCAM's shortcut).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["CONVOLUTIONS", "LINEAR_TYPES", "Delta", "through"]


@dataclass(frozen=True)
class Delta:
    """What zeroing a channel subtracts from a tensor ``(1, channels, *spatial)``, for ``n``
    ablated copies at once: copy ``j``'s non-zero values are ``values[j]``, in channels
    ``start[j] … start[j] + width − 1``; everywhere else the difference is zero."""

    values: torch.Tensor  # (n, width, *spatial)
    start: torch.Tensor  # (n,) long
    channels: int

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    @property
    def dense(self) -> bool:
        return self.width == self.channels

    def indices(self) -> torch.Tensor:
        """``(n, width)``: the channel of every value row."""
        offsets = torch.arange(self.width, device=self.start.device)
        return self.start[:, None] + offsets

    def full(self) -> torch.Tensor:
        """``(n, channels, *spatial)`` with the zeros filled in."""
        if self.dense:
            return self.values
        n, _, *spatial = self.values.shape
        out = self.values.new_zeros(n, self.channels, *spatial)
        index = self.indices().view(n, self.width, *[1] * len(spatial))
        return out.scatter_(1, index.expand_as(self.values), self.values)


_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FUNCTIONS: dict[int, Callable[..., torch.Tensor]] = {
    1: F.conv1d,
    2: F.conv2d,
    3: F.conv3d,
}
_POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
_PASS_THROUGH = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def through(module: nn.Module, delta: Delta) -> Delta | None:
    """The difference after ``module``, or None where ``module`` is not linear (in its
    current mode) or the difference would cost as much as the module itself."""
    if isinstance(module, _PASS_THROUGH):
        return None if module.training and not isinstance(module, nn.Identity) else delta
    if isinstance(module, _BatchNorm):
        return _batch_norm(module, delta)
    if isinstance(module, _POOLS):
        return Delta(module(delta.values), delta.start, delta.channels)
    if isinstance(module, _CONVOLUTIONS):
        return _convolution(module, delta)
    return None


def _batch_norm(module: _BatchNorm, delta: Delta) -> Delta | None:
    """Eval-mode batch norm scales each channel by ``weight / sqrt(running_var + eps)``."""
    if module.training or module.running_var is None or module.num_features != delta.channels:
        return None  # batch statistics: not linear in one copy
    scale = torch.rsqrt(module.running_var.to(delta.values.dtype) + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.to(delta.values.dtype)
    shape = (*delta.start.shape, delta.width, *[1] * (delta.values.dim() - 2))
    return Delta(delta.values * scale[delta.indices()].view(shape), delta.start, delta.channels)


def _convolution(module: nn.Conv1d | nn.Conv2d | nn.Conv3d, delta: Delta) -> Delta | None:
    """The convolution without bias of each copy's non-zero channels, as one grouped
    convolution (a group per copy); only for a difference inside one group of ``module``."""
    if delta.dense or module.padding_mode != "zeros" or module.in_channels != delta.channels:
        return None
    groups = module.groups
    per_in = module.in_channels // groups
    per_out = module.out_channels // groups
    group = torch.div(delta.start, per_in, rounding_mode="floor")
    last = torch.div(delta.start + delta.width - 1, per_in, rounding_mode="floor")
    if not torch.equal(group, last):
        return None
    n, width, *spatial = delta.values.shape
    kernel = module.weight.shape[2:]
    weights = module.weight.view(groups, per_out, per_in, *kernel)[group]  # (n, out, in, *k)
    local = (delta.start - group * per_in)[:, None] + torch.arange(width, device=group.device)
    index = local.view(n, 1, width, *[1] * len(kernel)).expand(n, per_out, width, *kernel)
    weights = torch.gather(weights, 2, index).reshape(n * per_out, width, *kernel)
    convolve = _CONV_FUNCTIONS[len(kernel)]
    out = convolve(
        delta.values.reshape(1, n * width, *spatial),
        weights.to(delta.values.dtype),
        None,
        module.stride,
        module.padding,
        module.dilation,
        n,
    )
    values = out.view(n, per_out, *out.shape[2:])
    return Delta(values, group * per_out, module.out_channels)


#: The convolutions :func:`through` handles.
CONVOLUTIONS = _CONVOLUTIONS

#: The module types :func:`through` may pass (depending on their mode and the difference).
LINEAR_TYPES = (*_PASS_THROUGH, _BatchNorm, *_POOLS, *_CONVOLUTIONS)
