"""More of pytorch-grad-cam's names: the methods that are not one map per target layer,
and familiar classes added after :mod:`camlens.familiar`.

* :func:`guided_backprop` and :func:`guided_gradcam` — input-space attributions
  ``(B, C, *spatial)`` for every image of the batch (:mod:`camlens.methods.guided`), and
  :class:`GuidedBackpropReLUModel`, pytorch-grad-cam's call over them.
* :class:`DeepFeatureFactorization` — concepts and their heat maps by non-negative matrix
  factorisation of a layer's activations (:mod:`camlens.methods.factorization`).
* :class:`KPCA_CAM`, :class:`SegEigenCAM` — registry methods under pytorch-grad-cam's class
  names (formulas in :mod:`camlens.methods.kpca`, :mod:`camlens.methods.seg_eigen`).
* :class:`FinerCAM` — any method explaining a class against its most similar classes
  (:func:`finer_targets` picks them; the target is
  :class:`~camlens.targets.FinerWeightedTarget`).

As everywhere in camlens, the model is borrowed: hooks exist only during a call, train/eval
flags are restored and ``param.grad`` is never touched; modules are never swapped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.api import explain
from camlens.capture import borrowed
from camlens.errors import TargetError
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.familiar import BaseCAM, GradCAM, _caller_level
from camlens.layers import LayerSpec, layer_name, resolve_layers
from camlens.methods.factorization import factorize_activations
from camlens.methods.guided import GuidedGradient, guided_gradient
from camlens.outputs import as_score_tensor
from camlens.postprocess import min_max, upsample
from camlens.reshape import ReshapeTransform
from camlens.steps import forward_capture, model_device, model_dtype, prepare_input, to_grid
from camlens.targets import FinerWeightedTarget
from camlens.tokens import token_layout
from camlens.wrappers import FamiliarWrapper, base_explainer

__all__ = [
    "KPCA_CAM",
    "DeepFeatureFactorization",
    "FinerCAM",
    "GuidedBackpropReLUModel",
    "SegEigenCAM",
    "finer_targets",
    "guided_backprop",
    "guided_gradcam",
]


def _guided(model: nn.Module, inputs: torch.Tensor, targets: Any) -> GuidedGradient:
    """Guided backpropagation with a warning (at the caller's line) when nothing was guided."""
    result = guided_gradient(model, prepare_input(inputs, model), targets)
    if result.guided_relus == 0:
        warnings.warn(
            f"guided backpropagation found no nn.ReLU module running in {type(model).__name__}; "
            "ReLUs applied as functions (F.relu) cannot be guided, so this is the plain input "
            "gradient.",
            UserWarning,
            stacklevel=_caller_level(),
        )
    return result


def guided_backprop(
    model: nn.Module, inputs: torch.Tensor, targets: Sequence[Any] | Any | None = None
) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al., ICLR Workshops 2015) of every image.

    Args:
        model: borrowed for the call and handed back unchanged; its ``nn.ReLU`` modules are
            guided through temporary hooks (``F.relu`` calls inside ``forward`` cannot be:
            see :mod:`camlens.methods.guided`).
        inputs: ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes.
        targets: one target per image, one for all, class indices, or ``None`` (prediction).

    Returns:
        ``(B, C, *spatial)`` signed, unnormalised guided gradients on the model's device.

    Example:
        >>> gradients = camlens.guided_backprop(model, x, targets=[281, 3])
    """
    return _guided(model, inputs, targets).gradients


def guided_gradcam(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: LayerSpec | Sequence[LayerSpec] = "auto",
    targets: Sequence[Any] | Any | None = None,
    *,
    method: str = "gradcam",
    options: Mapping[str, Any] | None = None,
    reshape_transform: ReshapeTransform | None = None,
) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017, §3.1): guided backpropagation × the
    final class map, for every image of the batch.

    The map is ``method``'s final map (ReLU, min–max, upsampled to the input: what
    ``camlens.explain(...).maps`` returns; Grad-CAM by default, any registry method works)
    and multiplies every input channel: ``guided_backprop(x)[b, c] · map[b]``. Both explain
    the same targets (``None`` is resolved once, by the CAM's forward pass).

    Returns:
        ``(B, C, *spatial)`` on the model's device, signed (pytorch-grad-cam's
        ``deprocess_image`` turns one image into a picture).
    """
    explanation = explain(
        model,
        inputs,
        method,
        layers,
        targets,
        options=options,
        reshape_transform=reshape_transform,
    )
    gradients = _guided(model, inputs, explanation.targets).gradients
    return gradients * explanation.maps.unsqueeze(1).to(gradients.dtype)


class GuidedBackpropReLUModel:
    """pytorch-grad-cam's guided backpropagation call: ``(input_img, target_category=None)``.

    Unlike upstream, the model is not put in eval mode for good, moved, or changed (no module
    is swapped), ``param.grad`` and the input tensor are untouched, and *every* image of the
    batch is explained (upstream returns the first image's only).

    Args:
        model: the PyTorch model.
        device: accepted for compatibility; inputs go to the model's device (a different
            ``device`` is ignored with a warning, the model is never moved).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None) -> None:
        self.model = model
        here = model_device(model)
        if device is not None and here is not None and torch.device(device) != here:
            warnings.warn(
                f"`device={device!s}` is ignored: camlens runs on the model's device ({here}) "
                "and never moves it; move the model with model.to(device).",
                UserWarning,
                stacklevel=2,
            )
        self.device = here

    def __call__(
        self, input_img: torch.Tensor, target_category: int | Sequence[int] | None = None
    ) -> np.ndarray:
        """Guided gradients channels-last as float32 numpy: ``(H, W, C)`` for one image
        (upstream's shape), ``(B, H, W, C)`` for a batch (``(…, D, H, W, C)`` for volumes).
        ``target_category``: a class index for every image, one per image, or ``None`` for
        each image's top class."""
        gradients = _guided(self.model, input_img, target_category).gradients
        result = gradients.movedim(1, -1).detach().cpu().float().numpy()
        return result[0] if result.shape[0] == 1 else result


class DeepFeatureFactorization:
    """Deep Feature Factorization (Collins et al., ECCV 2018) under pytorch-grad-cam's call:
    ``DeepFeatureFactorization(model, target_layer, reshape_transform=None,
    computation_on_concepts=None)(input_tensor, n_components=16)``.

    Returns ``(concepts, batch_explanations, concept_outputs)`` — or
    ``(concepts, batch_explanations)`` without ``computation_on_concepts`` — as float32
    numpy: ``concepts`` ``(C, k)``, ``batch_explanations`` ``(B, k, H, W)`` (each concept's
    map min–max scaled and resized to the input, as upstream; ``batch_explanations[0]`` is
    what :func:`camlens.image.show_factorization_on_image` draws), ``concept_outputs``
    ``(k, …)``, ``computation_on_concepts`` (e.g. the model's classifier) applied to the
    ``k`` concepts ``(k, C)`` on the model's device.

    Args:
        model: borrowed for the call and handed back unchanged.
        target_layer: a module, a dotted name or ``"auto"``.
        reshape_transform: a token or channels-last layer output → ``(B, C, *grid)``
            (by default read from the model, as for every method).
        computation_on_concepts: a callable (borrowed, in eval mode, if it is a module).
        iterations, tolerance, seed: of the NMF (:func:`camlens.methods.factorization.nmf`).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        reshape_transform: ReshapeTransform | None = None,
        computation_on_concepts: Callable[[torch.Tensor], Any] | None = None,
        *,
        iterations: int = 500,
        tolerance: float = 1e-5,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.target_layer = target_layer
        self.reshape_transform = reshape_transform
        self.computation_on_concepts = computation_on_concepts
        self.iterations, self.tolerance, self.seed = iterations, tolerance, seed

    def __enter__(self) -> DeepFeatureFactorization:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: hooks exist only during a call."""
        return None

    def __call__(self, input_tensor: torch.Tensor, n_components: int = 16) -> tuple[Any, ...]:
        """Factorise the target layer's activations of the batch (see the class docstring)."""
        inputs = prepare_input(input_tensor, self.model)
        size = tuple(inputs.shape[2:])
        (layer,) = resolve_layers(self.model, self.target_layer, probe_input=inputs[:1])
        name = layer_name(self.model, layer)
        _, (activation,) = forward_capture(
            self.model, [layer], inputs, [name], track_gradients=False
        )
        layout = None if self.reshape_transform else token_layout(self.model, size, None)
        grid = to_grid(layer, activation, self.reshape_transform, layout)
        found = factorize_activations(
            grid, n_components, iterations=self.iterations, tolerance=self.tolerance, seed=self.seed
        )
        maps = upsample(min_max(found.maps.flatten(0, 1).float()), size)
        explanations = maps.reshape(*found.maps.shape[:2], *size).cpu().numpy()
        concepts = found.concepts.float().cpu().numpy()
        if self.computation_on_concepts is None:
            return concepts, explanations
        rows = found.concepts.T.to(inputs.device, model_dtype(self.model))
        computation = self.computation_on_concepts
        with torch.no_grad():
            if isinstance(computation, nn.Module):
                with borrowed(computation):
                    outputs = computation(rows)
            else:
                outputs = computation(rows)
        return concepts, explanations, outputs.detach().float().cpu().numpy()


def _options(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


class KPCA_CAM(BaseCAM):
    """KPCA-CAM (Karmani et al., 2024): each position's score on the first kernel principal
    component of the activations; gradient-free and class-agnostic. ``kernel`` is one of
    ``"sigmoid"`` (default, as upstream), ``"rbf"``, ``"linear"``; ``gamma=None`` is
    ``1 / channels``. See :mod:`camlens.methods.kpca` (cost, ``max_locations``, sign)."""

    method_name = "kpcacam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        *,
        use_cuda: bool | None = None,
        max_locations: int | None = None,
    ) -> None:
        options = _options(kernel=kernel, max_locations=max_locations)
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            use_cuda,
            method_options={**options, "gamma": gamma},
        )


class SegEigenCAM(BaseCAM):
    """Seg-Eigen-CAM (Chung & Ying, 2025): first principal component of ``|G| ⊙ A``, its
    sign oriented to agree with ``Σ_c |G_c| A_c`` (upstream flips when ``|min| > |max|``).
    See :mod:`camlens.methods.seg_eigen`."""

    method_name = "segeigencam"


#: Finer-CAM's default comparison ranks: the three classes closest to the main class.
FINER_COMPARISONS = (1, 2, 3)


def finer_targets(
    outputs: torch.Tensor,
    *,
    alpha: float = 1.0,
    comparison_categories: Sequence[int] | None = None,
    target_idx: int | None = None,
) -> list[FinerWeightedTarget]:
    """Finer-CAM's target for every image of a classifier's ``(B, K)`` scores.

    Zhang et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
    Explanation", CVPR 2025: the main class ``c`` is ``target_idx`` (``None``: each image's
    top class); the other classes are ranked by how close their logit is to ``c``'s,
    ``|y_j − y_c|`` ascending (rank 0 is ``c`` itself, ties keep the lower index first), and
    ``comparison_categories`` are *ranks* in that order (default 1, 2, 3: the three most
    similar classes; ranks beyond ``K − 1`` are dropped, as in pytorch-grad-cam 1.5.7).
    Each image's target is ``FinerWeightedTarget(c, classes at those ranks, alpha)``.
    """
    if outputs.dim() != 2:
        raise TargetError(
            f"Finer-CAM picks similar classes from a classifier's (B, K) scores, got "
            f"{tuple(outputs.shape)}; pass `targets=` (e.g. FinerWeightedTarget) for other "
            "outputs."
        )
    scores = outputs.detach()
    classes = scores.shape[1]
    ranks = FINER_COMPARISONS if comparison_categories is None else comparison_categories
    ranks = [int(rank) for rank in ranks if int(rank) < classes]
    if not ranks:
        raise TargetError(
            f"no comparison class left: a model with {classes} class(es) has ranks 0.."
            f"{classes - 1} and `comparison_categories` asked for "
            f"{list(comparison_categories or FINER_COMPARISONS)}."
        )
    if target_idx is None:
        main = scores.argmax(dim=1)
    else:
        if not -classes <= target_idx < classes:
            raise TargetError(f"`target_idx` {target_idx} is out of range for {classes} classes")
        main = torch.full((scores.shape[0],), target_idx % classes, device=scores.device)
    distance = (scores - scores.gather(1, main[:, None])).abs()
    distance.scatter_(1, main[:, None], -1.0)  # the main class is rank 0, whatever the ties
    order = torch.argsort(distance, dim=1, stable=True).tolist()
    return [FinerWeightedTarget(row[0], [row[rank] for rank in ranks], alpha) for row in order]


class FinerCAM(FamiliarWrapper):
    """Finer-CAM (Zhang et al., CVPR 2025) under pytorch-grad-cam 1.5.7's call:
    ``FinerCAM(model, target_layers, reshape_transform=None, base_method=GradCAM)(
    input_tensor, targets=None, eigen_smooth=False, alpha=1, comparison_categories=None,
    target_idx=None)``.

    Explains what sets a class apart from the classes the model finds most similar: with
    ``targets=None`` each image's target is :func:`finer_targets`' weighted logit difference
    (``alpha=0``: the plain logit; ``alpha=1``: against the similar classes), explained by
    ``base_method``; given ``targets`` are used as they are. ``base_method`` is a familiar
    class (``camlens.GradCAM``, ``camlens.HiResCAM``, ...) or a registry name; the base
    method's own pipeline runs unchanged (one engine call per batch after one forward pass
    that reads the scores the similar classes are ranked by).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        base_method: type[Explainer] | str = GradCAM,
    ) -> None:
        self.base_cam = base_explainer(model, target_layers, reshape_transform, base_method)
        self.model = model

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        eigen_smooth: bool = False,
        alpha: float = 1.0,
        comparison_categories: Sequence[int] | None = None,
        target_idx: int | None = None,
    ) -> Explanation:
        """The base method's :class:`~camlens.explanation.Explanation` of the Finer targets
        (``explanation.targets`` shows the classes each image was compared with)."""
        inputs = prepare_input(input_tensor, self.model)
        if targets is None:
            output, _ = forward_capture(self.model, [], inputs, [], track_gradients=False)
            targets = finer_targets(
                as_score_tensor(output),
                alpha=alpha,
                comparison_categories=comparison_categories,
                target_idx=target_idx,
            )
        return self.base_cam.explain(inputs, targets, eigen_smooth=eigen_smooth)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        eigen_smooth: bool = False,
        alpha: float = 1.0,
        comparison_categories: Sequence[int] | None = None,
        target_idx: int | None = None,
    ) -> np.ndarray:
        """Final maps ``(B, *input_spatial)`` as float32 numpy in [0, 1]."""
        return self.explain(
            input_tensor,
            targets,
            eigen_smooth=eigen_smooth,
            alpha=alpha,
            comparison_categories=comparison_categories,
            target_idx=target_idx,
        ).numpy()
