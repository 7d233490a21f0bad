"""FullGrad: input-gradient and bias-gradient saliency over every layer with a bias.

Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization",
NeurIPS 2019. For a network ``f`` with biases ``b`` the *full-gradient decomposition* is

    f(x) = Σ ∇ₓf ⊙ x + Σ_layers Σ ∇_{z_l}f ⊙ b_l         (eq. 2; exact for ReLU networks)

where ``z_l`` is the output of bias layer ``l`` and the bias is broadcast over it. The
FullGrad saliency map (eq. 3) post-processes each term with ``ψ`` — absolute value, per-image
min-max to [0, 1] over all its channels and positions, bilinear upsampling to the input size
(corner-aligned, as in the authors' code) — and sums the input term and every spatial bias
term over channels:

    S(x) = ψ(∇ₓf ⊙ x) + Σ_l Σ_c ψ(∇_{z_l}f ⊙ b_l)_c

Bias layers are convolutions with a bias, batch norms in eval mode (an affine map whose
effective bias is ``β − γ·μ/√(σ²+ε)``), and ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.GroupNorm``
/ instance norms with a bias. Terms without a spatial layout (a classifier head's bias, pooled
features) count in the decomposition but not in the map, as in the paper. Token outputs
``[B, 1+N, C]`` of ViT linear and norm layers are placed on the patch grid (a class token is
dropped) and channels-last ``[B, h, w, C]`` outputs are moved channels-first, so FullGrad also
runs on transformers — where, with softmax attention, GELU and layer norms, the decomposition
is no longer exact.

FullGrad uses every bias layer: target layers are accepted (for pytorch-grad-cam's
signature) and ignored. Its map is at the input's resolution, named
``"fullgrad(input+biases)"``. One forward pass with the input recording gradients serves all
``K`` targets (one backward pass each); gradients go to the input and to the recorded layer
outputs only, never to parameters. ``eigen_smooth`` does not apply and is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from camlens.capture import borrowed
from camlens.errors import InputShapeError
from camlens.methods.registry import Method, RunContext, register
from camlens.outputs import as_score_tensor
from camlens.postprocess import min_max
from camlens.reshape import tokens_to_grid
from camlens.target_sets import TargetSet

__all__ = [
    "FULLGRAD_EPSILON",
    "MAP_NAME",
    "BiasTerm",
    "FullGradDecomposition",
    "effective_bias",
    "fullgrad",
    "fullgrad_decomposition",
]

logger = logging.getLogger(__name__)

#: Added to the range in the per-image min-max of each term (the authors' value).
FULLGRAD_EPSILON = 1e-6

#: The name of FullGrad's one map in an Explanation's ``layer_names``.
MAP_NAME = "fullgrad(input+biases)"

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def effective_bias(module: nn.Module) -> tuple[torch.Tensor, int] | None:
    """``(bias, channel axis)`` of a bias layer, or ``None`` for other modules.

    Batch norm (in eval mode, with running statistics) counts as the affine map
    ``γ·(x − μ)/√(σ² + ε) + β`` with bias ``β − γ·μ/√(σ² + ε)``. The channel axis is 1 for
    convolutions and channel norms, −1 for ``nn.Linear`` and ``nn.LayerNorm``.
    """
    with torch.no_grad():
        if isinstance(module, _BatchNorm):
            if module.running_mean is None or module.running_var is None:
                return None  # batch statistics even in eval mode: not an affine layer
            scale = torch.rsqrt(module.running_var + module.eps)
            weight = module.weight if module.weight is not None else 1.0
            bias = module.bias if module.bias is not None else 0.0
            return (bias - module.running_mean * weight * scale).detach(), 1
        bias = getattr(module, "bias", None)
        if not isinstance(bias, torch.Tensor) or bias.dim() != 1:
            return None
        if isinstance(module, _ConvNd | nn.GroupNorm | _InstanceNorm):
            return bias.detach(), 1
        if isinstance(module, nn.Linear | nn.LayerNorm):
            return bias.detach(), -1
    return None


class BiasTerm(NamedTuple):
    """One bias layer's term ``∇_z f ⊙ b``, in the shape of the layer's output ``z``."""

    name: str
    value: torch.Tensor
    channel_axis: int


@dataclass
class FullGradDecomposition:
    """The full-gradient decomposition of one score per image.

    Attributes:
        input_term: ``(B, C, *spatial)``, ``∇ₓf ⊙ x``.
        bias_terms: each bias layer's ``∇_z f ⊙ b`` (one entry per call of the layer).
    """

    input_term: torch.Tensor
    bias_terms: list[BiasTerm]

    def total(self) -> torch.Tensor:
        """``(B,)``: every term summed; equals the score for piecewise-linear networks."""
        total = self.input_term.flatten(1).sum(1)
        for term in self.bias_terms:
            total = total + term.value.reshape(term.value.shape[0], -1).sum(1)
        return total


class _BiasRecorder:
    """Records the output of every bias layer during one forward pass with gradients."""

    def __init__(self, model: nn.Module, handles: list[Any]) -> None:
        self.records: list[tuple[str, torch.Tensor, torch.Tensor, int]] = []
        for name, module in model.named_modules():
            found = effective_bias(module)
            if found is not None:
                handles.append(module.register_forward_hook(self._hook(name, *found)))

    def _hook(self, name: str, bias: torch.Tensor, axis: int) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: object, output: object) -> torch.Tensor | None:
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return None
            if output.dim() < 2 or output.shape[axis] != bias.numel():
                return None
            self.records.append((name, output, bias.to(output.dtype), axis))
            # downstream in-place ops (ReLU(inplace=True)) must not change the recorded output
            return output.clone()

        return hook

    def decompose(
        self, inputs: torch.Tensor, score: torch.Tensor, retain_graph: bool
    ) -> FullGradDecomposition:
        """The decomposition of ``score`` (summed over the batch: images do not interact)."""
        tensors = [inputs] + [output for _, output, _, _ in self.records]
        gradients = torch.autograd.grad(
            score, tensors, retain_graph=retain_graph, allow_unused=True
        )
        input_gradient = gradients[0]
        if input_gradient is None:
            input_gradient = torch.zeros_like(inputs)
        terms = []
        for (name, _output, bias, axis), gradient in zip(self.records, gradients[1:], strict=True):
            if gradient is None:
                continue
            shape = [1] * gradient.dim()
            shape[axis] = -1
            terms.append(BiasTerm(name, gradient * bias.reshape(shape), axis))
        return FullGradDecomposition((inputs * input_gradient).detach(), terms)


@contextmanager
def _recorded_forward(
    model: nn.Module, inputs: torch.Tensor
) -> Iterator[tuple[torch.Tensor, _BiasRecorder, Any]]:
    """Borrow ``model`` and run ``inputs`` with gradients to the input and bias outputs."""
    with borrowed(model) as handles, torch.enable_grad():
        recorder = _BiasRecorder(model, handles)
        leaf = inputs.detach().clone().requires_grad_(True)
        output = model(leaf)
        yield leaf, recorder, output


def fullgrad_decomposition(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> FullGradDecomposition:
    """The full-gradient decomposition of one target per image (``targets``: one callable
    per image of ``inputs``); the model is borrowed and handed back unchanged."""
    if len(targets) != inputs.shape[0]:
        raise InputShapeError(f"got {len(targets)} targets for {inputs.shape[0]} images")
    with _recorded_forward(model, inputs) as (leaf, recorder, output):
        scores = TargetSet([[t] for t in targets]).scores(as_score_tensor(output))
        return recorder.decompose(leaf, scores.sum(), retain_graph=False)


def _as_grid(term: BiasTerm, spatial_dims: int) -> torch.Tensor | None:
    """``(B, C, *grid)`` for a term with a spatial layout, else ``None``."""
    value = term.value
    if term.channel_axis == 1:
        return value if value.dim() == 2 + spatial_dims else None
    extra = value.dim() - 2  # axes between the batch and the (last) channel axis
    if extra == spatial_dims:
        return value.movedim(-1, 1)  # channels-last grid
    if extra == 1 and spatial_dims == 2:
        try:
            return tokens_to_grid(value)
        except InputShapeError:
            return None
    return None


def _normalised(term: torch.Tensor) -> torch.Tensor:
    """ψ without the upsampling: absolute value, then min-max per image over everything."""
    return min_max(term.abs(), FULLGRAD_EPSILON)


def saliency(decomposition: FullGradDecomposition, size: tuple[int, ...]) -> torch.Tensor:
    """``(B, *size)``: the FullGrad map of one decomposition.

    Upsampling is linear and commutes with the sum over channels, so each term is summed
    over channels at its own resolution, terms that share a grid are added, and each grid is
    upsampled once.
    """
    total = _normalised(decomposition.input_term).sum(1)
    grids: dict[tuple[int, ...], torch.Tensor] = {}
    skipped = 0
    for term in decomposition.bias_terms:
        grid = _as_grid(term, len(size))
        if grid is None:
            skipped += 1
            continue
        reduced = _normalised(grid).sum(1)
        key = tuple(reduced.shape[1:])
        grids[key] = grids[key] + reduced if key in grids else reduced
    if skipped:
        logger.debug("FullGrad: %d bias term(s) without a spatial layout left out", skipped)
    for grid_size, summed in grids.items():
        if grid_size != size:
            summed = F.interpolate(
                summed.unsqueeze(1), size=size, mode=_MODES[len(size)], align_corners=True
            )[:, 0]
        total = total + summed
    return total


def fullgrad(context: RunContext) -> list[torch.Tensor]:
    """The FullGrad map ``(B, K, *input_spatial)`` (one map, named :data:`MAP_NAME`)."""
    if context.eigen_smooth:
        logger.info("FullGrad: eigen_smooth does not apply and is ignored")
    size = tuple(context.inputs.shape[2:])
    maps = []
    with _recorded_forward(context.model, context.inputs) as (leaf, recorder, output):
        scores = TargetSet(context.targets).scores(context.score_tensor(output))
        count = scores.shape[1]
        for k in range(count):
            decomposition = recorder.decompose(leaf, scores[:, k].sum(), retain_graph=k < count - 1)
            maps.append(saliency(decomposition, size).detach())
    return [torch.stack(maps, dim=1)]


register(
    Method(
        name="fullgrad",
        runner=fullgrad,
        needs_gradients=True,
        map_names=(MAP_NAME,),
        label="FullGrad",
        class_name="FullGrad",
        reference="Srinivas & Fleuret, NeurIPS 2019",
    )
)
