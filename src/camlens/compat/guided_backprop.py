"""``pytorch_grad_cam.guided_backprop`` → camlens: :class:`GuidedBackpropReLUModel`
(:mod:`camlens.familiar_more`; guides the model's ``nn.ReLU`` modules through temporary hooks,
never swapping them) and upstream's two building blocks, for scripts that build their own
guided model: the autograd function :class:`GuidedBackpropReLU` and the module
:class:`GuidedBackpropReLUasModule`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camlens.familiar_more import GuidedBackpropReLUModel

__all__ = ["GuidedBackpropReLU", "GuidedBackpropReLUModel", "GuidedBackpropReLUasModule"]


class GuidedBackpropReLU(torch.autograd.Function):
    """ReLU forward; backward passes a gradient only where both the input and the incoming
    gradient are positive (Springenberg et al., ICLR Workshops 2015)."""

    @staticmethod
    def forward(ctx: Any, input_img: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(input_img)
        return input_img.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (input_img,) = ctx.saved_tensors
        return grad_output * (input_img > 0) * (grad_output > 0)


class GuidedBackpropReLUasModule(nn.Module):
    """:class:`GuidedBackpropReLU` as a module (what upstream swaps in for ``nn.ReLU``)."""

    def forward(self, input_img: torch.Tensor) -> torch.Tensor:
        return GuidedBackpropReLU.apply(input_img)
