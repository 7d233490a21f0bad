"""The shared engine behind every method: one forward pass, gradients down to the target
layers only, a method's contributions, channel reduction, postprocessing.

:class:`BaseCAM` keeps the call that pytorch-grad-cam users know
(``Method(model=..., target_layers=[...])(input_tensor=..., targets=...)`` returning numpy
maps in [0, 1]) and adds :meth:`BaseCAM.explain`, which returns an :class:`Explanation`
with the signed raw maps on the model's device.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from camlens.defaults import resolve_targets
from camlens.engine import (
    check_finite,
    forward_capture,
    layer_gradients,
    layer_map,
    prepare_input,
    run_method,
)
from camlens.errors import InputShapeError, LayerNotFoundError, TargetError
from camlens.explanation import Explanation
from camlens.layers import LayerSpec, layer_by_name, layer_name, resolve_layers
from camlens.methods import Method, get_method
from camlens.outputs import as_score_tensor, is_dense
from camlens.postprocess import familiar_maps
from camlens.reshape import ReshapeTransform
from camlens.targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

__all__ = ["BaseCAM"]

logger = logging.getLogger(__name__)

#: Test-time augmentations of ``aug_smooth``: (horizontal flip, brightness factor).
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)
)


class BaseCAM:
    """Explain a model's predictions with one CAM method.

    Args:
        model: the PyTorch model; borrowed for each call and handed back unchanged
            (hooks removed, train/eval flags restored, parameters untouched). Its outputs may
            be tensors, ``{"out": ...}`` dicts, tuples or objects with ``.logits``.
        target_layers: modules of ``model``, dotted names (``"encoder.layer4"``,
            ``"layer4[-1]"``) or ``"auto"``. Several layers give one map each, averaged in the
            final maps.
        reshape_transform: turns a layer output into ``[B, C, *grid]``; by default tokens
            ``[B, 1+N, C]`` become a square grid and ``nn.LayerNorm`` outputs ``[B, h, w, C]``
            are taken as channels-last (see :mod:`camlens.reshape`).
        use_cuda: accepted for compatibility and ignored with a warning: inputs follow the
            model's device.
        method: registry name, for the generic class (the named classes set it).
        fc_layer: CAM only: the linear classifier (module or dotted name); found if omitted.
        method_options: parameters of the method (e.g. ``{"pool_size": 2}`` for Seg-XRes-CAM).
    """

    method_name: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        method: str | None = None,
        fc_layer: nn.Module | str | None = None,
        method_options: Mapping[str, Any] | None = None,
    ) -> None:
        if use_cuda is not None:
            warnings.warn(
                "`use_cuda` is deprecated and ignored: camlens runs on the model's device "
                "(move the model with model.to(device)).",
                FutureWarning,
                stacklevel=2,
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.method: Method = get_method(method or self.method_name)
        self.reshape_transform = reshape_transform
        self._layer_specs = target_layers
        auto = target_layers == "auto" or (
            not isinstance(target_layers, str | nn.Module) and "auto" in list(target_layers)
        )
        self._layers: list[nn.Module] | None
        if not self.method.uses_target_layers:
            self._layers = []
            if not auto and not (isinstance(target_layers, Sequence) and not target_layers):
                logger.info(
                    "%s uses no target layers; `target_layers` is ignored", self.method.title
                )
        else:
            self._layers = None if auto else resolve_layers(model, target_layers)
        self._fc_layer = fc_layer
        self.method_options = dict(method_options or {})
        self.outputs: torch.Tensor | None = None

    # -- pytorch-grad-cam-compatible surface ------------------------------------------------
    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: hooks exist only during a call."""
        return None

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Final maps ``(B, *input_spatial)`` as float32 numpy in [0, 1]."""
        explanation = self.explain(
            input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
        )
        return explanation.numpy()

    @property
    def target_layers(self) -> list[nn.Module]:
        """The resolved target layers (empty until an ``"auto"`` layer has been probed)."""
        return list(self._layers or [])

    # -- the richer API -----------------------------------------------------------------------
    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """Explain a batch; see :class:`~camlens.explanation.Explanation` for the fields.

        Args:
            input_tensor: ``(B, C, H, W)`` images or ``(B, C, D, H, W)`` volumes, moved to the
                model's device if needed.
            targets: one target per image, a single target for all, class indices, or
                ``None`` for the predicted class (dominant predicted class over its mask for
                segmenters).
            aug_smooth: average over horizontal flips × brightness 0.9/1.0/1.1 (maps are
                flipped back, and dense outputs are flipped back before targets see them).
            eigen_smooth: reduce channels by their first principal component instead of
                the plain sum.
        """
        inputs = prepare_input(input_tensor, self.model)
        layers = self._resolve(inputs)
        if not aug_smooth:
            explanation = self._explain_once(inputs, layers, targets, eigen_smooth)
        else:
            explanation = self._explain_augmented(inputs, layers, targets, eigen_smooth)
        self.outputs = explanation.outputs
        return explanation

    # -- internals ------------------------------------------------------------------------------
    def _resolve(self, inputs: torch.Tensor) -> list[nn.Module]:
        if self._layers is None:
            self._layers = resolve_layers(self.model, self._layer_specs, probe_input=inputs[:1])
        return self._layers

    def _explain_once(
        self,
        inputs: torch.Tensor,
        layers: list[nn.Module],
        targets: Sequence[Any] | None,
        eigen_smooth: bool,
        flipped: bool = False,
    ) -> Explanation:
        method = self.method
        names = [layer_name(self.model, layer) for layer in layers]
        output, activations = forward_capture(
            self.model, layers, inputs, track_gradients=method.needs_layer_gradients
        )

        def score_tensor(model_output: Any) -> torch.Tensor:
            scores = as_score_tensor(model_output)
            if flipped and is_dense(scores):
                scores = scores.flip(-1)  # back to the input's orientation
            return scores

        with torch.enable_grad():
            scores_all = score_tensor(output)
            for name, activation in zip(names, activations, strict=True):
                check_finite(activation, f"the activations of layer {name!r}")
            check_finite(scores_all, "the model output")
            resolved = resolve_targets(targets, scores_all)
            scores = self._scores(resolved, scores_all)
            check_finite(scores, "the target scores")
            gradients: list[torch.Tensor | None] = (
                list(layer_gradients(scores, activations, names))
                if method.needs_layer_gradients
                else [None] * len(layers)
            )
        if method.runner is not None:
            raw_maps = run_method(
                method,
                self.model,
                inputs,
                layers,
                names,
                activations,
                score_tensor=score_tensor,
                targets=[[target] for target in resolved],
                scores=scores.detach().unsqueeze(1),
                reshape_transform=self.reshape_transform,
                eigen_smooth=eigen_smooth,
                options=self.method_options,
            )
            layer_maps = [raw[:, 0] for raw in raw_maps]
            if method.map_names is not None:
                names = list(method.map_names)
        else:
            layer_maps = [
                layer_map(
                    method,
                    layer,
                    activation,
                    gradient,
                    reshape_transform=self.reshape_transform,
                    eigen_smooth=eigen_smooth,
                    class_weights=lambda channels: self._class_weights(resolved, channels),
                    options=self.method_options,
                )
                for layer, activation, gradient in zip(layers, activations, gradients, strict=True)
            ]
        size = tuple(inputs.shape[2:])
        maps = familiar_maps(layer_maps, size)
        return Explanation(
            method=method.name,
            layer_names=names,
            layer_maps=layer_maps,
            maps=maps,
            scores=scores.detach(),
            outputs=scores_all.detach(),
            targets=resolved,
            input_size=size,
        )

    @staticmethod
    def _scores(targets: list[Any], scores_all: torch.Tensor) -> torch.Tensor:
        values = []
        for index, (target, output) in enumerate(zip(targets, scores_all, strict=True)):
            value = target(output)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise TargetError(
                    f"target {index} ({target!r}) returned {shape}; a target must return one "
                    "scalar tensor per image."
                )
            values.append(value.reshape(()))
        return torch.stack(values)

    def _linear_layer(self, channels: int) -> nn.Linear:
        spec = self._fc_layer
        if isinstance(spec, str):
            spec = layer_by_name(self.model, spec)
        if spec is None:
            linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
            matching = [m for m in linears if m.in_features == channels]
            if not matching:
                raise LayerNotFoundError(
                    f"CAM needs the linear classifier after global pooling, but no nn.Linear "
                    f"with {channels} input features was found; pass `fc_layer=` or use GradCAM "
                    "(equal to CAM up to a constant for such models)."
                )
            spec = matching[-1]
        if not isinstance(spec, nn.Linear) or spec.in_features != channels:
            raise InputShapeError(
                f"`fc_layer` must be an nn.Linear with {channels} input features (the target "
                f"layer's channels), got {spec!r}."
            )
        return spec

    def _class_weights(self, targets: list[Any], channels: int) -> torch.Tensor:
        """``(B, C)``: the classifier row of each image's target class (CAM)."""
        weight = self._linear_layer(channels).weight.detach()
        rows = []
        for target in targets:
            if type(target) is ClassifierOutputTarget:
                if not -weight.shape[0] <= target.category < weight.shape[0]:
                    raise TargetError(
                        f"class index {target.category} is out of range for a classifier with "
                        f"{weight.shape[0]} classes."
                    )
                rows.append(weight[target.category])
            elif type(target) is BinaryClassifierOutputTarget and weight.shape[0] == 1:
                rows.append(weight[0] * (1.0 if target.category == 1 else -1.0))
            else:
                raise TargetError(
                    f"CAM explains one class logit of a linear classifier; {target!r} is not "
                    "such a target. Use ClassifierOutputTarget, or a gradient method."
                )
        return torch.stack(rows)

    def _explain_augmented(
        self,
        inputs: torch.Tensor,
        layers: list[nn.Module],
        targets: Sequence[Any] | None,
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
