"""Guided backpropagation: an input-space attribution, every image of the batch at once.

Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All
Convolutional Net", ICLR Workshops 2015, §3.4. The gradient of the target score with
respect to the input, except that at every ReLU the backward pass lets through only the
*positive* gradient at the cells where the ReLU's input was positive:

    plain ReLU:   ∂y/∂x = g · [x > 0]
    guided ReLU:  ∂y/∂x = g · [x > 0] · [g > 0]          (g: the gradient of the output)

so that only evidence that *increases* the target flows back to the pixels. Guided Grad-CAM
(Selvaraju et al., ICCV 2017, §3.1) multiplies this image-sized gradient by the class map
upsampled to the input (:func:`camlens.guided_gradcam`).

**Not a CAM method.** The result is ``(B, C, *spatial)``, one signed value per input channel
and pixel, not a map per target layer: it does not go through the registry, the shared
ReLU / min–max / upsampling or ``camlens methods``.

**How the ReLUs are guided without changing the model.** While the borrowed model runs,
a temporary forward hook on every ``nn.ReLU`` module (subclasses included, ``inplace=True``
too) registers a gradient hook on that call's output tensor which clamps the incoming
gradient at zero; the ReLU's own backward then applies ``[x > 0]``. Modules are never
swapped, the hooks are removed on every exit path (:func:`camlens.capture.borrowed`), the
gradient is taken with ``torch.autograd.grad`` with respect to a copy of the input (so
``param.grad`` and the caller's tensor are untouched), and images do not interact (eval
mode), so a batch gives the images' results one by one.

**Limitation.** A ReLU applied as a function inside ``forward()`` (``F.relu(x)``,
``torch.relu(x)``, ``x.relu()``, as in torchvision's DenseNet and Inception) cannot be
hooked: its backward stays the plain one. camlens does not patch ``torch.nn.functional``
(a global change other threads would see). :attr:`GuidedGradient.guided_relus` counts the
guided ReLU calls; the front ends warn when it is zero (the plain input gradient).

The front ends are :func:`camlens.guided_backprop`, :func:`camlens.guided_gradcam` and
:class:`camlens.GuidedBackpropReLUModel` (in :mod:`camlens.familiar_more`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from camlens.capture import borrowed
from camlens.outputs import as_score_tensor
from camlens.target_sets import TargetSet, resolve_targets

__all__ = ["GuidedGradient", "guided_gradient"]


class GuidedGradient:
    """The input gradients of guided backpropagation and the targets they explain.

    Attributes:
        gradients: ``(B, C, *spatial)`` guided gradients of each image's target score.
        targets: the target callable of each image (resolved from class indices or ``None``).
        scores: ``(B,)`` the targets' scores.
        guided_relus: how many ``nn.ReLU`` calls were guided during the forward pass.
    """

    def __init__(
        self, gradients: torch.Tensor, targets: list[Any], scores: torch.Tensor, guided_relus: int
    ) -> None:
        self.gradients = gradients
        self.targets = targets
        self.scores = scores
        self.guided_relus = guided_relus


def _positive_part(gradient: torch.Tensor) -> torch.Tensor:
    return gradient.clamp_min(0)


def guided_gradient(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    score_tensor: Callable[[Any], torch.Tensor] = as_score_tensor,
) -> GuidedGradient:
    """Guided backpropagation of one target per image, with the resolved targets.

    Args:
        model: borrowed for the call and handed back unchanged.
        inputs: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` on the model's device (see
            :func:`camlens.steps.prepare_input`).
        targets: one target per image, one for all, class indices, or ``None`` for the
            predicted class (the dominant predicted class over its mask for segmenters).
        score_tensor: the model output → a score tensor (the output adapter).
    """
    calls = 0

    def guide(_module: nn.Module, _args: object, output: object) -> None:
        nonlocal calls
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(_positive_part)
            calls += 1

    with borrowed(model) as handles, torch.enable_grad():
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_hook(guide))
        leaf = inputs.detach().clone().requires_grad_(True)
        outputs = score_tensor(model(leaf))
        resolved = resolve_targets(targets, outputs)
        scores = TargetSet([[target] for target in resolved]).scores(outputs)[:, 0]
        (gradients,) = torch.autograd.grad(scores.sum(), leaf, allow_unused=True)
    if gradients is None:  # the scores do not depend on the input
        gradients = torch.zeros_like(leaf)
    return GuidedGradient(gradients.detach(), resolved, scores.detach(), calls)
