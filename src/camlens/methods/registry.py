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

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camlens.errors import OptionError, UnknownMethodError

__all__ = [
    "ClassWeights",
    "LayerData",
    "Method",
    "Option",
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


#: ``(data, **options) -> (B, C, *grid)``; options are the method's declared options.
Contributions = Callable[..., torch.Tensor]

#: CAM's classifier rows: ``(model, targets, channels, options) -> (B, C)``, one row per
#: image for that image's target.
ClassWeights = Callable[[nn.Module, Sequence[Any], int, Mapping[str, Any]], torch.Tensor]

_NO_DEFAULT = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, kw_only=True)
class Option:
    """One declared parameter of a method: its name, accepted type, default and range.

    Options are checked in one place (:meth:`Method.check_options`) with one error type,
    :class:`~camlens.errors.OptionError`, whichever front end passes them.

    Attributes:
        name: keyword name (``"pool_size"``).
        kind: the accepted Python type(s); ``bool`` is never taken for ``int`` or ``float``.
        default: the value when the option is not given.
        help: one line for ``camlens methods`` and error messages.
        minimum, maximum: inclusive bounds for numbers (``None``: unbounded).
        exclusive_minimum: the value must be strictly above ``minimum``.
        choices: the allowed values of a string option.
        nullable: ``None`` is an accepted value (e.g. "derive the batch size").
    """

    name: str
    kind: type | tuple[type, ...]
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    @property
    def kinds(self) -> tuple[type, ...]:
        """The accepted types as a tuple."""
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def describe(self) -> str:
        """``name: type = default (range)``, for listings."""
        kinds = " | ".join(k.__name__ for k in self.kinds) + (" | None" if self.nullable else "")
        limits = []
        if self.choices is not None:
            limits.append("one of " + ", ".join(self.choices))
        if self.minimum is not None:
            limits.append(f"{'>' if self.exclusive_minimum else '≥'} {self.minimum:g}")
        if self.maximum is not None:
            limits.append(f"≤ {self.maximum:g}")
        limit = f" ({'; '.join(limits)})" if limits else ""
        return f"{self.name}: {kinds} = {self.default!r}{limit}"

    def check(self, value: Any, owner: str) -> Any:
        """``value`` if it is acceptable, else :class:`OptionError` saying what is."""
        if value is None and self.nullable:
            return None
        is_bool = isinstance(value, bool)
        accepted = any(
            isinstance(value, kind) and (kind is bool or not is_bool) for kind in self.kinds
        )
        if not accepted and float in self.kinds and isinstance(value, int) and not is_bool:
            accepted = True  # an int where a float is expected
        if not accepted:
            raise OptionError(
                f"{owner}: option `{self.name}` must be {self._expected()}, got {value!r} "
                f"({type(value).__name__})."
            )
        if self.choices is not None and value not in self.choices:
            raise OptionError(
                f"{owner}: option `{self.name}` must be one of {list(self.choices)}, got {value!r}."
            )
        if isinstance(value, int | float) and not is_bool:
            low, high = self.minimum, self.maximum
            too_low = low is not None and (value <= low if self.exclusive_minimum else value < low)
            if too_low or (high is not None and value > high) or value != value:
                raise OptionError(
                    f"{owner}: option `{self.name}` must be {self._expected()}, got {value!r}."
                )
        return value

    def parse(self, text: str, owner: str) -> Any:
        """The value of ``text`` as given on a command line (``"4"``, ``"0.5"``, ``"none"``)."""
        stripped = text.strip()
        if stripped.lower() == "none" and self.nullable:
            return None
        for kind in self.kinds:
            if kind is bool:
                if stripped.lower() in _TRUE | _FALSE:
                    return self.check(stripped.lower() in _TRUE, owner)
                continue
            if kind in (int, float):
                try:
                    return self.check(kind(stripped), owner)
                except ValueError:
                    continue
            if kind is str:
                return self.check(stripped, owner)
        raise OptionError(
            f"{owner}: option `{self.name}` must be {self._expected()}, got {text!r}."
        )

    def _expected(self) -> str:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        parts = [names.get(kind, f"a {kind.__name__}") for kind in self.kinds]
        text = " or ".join(parts) + (" or None" if self.nullable else "")
        if self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '≥'} {self.minimum:g}"
        if self.maximum is not None:
            text += f" and ≤ {self.maximum:g}"
        return text


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
        options: the method's declared options, checked and completed with their defaults.
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
        label: how people write it, for captions and tables (``"Grad-CAM++"``).
        class_name: the familiar class that runs it (``"GradCAMPlusPlus"``).
        reference: the paper the formula comes from.
        needs_gradients: whether the method uses gradients (for ``contributions``: whether
            ``LayerData.gradients`` must be computed).
        contributions: ``(LayerData, **options) -> (B, C, *grid)``.
        runner: ``RunContext -> [(B, K, *grid)]``, for methods that re-run the model.
        options: the method's declared parameters; a ``contributions`` function receives
            them as keyword arguments, a runner in ``RunContext.options``.
        class_weights: for methods built on a linear classifier's weights (CAM): supplies
            ``LayerData.class_weights``.
        principal_component: always reduce channels by the first principal component.
        map_names: for runners that do not use target layers (FullGrad): the names of the
            maps the runner returns; target layers are then accepted and ignored.
        needs_attention: the method reads a transformer's attention probabilities, so it
            runs only on models with attention modules (rollout, Chefer 2021, LeGrad).
        reruns_model: a runner that re-runs the model (ScoreCAM, AblationCAM); false for a
            runner that only needs the whole activation grid at once (KPCA-CAM). Shown by
            ``camlens methods``.
    """

    name: str
    label: str
    class_name: str
    reference: str
    needs_gradients: bool
    contributions: Contributions | None = None
    runner: Runner | None = None
    options: tuple[Option, ...] = ()
    class_weights: ClassWeights | None = None
    principal_component: bool = False
    map_names: tuple[str, ...] | None = None
    needs_attention: bool = False
    reruns_model: bool = True

    def __post_init__(self) -> None:
        if (self.contributions is None) == (self.runner is None):
            raise ValueError(f"method {self.name!r} needs exactly one of contributions, runner")
        if self.map_names is not None and self.runner is None:
            raise ValueError(f"method {self.name!r}: map_names needs a runner")
        names = [option.name for option in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"method {self.name!r} declares an option twice: {names}")

    @property
    def needs_layer_gradients(self) -> bool:
        """Whether the shared pipeline must take gradients at the target layers."""
        return self.needs_gradients and self.runner is None

    @property
    def uses_target_layers(self) -> bool:
        """False for methods that ignore target layers (FullGrad)."""
        return self.map_names is None

    def check_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """``options`` completed with the defaults, every value checked.

        Raises :class:`~camlens.errors.OptionError` for an unknown name (with the close
        names) or a value of the wrong type or range.
        """
        given = dict(options or {})
        declared = {option.name: option for option in self.options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            if not declared:
                raise OptionError(
                    f"{self.label} takes no options, got unknown option(s) {unknown}."
                )
            close = {
                name: difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
                for name in unknown
            }
            hints = [f"{name!r} (did you mean {c[0]!r}?)" for name, c in close.items() if c]
            hint = f"; {', '.join(hints)}" if hints else ""
            raise OptionError(
                f"{self.label} got unknown option(s) {unknown}{hint}; its options: "
                f"{', '.join(sorted(declared))} (see `camlens methods`)."
            )
        return {
            name: option.check(given[name], self.label) if name in given else option.default
            for name, option in declared.items()
        }

    def parse_option(self, text: str) -> tuple[str, Any]:
        """``"name=value"`` as given on a command line → ``(name, checked value)``."""
        name, separator, value = text.partition("=")
        name = name.strip()
        if not separator or not name:
            raise OptionError(f"an option is written NAME=VALUE (e.g. pool_size=4), got {text!r}")
        declared = {option.name: option for option in self.options}
        if name not in declared:
            self.check_options({name: None})  # raises with the close names
        return name, declared[name].parse(value, self.label)


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
    """Look up a method by registry name, label or class name; case, spaces, ``-`` and
    ``_`` are ignored (``"Grad-CAM++"``, ``"GradCAMPlusPlus"``, ``"gradcam++"``)."""
    key = _normalise(name).replace("plusplus", "++")
    for method in _REGISTRY.values():
        spellings = (method.name, method.label, method.class_name)
        if any(_normalise(spelling).replace("plusplus", "++") == key for spelling in spellings):
            return method
    raise UnknownMethodError(
        f"unknown method {name!r}; available: {', '.join(available_methods())}"
    )


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)
