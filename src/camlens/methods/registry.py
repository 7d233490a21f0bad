"""The one list of methods: the classes, the CLI, benchmarks and conformance tests iterate it.

A gradient (or gradient-free) method is a pure function of tensors. It receives the target
layer's activations and, when it needs them, the gradients of the target scores with respect
to those activations, both ``[B, C, *grid]``, and returns per-channel *contributions*
``[B, C, *grid]``. The shared pipeline then reduces the channels — a plain sum (the method's
map) or, with ``eigen_smooth`` or for the Eigen methods, the first principal component —
giving the signed, unnormalised map ``[B, *grid]``. ReLU, upsampling and normalisation are
never done inside a method.

A perturbation method (ScoreCAM, AblationCAM) needs the model re-run on perturbed inputs or
activations, and FullGrad needs gradients at every bias layer; such a method has a
*runner* instead: a function of a :class:`RunContext` that returns the signed raw maps
``[B, K, *grid]`` of ``K`` targets per image. Everything after the raw maps stays shared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camlens.errors import UnknownMethodError

__all__ = [
    "LayerData",
    "Method",
    "RunContext",
    "Runner",
    "available_methods",
    "get_method",
    "register",
]


@dataclass(frozen=True)
class LayerData:
    """What a method may read about one target layer.

    Attributes:
        activations: ``(B, C, *grid)`` layer output, float32 or float64.
        gradients: ``(B, C, *grid)`` d(target score)/d(activations), or ``None`` for
            gradient-free methods.
        class_weights: ``(B, C)`` weights of the linear classifier row of each image's target
            class (CAM only), else ``None``.
    """

    activations: torch.Tensor
    gradients: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None

    @property
    def spatial_dims(self) -> tuple[int, ...]:
        """The grid axes, ``(2, 3)`` for images and ``(2, 3, 4)`` for volumes."""
        return tuple(range(2, self.activations.dim()))

    def per_channel(self, weights: torch.Tensor) -> torch.Tensor:
        """Broadcast ``(B, C)`` channel weights over the grid and weight the activations."""
        shape = weights.shape + (1,) * len(self.spatial_dims)
        return weights.reshape(shape) * self.activations


#: ``(data, **options) -> (B, C, *grid)``; options are method parameters (e.g. a pool size).
Contributions = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class RunContext:
    """What a runner (a method that re-runs the model) may read about one call.

    ``B`` is the batch size and ``K`` the number of targets explained per image: 1 for the
    familiar classes, the number of classes for :func:`~camlens.explain_segmentation`.

    Attributes:
        model: the user's model. A runner borrows it (:func:`camlens.capture.borrowed`) for
            every re-run and changes nothing in it: perturbations go through temporary hooks
            that *return* new tensors.
        inputs: ``(B, C, *spatial)`` the input batch, on the model's device.
        layers: the target layers (empty for methods with ``map_names``).
        layer_names: their dotted names.
        activations: per target layer, its output as ``(B, C, *grid)`` (after ``reshape``),
            detached, float32 or float64.
        score_tensor: model output → score tensor (the output adapter, plus flipping dense
            outputs back under ``aug_smooth``).
        targets: per image, the ``K`` target callables (each: one image's scores → scalar).
        scores: ``(B, K)`` the targets' scores on the unperturbed input.
        options: the method's options (``batch_size``, ``memory_budget_mb``, ``progress``...).
        reshape: ``(layer, layer output) -> (B, C, *grid)``, the reshape used for
            ``activations``.
        eigen_smooth: reduce weighted channels by their first principal component.
    """

    model: nn.Module
    inputs: torch.Tensor
    layers: Sequence[nn.Module]
    layer_names: Sequence[str]
    activations: Sequence[torch.Tensor]
    score_tensor: Callable[[Any], torch.Tensor]
    targets: Sequence[Sequence[Callable[[torch.Tensor], torch.Tensor]]]
    scores: torch.Tensor
    options: Mapping[str, Any] = field(default_factory=dict)
    reshape: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    eigen_smooth: bool = False

    @property
    def num_targets(self) -> int:
        """``K``, the number of targets per image."""
        return int(self.scores.shape[1])


#: ``RunContext -> [(B, K, *grid)]``: one signed, unnormalised map per target layer (or per
#: entry of ``Method.map_names``).
Runner = Callable[[RunContext], list[torch.Tensor]]


@dataclass(frozen=True, kw_only=True)
class Method:
    """A registered method: either ``contributions`` (a pure function of one layer's
    tensors) or a ``runner`` (re-runs the model; see :class:`RunContext`).

    Attributes:
        name: registry key, lower case (``"hirescam"``).
        contributions: ``LayerData -> (B, C, *grid)``.
        runner: ``RunContext -> [(B, K, *grid)]``, for methods that re-run the model.
        needs_gradients: whether the method uses gradients (for ``contributions``: whether
            ``LayerData.gradients`` must be computed).
        needs_class_weights: whether the linear classifier's weights are needed (CAM).
        principal_component: always reduce channels by the first principal component.
        map_names: for runners that do not use target layers (FullGrad): the names of the
            maps the runner returns; target layers are then accepted and ignored.
        title: display name (``"HiResCAM"``).
        reference: the paper the formula comes from.
    """

    name: str
    title: str
    reference: str
    needs_gradients: bool
    contributions: Contributions | None = None
    runner: Runner | None = None
    needs_class_weights: bool = False
    principal_component: bool = False
    map_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.contributions is None) == (self.runner is None):
            raise ValueError(f"method {self.name!r} needs exactly one of contributions, runner")
        if self.map_names is not None and self.runner is None:
            raise ValueError(f"method {self.name!r}: map_names needs a runner")

    @property
    def needs_layer_gradients(self) -> bool:
        """Whether the shared pipeline must take gradients at the target layers."""
        return self.needs_gradients and self.runner is None

    @property
    def uses_target_layers(self) -> bool:
        """False for methods that ignore target layers (FullGrad)."""
        return self.map_names is None


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry; a duplicate name is a programming error."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def get_method(name: str) -> Method:
    """Look up a method by name; case, ``-`` and ``_`` are ignored (``"Grad-CAM++"``)."""
    key = _normalise(name).replace("plusplus", "++")
    for method in _REGISTRY.values():
        if _normalise(method.name) == key or _normalise(method.title) == key:
            return method
    raise UnknownMethodError(
        f"unknown method {name!r}; available: {', '.join(available_methods())}"
    )


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)
