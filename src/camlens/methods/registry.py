"""The one list of methods: the classes, the CLI, benchmarks and conformance tests iterate it.

A method is a pure function of tensors. It receives the target layer's activations and,
when it needs them, the gradients of the target scores with respect to those activations,
both ``[B, C, *grid]``, and returns per-channel *contributions* ``[B, C, *grid]``. The
shared pipeline then reduces the channels — a plain sum (the method's map) or, with
``eigen_smooth`` or for the Eigen methods, the first principal component — giving the
signed, unnormalised map ``[B, *grid]``. ReLU, upsampling and normalisation are never done
inside a method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from camlens.errors import UnknownMethodError

__all__ = ["LayerData", "Method", "available_methods", "get_method", "register"]


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
class Method:
    """A registered method.

    Attributes:
        name: registry key, lower case (``"hirescam"``).
        contributions: ``LayerData -> (B, C, *grid)``.
        needs_gradients: whether ``LayerData.gradients`` must be computed.
        needs_class_weights: whether the linear classifier's weights are needed (CAM).
        principal_component: always reduce channels by the first principal component.
        title: display name (``"HiResCAM"``).
        reference: the paper the formula comes from.
    """

    name: str
    contributions: Contributions
    needs_gradients: bool
    title: str
    reference: str
    needs_class_weights: bool = False
    principal_component: bool = False


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
