"""Wrappers that run any method several times and combine its maps: a noise tunnel
(SmoothGrad) and RefineCAM's product over layers. SESS, the scale-and-slide wrapper, is in
:mod:`camlens.sess`.

A wrapper holds no formula of a method: it calls an :class:`~camlens.explainer.Explainer`
(any registry method, any familiar class) through the one pipeline, combines what comes
back, and returns an :class:`~camlens.explanation.Explanation` that reads like any other
(``layer_maps`` signed or as stated, ``maps`` in [0, 1]). The model is borrowed by each call
underneath, so it comes back as it was, exceptions included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.familiar import GradCAMPlusPlus
from camlens.layers import LayerSpec
from camlens.methods.registry import Option
from camlens.methods.smooth import NOISE_LEVEL, NOISE_SEED, input_noise
from camlens.outputs import as_score_tensor
from camlens.postprocess import familiar_maps, min_max
from camlens.reshape import ReshapeTransform
from camlens.steps import forward_capture, prepare_input
from camlens.target_sets import TargetSet, resolve_targets

__all__ = [
    "NOISE_TUNNEL_OPTIONS",
    "FamiliarWrapper",
    "RefineCAM",
    "base_explainer",
    "noise_tunnel",
    "refine_cam",
]

#: The noise tunnel's parameters, declared and checked like a method's options.
NOISE_TUNNEL_OPTIONS = (
    Option(name="samples", kind=int, default=10, minimum=1, help="noisy copies of the input"),
    NOISE_LEVEL,
    Option(
        name="kind",
        kind=str,
        default="mean",
        choices=("mean", "mean_of_squares", "variance"),
        help="how the noisy raw maps are combined (SmoothGrad, SmoothGrad², VarGrad)",
    ),
    NOISE_SEED,
)


def base_explainer(
    model: nn.Module,
    target_layers: LayerSpec | Sequence[LayerSpec],
    reshape_transform: ReshapeTransform | None,
    base_method: type[Explainer] | str,
    **kwargs: Any,
) -> Explainer:
    """The explainer a wrapper runs: ``base_method`` is a familiar class (``camlens.GradCAM``,
    built as ``base_method(model, target_layers, reshape_transform, **kwargs)``, as
    pytorch-grad-cam's wrappers build theirs) or a registry name (``kwargs`` are its
    options)."""
    if isinstance(base_method, str):
        return Explainer(
            model, target_layers, base_method, reshape_transform=reshape_transform, options=kwargs
        )
    if isinstance(base_method, type) and issubclass(base_method, Explainer):
        return base_method(model, target_layers, reshape_transform, **kwargs)  # type: ignore[call-arg]
    raise TypeError(
        "`base_method` must be a camlens familiar class (e.g. camlens.GradCAM) or a registry "
        f"name, got {base_method!r}"
    )


def fixed_targets(
    explainer: Explainer, inputs: torch.Tensor, targets: Sequence[Any] | Any | None
) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
    """The targets a wrapper explains on every copy, chosen once on the unchanged input
    (``None``: its prediction), with their scores ``(B,)`` and the score tensor there."""
    output, _ = forward_capture(explainer.model, [], inputs, [], track_gradients=False)
    outputs = as_score_tensor(output).detach()
    resolved = resolve_targets(targets, outputs)
    with torch.no_grad():
        scores = TargetSet([[target] for target in resolved]).scores(outputs)[:, 0]
    return resolved, scores, outputs


def noise_tunnel(
    explainer: Explainer,
    inputs: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    samples: int = 10,
    noise_level: float = 0.15,
    kind: str = "mean",
    seed: int = 0,
    eigen_smooth: bool = False,
) -> Explanation:
    """Any method's maps averaged over noisy copies of the input (SmoothGrad).

    Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
    noise", 2017 (arXiv:1706.03825), applied to a CAM: with ``m_i`` the method's *raw,
    signed layer maps* ``(B, *grid)`` (one per target layer) for the copy
    ``x + σ·δ_i`` (``i = 1 .. samples``), ``kind`` gives

    * ``"mean"``: ``1/n Σ m_i`` (SmoothGrad),
    * ``"mean_of_squares"``: ``1/n Σ m_i²`` (SmoothGrad², always ≥ 0),
    * ``"variance"``: ``1/n Σ (m_i − mean)²`` (VarGrad, the population variance),

    as the explanation's ``layer_maps``; its ``maps`` are the usual post-processing of those
    (ReLU → min–max → upsample → mean over layers → min–max). The noise is Smooth
    Grad-CAM++'s (:mod:`camlens.methods.smooth`): ``δ_i`` standard normal of the input's
    shape, drawn from a CPU generator seeded ``seed`` and shared by every image, and
    ``σ_b = noise_level · (max x_b − min x_b)``; so results are reproducible and a batch
    equals its images one by one. The targets are fixed on the clean input (``None``: its
    prediction), so every copy explains the same thing; ``scores`` and ``outputs`` are the
    clean input's. ``noise_level = 0`` gives the plain method's maps exactly.

    Args:
        explainer: any :class:`~camlens.explainer.Explainer` (a familiar class too).
        inputs: ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes.
        targets: as for :meth:`Explainer.explain`.
        samples, noise_level, kind, seed: see :data:`NOISE_TUNNEL_OPTIONS`.
        eigen_smooth: passed to every call.

    Example:
        >>> smooth = camlens.noise_tunnel(camlens.Explainer(model, "layer4", "hirescam"), x)
    """
    given = {"samples": samples, "noise_level": noise_level, "kind": kind, "seed": seed}
    for option in NOISE_TUNNEL_OPTIONS:
        option.check(given[option.name], "noise_tunnel")
    inputs = prepare_input(inputs, explainer.model)
    resolved, scores, outputs = fixed_targets(explainer, inputs, targets)
    flat = inputs.flatten(1)
    spread = flat.amax(1) - flat.amin(1)
    sigma = (noise_level * spread).reshape(-1, *(1,) * (inputs.dim() - 1))
    noise = input_noise(samples, tuple(inputs.shape[1:]), seed)
    means: list[torch.Tensor] = []
    squares: list[torch.Tensor] = []  # Welford's running sums of squared deviations
    names: list[str] = []
    for index in range(samples):
        noisy = inputs + sigma * noise[index].to(inputs.device, inputs.dtype)
        explanation = explainer.explain(noisy, resolved, eigen_smooth=eigen_smooth)
        names = explanation.layer_names
        for position, raw in enumerate(explanation.layer_maps):
            if index == 0:
                means.append(raw.clone())
                squares.append(torch.zeros_like(raw))
                continue
            delta = raw - means[position]
            means[position] = means[position] + delta / (index + 1)
            squares[position] = squares[position] + delta * (raw - means[position])
    variances = [total / samples for total in squares]
    if kind == "mean":
        combined = means
    elif kind == "variance":
        combined = variances
    else:
        combined = [v + m.pow(2) for v, m in zip(variances, means, strict=True)]
    size = tuple(inputs.shape[2:])
    return Explanation(
        method=explainer.method.name,
        layer_names=list(names),
        layer_maps=combined,
        maps=familiar_maps(combined, size),
        scores=scores,
        outputs=outputs,
        targets=resolved,
        input_size=size,
        extras={"noise_tunnel": given},
    )


def refine_cam(
    explainer: Explainer,
    inputs: torch.Tensor,
    targets: Sequence[Any] | Any | None = None,
    *,
    eigen_smooth: bool = False,
) -> Explanation:
    """RefineCAM: the product of a method's per-layer final maps, scaled to [0, 1].

    Domeniconi, Stramiglio, Lombardi & Salti, "How to Evaluate and Refine your CAM",
    arXiv:2605.14641, 2026, aggregate CAMs of several layers so that the fine grid of an
    early layer sharpens the class evidence of a deep one. camlens implements the product
    rule (the definition in the issue, and what pytorch-grad-cam 1.5.7's ``RefineCAM``
    computes; the paper's section with the formula could not be retrieved here): with
    ``F_l = familiar_maps([m_l])`` each target layer's map on its own (ReLU → min–max →
    upsampled to the input → min–max, in [0, 1]),

        maps = min–max(Π_l F_l)

    so a pixel stays bright only where every layer agrees. One pipeline call explains all
    of the explainer's layers (one forward pass, one backward pass per target); the
    explanation's ``layer_maps`` are those layers' signed raw maps, its ``maps`` the
    product. With one layer, RefineCAM is the method itself (to the 1e-7 of one more
    min–max).
    """
    explanation = explainer.explain(inputs, targets, eigen_smooth=eigen_smooth)
    size = explanation.input_size
    product = familiar_maps(explanation.layer_maps[:1], size)
    for raw in explanation.layer_maps[1:]:
        product = product * familiar_maps([raw], size)
    explanation.maps = min_max(product)
    explanation.extras["refine_cam"] = "product of per-layer final maps"
    return explanation


class FamiliarWrapper:
    """What the familiar classes made of another method share (``RefineCAM``, ``SESS``,
    ``FinerCAM``): a context manager with nothing to release (hooks exist only during a
    call), and ``cam(input_tensor, targets, eigen_smooth)`` → final maps as numpy, from the
    subclass's ``explain``."""

    def __enter__(self) -> FamiliarWrapper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def explain(
        self, input_tensor: torch.Tensor, targets: Any = None, *, eigen_smooth: bool = False
    ) -> Explanation:
        raise NotImplementedError

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Final maps ``(B, *input_spatial)`` as float32 numpy in [0, 1]."""
        return self.explain(input_tensor, targets, eigen_smooth=eigen_smooth).numpy()


class RefineCAM(FamiliarWrapper):
    """RefineCAM (:func:`refine_cam`) under pytorch-grad-cam 1.5.7's call:
    ``RefineCAM(model, target_layers, reshape_transform=None, base_method=GradCAMPlusPlus,
    **kwargs)(input_tensor, targets=None, eigen_smooth=False)``; ``base_method`` is a
    familiar class or a registry name (``kwargs`` go to it), run once over all the layers.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        base_method: type[Explainer] | str = GradCAMPlusPlus,
        **kwargs: Any,
    ) -> None:
        self.base_cam = base_explainer(
            model, target_layers, reshape_transform, base_method, **kwargs
        )

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """The explanation with the refined ``maps`` (see :func:`refine_cam`)."""
        return refine_cam(self.base_cam, input_tensor, targets, eigen_smooth=eigen_smooth)
