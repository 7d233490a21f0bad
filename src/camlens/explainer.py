"""One method, one target per image: the explainer behind the familiar classes and
:func:`camlens.explain`.

An :class:`Explainer` holds a model, its target layers and a method with checked options;
:meth:`Explainer.explain` runs the engine's one pipeline (:func:`camlens.engine.explain_batch`)
with ``K = 1`` and returns an :class:`~camlens.explanation.Explanation` whose signed raw maps
stay on the model's device. ``aug_smooth`` averages the explanations of flipped and
brightened copies; nothing else happens here that the engine does not do for every front end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.engine import BatchResult, MethodCall, explain_batch, plan_methods, prepare_input
from camlens.explanation import Explanation
from camlens.layers import LayerSpec, layer_name, resolve_layers
from camlens.methods import Method
from camlens.reshape import ReshapeTransform
from camlens.target_sets import TargetSet, resolve_targets

__all__ = ["AUGMENTATIONS", "Explainer"]

logger = logging.getLogger(__name__)

#: Test-time augmentations of ``aug_smooth``: (horizontal flip, brightness factor).
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)
)


def _is_auto(layers: LayerSpec | Sequence[LayerSpec]) -> bool:
    if isinstance(layers, str):
        return layers == "auto"
    if isinstance(layers, nn.Module):
        return False
    return any(isinstance(layer, str) and layer == "auto" for layer in layers)


class Explainer:
    """Explain a model's predictions with one method at one or more layers.

    Args:
        model: the PyTorch model; borrowed for each call and handed back unchanged
            (hooks removed, train/eval flags restored, parameters untouched). Its outputs may
            be tensors, ``{"out": ...}`` dicts, tuples or objects with ``.logits``.
        layers: modules of ``model``, dotted names (``"encoder.layer4"``, ``"layer4[-1]"``)
            or ``"auto"``. Several layers give one map each, averaged in the final maps.
        method: a registry name (``"hirescam"``; see ``camlens methods``).
        reshape_transform: turns a layer output into ``[B, C, *grid]``; by default tokens
            ``[B, 1+N, C]`` become a square grid and ``nn.LayerNorm`` outputs ``[B, h, w, C]``
            are taken as channels-last (see :mod:`camlens.reshape`); token outputs follow
            the model's declared token layout (class and register tokens dropped, see
            :mod:`camlens.tokens`).
        grid: the patch grid ``(h, w)`` of token layers, for a ViT whose layout cannot be
            read from its attributes (the tokens before the last ``h·w`` are dropped).
        options: the method's options (``{"pool_size": 4}``), checked now against the
            method's declarations (``camlens methods`` lists them).

    Example:
        >>> explainer = Explainer(model, "layer4", "hirescam")
        >>> explanation = explainer.explain(x, targets=[3])
        >>> explanation.layer_maps[0]  # (B, h, w) signed, unnormalised
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec] = "auto",
        method: str | Method = "gradcam",
        *,
        reshape_transform: ReshapeTransform | None = None,
        grid: tuple[int, int] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._call: MethodCall = plan_methods([method], options)[0]
        self.reshape_transform = reshape_transform
        self.grid = grid
        self._layer_specs = layers
        self._layers: list[nn.Module] | None
        if not self.method.uses_target_layers:
            self._layers = []
            if not _is_auto(layers) and not (isinstance(layers, Sequence) and not layers):
                logger.info("%s uses no target layers; `layers` is ignored", self.method.label)
        else:
            self._layers = None if _is_auto(layers) else resolve_layers(model, layers)
        self.outputs: torch.Tensor | None = None

    @property
    def method(self) -> Method:
        """The registered method this explainer runs."""
        return self._call.method

    @property
    def options(self) -> dict[str, Any]:
        """The method's options, defaults filled in (a copy; see :meth:`set_options`)."""
        return dict(self._call.options)

    def set_options(self, **options: Any) -> None:
        """Change some of the method's options; they are checked as at construction."""
        merged = {**self._call.options, **options}
        self._call = plan_methods([self.method], merged)[0]

    @property
    def layers(self) -> list[nn.Module]:
        """The resolved target layers (empty until an ``"auto"`` layer has been probed)."""
        return list(self._layers or [])

    def explain(
        self,
        inputs: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """Explain a batch; see :class:`~camlens.explanation.Explanation` for the fields.

        Args:
            inputs: ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes, moved to the
                model's device if needed.
            targets: one target per image, a single target for all, class indices, or
                ``None`` for the predicted class (dominant predicted class over its mask for
                segmenters).
            aug_smooth: average over horizontal flips × brightness 0.9/1.0/1.1 (maps are
                flipped back, and dense outputs are flipped back before targets see them).
            eigen_smooth: reduce channels by their first principal component instead of
                the plain sum.
        """
        inputs = prepare_input(inputs, self.model)
        layers = self._resolve(inputs)
        if aug_smooth:
            explanation = self._explain_augmented(inputs, layers, targets, eigen_smooth)
        else:
            explanation = self._explain_once(inputs, layers, targets, eigen_smooth)
        self.outputs = explanation.outputs
        return explanation

    def __call__(
        self,
        inputs: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Final maps ``(B, *input_spatial)`` as float32 numpy in [0, 1]."""
        explanation = self.explain(
            inputs, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
        )
        return explanation.numpy()

    def _resolve(self, inputs: torch.Tensor) -> list[nn.Module]:
        if self._layers is None:
            self._layers = resolve_layers(
                self.model, self._layer_specs, probe_input=inputs[:1], grid=self.grid
            )
        return self._layers

    def _explain_once(
        self,
        inputs: torch.Tensor,
        layers: list[nn.Module],
        targets: Sequence[Any] | Any | None,
        eigen_smooth: bool,
        flipped: bool = False,
    ) -> Explanation:
        names = [layer_name(self.model, layer) for layer in layers]

        def make_targets(outputs: torch.Tensor) -> TargetSet:
            return TargetSet([[target] for target in resolve_targets(targets, outputs)])

        result = explain_batch(
            self.model,
            inputs,
            [self._call],
            layers,
            names,
            make_targets,
            reshape_transform=self.reshape_transform,
            grid=self.grid,
            eigen_smooth=eigen_smooth,
            flipped=flipped,
        )
        return self._single(result)

    def _single(self, result: BatchResult) -> Explanation:
        """The ``K = 1`` view of the engine's result."""
        name = self.method.name
        return Explanation(
            method=name,
            layer_names=result.map_names[name],
            layer_maps=[raw[:, 0] for raw in result.layer_maps[name]],
            maps=result.maps[name][:, 0],
            scores=result.scores[:, 0],
            outputs=result.outputs,
            targets=result.targets.column(0),
            input_size=result.input_size,
        )

    def _explain_augmented(
        self,
        inputs: torch.Tensor,
        layers: list[nn.Module],
        targets: Sequence[Any] | Any | None,
        eigen_smooth: bool,
    ) -> Explanation:
        results = []
        reference: Explanation | None = None
        for flip, factor in AUGMENTATIONS:
            augmented = inputs * factor
            if flip:
                augmented = augmented.flip(-1)
            result = self._explain_once(augmented, layers, targets, eigen_smooth, flipped=flip)
            if flip:
                result.maps = result.maps.flip(-1)
                result.layer_maps = [m.flip(-1) for m in result.layer_maps]
            if not flip and factor == 1.0:
                reference = result
            results.append(result)
        assert reference is not None
        reference.maps = torch.stack([r.maps for r in results]).mean(0)
        reference.layer_maps = [
            torch.stack([r.layer_maps[i] for r in results]).mean(0)
            for i in range(len(reference.layer_maps))
        ]
        reference.extras["aug_smooth"] = list(AUGMENTATIONS)
        return reference
