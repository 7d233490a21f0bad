"""ShapleyCAM: Grad-CAM weights corrected by a Hessian-vector product.

Cai, "CAMs as Shapley Value-based Explainers", 2025 (arXiv:2501.06261), the reference
pytorch-grad-cam 1.5.7 cites for its ``ShapleyCAM``. A second-order Taylor expansion of the
target score ``y`` around the layer's activations ``A`` gives each unit the Shapley value of
the expansion, ``A ⊙ (g − ½ H·A)`` with ``g = ∂y/∂A`` and ``H = ∂²y/∂A²``; as in Grad-CAM,
the channel weight is its mean over the grid, times the activations:

    w_c = mean_grid (g − ½ H·A)_c
    map = Σ_c w_c · A_c                          (before the pipeline's ReLU and min–max)

``H·A`` is a Hessian-vector product, ``∂(g · A)/∂A`` with ``A`` held fixed as the vector:
``torch.autograd.grad(g, A, grad_outputs=A)`` on a ``g`` taken with ``create_graph=True``.
The engine's shared backward pass is first order, so ShapleyCAM is a runner: one forward
pass of the borrowed model with the graph recorded from the first target layer on (nothing
before it, so no parameter is ever differentiated and ``param.grad`` stays untouched), then
per target column ``k`` one backward pass that keeps its graph (``g`` at every target layer)
and one Hessian-vector product per layer. With several target layers, ``g`` and ``H`` are
total derivatives at each, as for the gradient methods. ``eigen_smooth`` reduces the
weighted channels by their first principal component. The forward pass runs with
``scaled_dot_product_attention``'s math kernel (the fused ones have no second derivative), so
transformers work too.

On piecewise-linear networks after the target layer (ReLU, max pooling, linear and affine
layers — a ReLU CNN's head) the Hessian with respect to the activations is zero almost
everywhere, so ``H·A = 0`` and **ShapleyCAM equals Grad-CAM** there. It differs where the
head is curved: smooth activations (GELU, SiLU, softplus), softmax (attention, a softmax
target), products of activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from camlens.capture import ActivationCapture, borrowed
from camlens.errors import LayerNeverRanError
from camlens.methods.perturbation import weighted_maps
from camlens.methods.registry import Method, RunContext, register
from camlens.target_sets import TargetSet

__all__ = ["shapley_weights", "shapleycam"]


def _hessian_vector_product(gradient: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """``H·A`` from a ``gradient`` taken with ``create_graph=True``; zero where the gradient
    does not depend on the activations (a piecewise-linear head)."""
    if not gradient.requires_grad:
        return torch.zeros_like(activation)
    (product,) = torch.autograd.grad(
        gradient, activation, grad_outputs=activation.detach(), retain_graph=True, allow_unused=True
    )
    return torch.zeros_like(activation) if product is None else product


def shapley_weights(
    score: torch.Tensor,
    activations: Sequence[torch.Tensor],
    names: Sequence[str],
) -> list[torch.Tensor]:
    """Per layer, ``g − ½ H·A`` in the layer's output layout, for ``score`` (summed over
    the batch: images do not interact). The graph is retained for further targets."""
    gradients = torch.autograd.grad(
        score, list(activations), create_graph=True, retain_graph=True, allow_unused=True
    )
    result = []
    for name, activation, gradient in zip(names, activations, gradients, strict=True):
        if gradient is None:
            raise LayerNeverRanError(
                f"the target scores do not depend on layer {name!r} (it ran, but its output "
                "does not reach the scores); choose a layer on the path to the output."
            )
        product = _hessian_vector_product(gradient, activation)
        result.append((gradient - 0.5 * product).detach())
    return result


def shapleycam(context: RunContext) -> list[torch.Tensor]:
    """ShapleyCAM maps ``(B, K, *grid)``, one per target layer (see the module docstring)."""
    assert context.reshape is not None, "ShapleyCAM needs the engine's reshape"
    model, layers, names = context.model, list(context.layers), list(context.layer_names)
    with borrowed(model) as handles:
        capture = ActivationCapture(model, layers, names, handles, track_gradients=True)
        # fused attention kernels have no second derivative: the math one for this pass
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            output = model(context.inputs)
        activations = capture.activations()
        with torch.enable_grad():
            scores = TargetSet(context.targets).scores(context.score_tensor(output))
            if not scores.requires_grad:
                raise LayerNeverRanError(
                    f"the target scores do not depend on the target layer(s) {names}; choose "
                    "a layer on the path to the output that the targets read."
                )
            columns = [
                shapley_weights(scores[:, k].sum(), activations, names)
                for k in range(scores.shape[1])
            ]
    maps = []
    for index, (layer, activation) in enumerate(zip(layers, activations, strict=True)):
        dtype = torch.float64 if activation.dtype == torch.float64 else torch.float32
        grid = context.reshape(layer, activation.detach()).to(dtype)
        dims = tuple(range(2, grid.dim()))
        weights = torch.stack(
            [context.reshape(layer, column[index]).to(dtype).mean(dim=dims) for column in columns],
            dim=1,
        )  # (B, K, C)
        maps.append(weighted_maps(weights, grid, context.eigen_smooth))
    return maps


register(
    Method(
        name="shapleycam",
        runner=shapleycam,
        needs_gradients=True,
        label="ShapleyCAM",
        class_name="ShapleyCAM",
        reference="Cai, arXiv:2501.06261, 2025",
    )
)
