"""pytorch-grad-cam's extension point, and the ``BaseCAM`` attributes its scripts read.

Upstream defines a method by subclassing ``BaseCAM`` and overriding ``get_cam_weights``
(numpy ``(B, C, h, w)`` activations and gradients in, ``(B, C)`` channel weights out) or
``get_cam_image`` (``(B, h, w)`` maps out). Here such an override becomes a per-instance,
unregistered :class:`~camlens.methods.Method` run by the one pipeline
(:func:`camlens.engine.explain_batch`): its runner gets the target layers' activations from
the pipeline, the gradients at those layers from the pipeline's own steps (a second forward
pass, recorded from the first target layer on), calls the override with numpy arrays and
returns its maps to the shared post-processing (ReLU, min–max, upsampling, layer mean).
:class:`FamiliarExtension` (the base of :class:`camlens.BaseCAM`) also carries upstream's
``activations_and_grads``, ``forward``, ``get_cam_image``, ``compute_cam_per_layer``,
``aggregate_multi_layers``, ``get_target_width_height``, ``device`` and ``uses_gradients``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camlens.errors import CamlensError, InputShapeError, UnknownMethodError
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.image.familiar import scale_cam_image
from camlens.methods import LayerData, Method, RunContext, first_principal_component, get_method
from camlens.steps import forward_capture, layer_gradients, model_device
from camlens.target_sets import TargetSet

__all__ = ["UPSTREAM_KEYWORDS", "ActivationsAndGradients", "FamiliarExtension"]

#: ``BaseCAM.__init__`` keywords of pytorch-grad-cam 1.5.7 that a subclass may pass on.
UPSTREAM_KEYWORDS = ("compute_input_gradient", "uses_gradients", "tta_transforms", "detach")


def _tensor(value: Any, what: str) -> torch.Tensor:
    """An override's return value (numpy, a tensor or nested lists) as a detached tensor."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise InputShapeError(f"{what} must be an array of numbers, got {value!r}") from error


def _layer_gradients(context: RunContext) -> list[list[torch.Tensor]]:
    """Per target column, the target scores' gradients at the target layers on the grid:
    the pipeline's steps again (a forward pass recorded from the first target layer on)."""
    layers, names = list(context.layers), list(context.layer_names)
    output, captured = forward_capture(
        context.model, layers, context.inputs, names, track_gradients=True
    )
    reshape = context.reshape
    assert reshape is not None, "the pipeline passes its reshape to runners"
    count = context.num_targets
    with torch.enable_grad():
        scores = TargetSet(context.targets).scores(context.score_tensor(output))
        per_target = [
            layer_gradients(scores[:, k], captured, names, retain_graph=k < count - 1)
            for k in range(count)
        ]
    return [
        [
            reshape(layer, gradient).to(activation.dtype)
            for layer, gradient, activation in zip(layers, row, context.activations, strict=True)
        ]
        for row in per_target
    ]


class ActivationsAndGradients:
    """pytorch-grad-cam's recorder of target-layer outputs and of their gradients.

    Called on an input, it runs the model with forward hooks on ``target_layers`` that exist
    only during the call (upstream keeps them until ``release()``) and returns the output;
    gradients arrive, through hooks on the recorded tensors, when the caller back-propagates.
    The familiar classes fill one with their last call's tensors (``cam.activations_and_grads``).

    Attributes:
        activations: per target layer, its output — with ``detach`` (the default), after
            ``reshape_transform``, detached and on the CPU, as upstream.
        gradients: the gradients of whatever was back-propagated, per target layer in the
            same order (empty for gradient-free methods).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        detach: bool = True,
    ) -> None:
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        self.detach = detach
        self.activations: list[torch.Tensor] = []
        self.gradients: list[torch.Tensor] = []

    def _keep(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.detach:
            return tensor
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        return tensor.detach().cpu()

    def __call__(self, x: torch.Tensor) -> Any:
        """The model's output on ``x``; each target layer's output is recorded."""
        self.clear()
        handles = [layer.register_forward_hook(self._hook) for layer in self.target_layers]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, _module: nn.Module, _inputs: object, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        self.activations.append(self._keep(output))
        if output.requires_grad:
            position = len(self.activations) - 1

            def store(gradient: torch.Tensor) -> None:
                self.gradients.insert(min(position, len(self.gradients)), self._keep(gradient))

            output.register_hook(store)

    def record(
        self, activations: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor] | None
    ) -> None:
        """Append tensors already on the grid (what the pipeline computed); they are
        detached and moved to the CPU."""
        self.activations.extend(a.detach().cpu() for a in activations)
        self.gradients.extend(g.detach().cpu() for g in gradients or [])

    def keep_last(self, count: int) -> None:
        """Keep the last ``count`` entries (the last of several runs, e.g. ``aug_smooth``)."""
        for tensors in (self.activations, self.gradients):
            del tensors[: max(len(tensors) - count, 0)]

    def clear(self) -> None:
        """Forget the recorded tensors."""
        self.activations.clear()
        self.gradients.clear()

    def release(self) -> None:
        """Forget the recorded tensors (no hook outlives a call; nothing else to release)."""
        self.clear()


@dataclasses.dataclass(frozen=True)
class _Recording:
    """A registered method's contributions or runner that also records what it reads."""

    inner: Callable[..., Any]
    recorder: ActivationsAndGradients

    def __call__(self, data: LayerData | RunContext, **options: Any) -> Any:
        if isinstance(data, LayerData):
            gradients = [] if data.gradients is None else [data.gradients]
            self.recorder.record([data.activations], gradients)
            return self.inner(data, **options)
        self.recorder.record(data.activations, [])
        return self.inner(data)


class FamiliarExtension(Explainer):
    """pytorch-grad-cam's ``BaseCAM`` surface on top of :class:`~camlens.explainer.Explainer`
    (see the module docstring); :class:`camlens.BaseCAM` is its subclass."""

    #: As upstream's attributes: camlens never makes the input require gradients, and
    #: always hands numpy copies (``detach=True``) to an override.
    compute_input_gradient: bool = False
    detach: bool = True

    def _familiar_method(
        self,
        model: nn.Module,
        method: str | None,
        upstream: Mapping[str, Any],
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> Method:
        """The method this instance runs: the subclass's override, or the registry entry;
        either way wrapped to record ``activations_and_grads``."""
        unknown = sorted(set(upstream) - set(UPSTREAM_KEYWORDS))
        name = type(self).__name__
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword argument(s) {unknown}")
        self._recorder = ActivationsAndGradients(model, [], reshape_transform)
        self._uses_gradients = bool(upstream.get("uses_gradients", True))
        if method is None and self._overrides():
            if upstream.get("tta_transforms") is not None:
                raise CamlensError(
                    "`tta_transforms` is not supported: aug_smooth=True averages horizontal "
                    "flips × brightness 0.9/1.0/1.1 (camlens.explainer.AUGMENTATIONS)."
                )
            if upstream.get("detach", True) is not True:
                raise CamlensError(
                    "`detach=False` is not supported: overrides receive numpy arrays; for a "
                    "method that needs the graph (ShapleyCAM) use camlens.ShapleyCAM."
                )
            return Method(
                name=name.lower(),
                label=name,
                class_name=name,
                reference=f"user-defined ({type(self).__qualname__})",
                needs_gradients=self._uses_gradients,
                runner=self._run_override,
            )
        if upstream:
            raise TypeError(
                f"{name}() takes {sorted(upstream)} only in a subclass that overrides "
                "get_cam_weights or get_cam_image"
            )
        chosen = method or getattr(self, "method_name", "")
        if not chosen:
            raise UnknownMethodError(
                f"{name} names no method: subclass it and override get_cam_weights or "
                "get_cam_image (pytorch-grad-cam's way), or use camlens.Explainer(model, "
                "layers, method) with a registered method (camlens.available_methods())."
            )
        found = get_method(chosen)
        recording = _Recording(found.contributions or found.runner, self._recorder)  # type: ignore[arg-type]
        if found.contributions is not None:
            return dataclasses.replace(found, contributions=recording)
        return dataclasses.replace(found, runner=recording)

    def _overrides(self) -> bool:
        kind = type(self)
        return (
            kind.get_cam_weights is not FamiliarExtension.get_cam_weights
            or kind.get_cam_image is not FamiliarExtension.get_cam_image
        )

    @property
    def activations_and_grads(self) -> ActivationsAndGradients:
        """The last call's activations and gradients per target layer, reshaped to
        ``(B, C, *grid)``, detached, on the CPU (upstream's ``cam.activations_and_grads``)."""
        return self._recorder

    @property
    def device(self) -> torch.device:
        """The model's device (inputs are moved there)."""
        return model_device(self.model) or torch.device("cpu")

    @property
    def uses_gradients(self) -> bool:
        """Whether the method takes gradients at the target layers."""
        return self.method.needs_gradients

    def explain(
        self,
        inputs: torch.Tensor,
        targets: Sequence[Any] | Any | None = None,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """As :meth:`Explainer.explain`, also refreshing :attr:`activations_and_grads`."""
        self._recorder.clear()
        explanation = super().explain(
            inputs, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
        )
        self._recorder.target_layers = self.layers
        self._recorder.keep_last(len(self.layers))
        return explanation

    def forward(
        self, input_tensor: torch.Tensor, targets: Sequence[Any] | None, eigen_smooth: bool = False
    ) -> np.ndarray:
        """Upstream's ``forward``: the final maps without ``aug_smooth``."""
        return self.explain(input_tensor, targets, eigen_smooth=eigen_smooth).numpy()

    def forward_augmentation_smoothing(
        self, input_tensor: torch.Tensor, targets: Sequence[Any] | None, eigen_smooth: bool = False
    ) -> np.ndarray:
        """Upstream's name for the final maps with ``aug_smooth=True``."""
        explanation = self.explain(
            input_tensor, targets, aug_smooth=True, eigen_smooth=eigen_smooth
        )
        return explanation.numpy()

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: Sequence[Any],
        activations: np.ndarray,
        grads: np.ndarray | None,
    ) -> np.ndarray:
        """The ``(B, C)`` channel weights; override it to define a method (as upstream)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no channel weights: {self.method.label}'s per-layer "
            "map is get_cam_image(...); a subclass defines a method by overriding this."
        )

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: Sequence[Any],
        activations: np.ndarray,
        grads: np.ndarray | None,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """One layer's signed map ``(B, h, w)`` from its ``(B, C, h, w)`` numpy activations
        and gradients: ``get_cam_weights`` × activations when a subclass overrides it, else
        the registered method's per-layer formula; channels summed, or reduced by their
        first principal component with ``eigen_smooth`` (camlens's sign rule)."""
        data = LayerData(
            activations=_tensor(activations, "activations"),
            gradients=None if grads is None else _tensor(grads, "grads"),
        )
        principal = eigen_smooth
        if type(self).get_cam_weights is not FamiliarExtension.get_cam_weights:
            weights = _tensor(
                self.get_cam_weights(input_tensor, target_layer, targets, activations, grads),
                "get_cam_weights' result",
            )
            if tuple(weights.shape) != tuple(data.activations.shape[:2]):
                raise InputShapeError(
                    f"{type(self).__name__}.get_cam_weights returned shape "
                    f"{tuple(weights.shape)}; expected (B, C) = "
                    f"{tuple(data.activations.shape[:2])}."
                )
            contributions = data.per_channel(weights.to(data.activations.dtype))
        else:
            method = self.method
            formula = method.contributions
            if isinstance(formula, _Recording):
                formula = formula.inner
            if formula is None:
                raise CamlensError(
                    f"{method.label} re-runs the model; it has no per-layer formula to apply "
                    "to given activations: read cam.explain(...).layer_maps instead."
                )
            if method.class_weights is not None:
                rows = method.class_weights(
                    self.model, list(targets), data.activations.shape[1], self.options
                )
                data = dataclasses.replace(data, class_weights=rows.to(data.activations))
            contributions = formula(data, **self.options)
            principal = principal or method.principal_component
        reduced = first_principal_component(contributions) if principal else contributions.sum(1)
        return reduced.float().cpu().numpy()

    def _run_override(self, context: RunContext) -> list[torch.Tensor]:
        """The runner of a subclass's override: ``get_cam_image`` per target and layer."""
        gradients = _layer_gradients(context) if self._uses_gradients else None
        self._recorder.record(context.activations, gradients[-1] if gradients else [])
        name = type(self).__name__
        maps: list[list[torch.Tensor]] = [[] for _ in context.layers]
        for k in range(context.num_targets):
            column = [row[k] for row in context.targets]
            for index, layer in enumerate(context.layers):
                activation = context.activations[index]
                gradient = gradients[k][index] if gradients else None
                cam = self.get_cam_image(
                    context.inputs,
                    layer,
                    column,
                    activation.detach().cpu().numpy(),
                    None if gradient is None else gradient.cpu().numpy(),
                    context.eigen_smooth,
                )
                result = _tensor(cam, f"{name}.get_cam_image's result")
                expected = (activation.shape[0], *activation.shape[2:])
                if tuple(result.shape) != expected:
                    raise InputShapeError(
                        f"{name}.get_cam_image returned shape {tuple(result.shape)}; expected "
                        f"(B, *grid) = {expected}."
                    )
                maps[index].append(result.to(activation.device, activation.dtype))
        return [torch.stack(per_layer, dim=1) for per_layer in maps]

    def get_target_width_height(self, input_tensor: torch.Tensor) -> tuple[int, ...]:
        """The input's spatial size in OpenCV's order: ``(W, H)``, or ``(W, H, D)`` for
        ``(B, C, D, H, W)`` volumes, as upstream."""
        if input_tensor.dim() not in (4, 5):
            raise InputShapeError(
                f"expected a (B, C, H, W) or (B, C, D, H, W) input, got {tuple(input_tensor.shape)}"
            )
        return tuple(int(s) for s in reversed(input_tensor.shape[2:]))

    def compute_cam_per_layer(
        self, input_tensor: torch.Tensor, targets: Sequence[Any], eigen_smooth: bool
    ) -> list[np.ndarray]:
        """Per target layer, ``(B, 1, H, W)``: ``get_cam_image`` on the last call's recorded
        tensors, ReLU, min–max and resized to the input (upstream's step)."""
        recorder = self._recorder
        if len(recorder.activations) < len(self.layers) or not self.layers:
            raise CamlensError(
                "compute_cam_per_layer reads the activations of the last call: call the CAM "
                "on the input first."
            )
        size = self.get_target_width_height(input_tensor)
        result = []
        for index, layer in enumerate(self.layers):
            grads = recorder.gradients[index] if index < len(recorder.gradients) else None
            cam = self.get_cam_image(
                input_tensor,
                layer,
                targets,
                recorder.activations[index].numpy(),
                None if grads is None else grads.numpy(),
                eigen_smooth,
            )
            result.append(scale_cam_image(np.maximum(cam, 0), size)[:, None])
        return result

    def aggregate_multi_layers(self, cam_per_target_layer: Sequence[np.ndarray]) -> np.ndarray:
        """Upstream's last step: per-layer maps ``(B, 1, H, W)`` → ReLU → mean → min–max."""
        stacked = np.maximum(np.concatenate(list(cam_per_target_layer), axis=1), 0)
        return scale_cam_image(stacked.mean(axis=1))
