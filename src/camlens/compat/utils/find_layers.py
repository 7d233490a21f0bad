"""``pytorch_grad_cam.utils.find_layers`` → camlens: finding (and, on request, replacing)
submodules, depth first in registration order as upstream.

The two ``replace_*`` functions change the model *you* pass, because that is what you ask
them to do; camlens itself never calls them (its methods never swap modules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

__all__ = [
    "find_layer_predicate_recursive",
    "find_layer_types_recursive",
    "replace_all_layer_type_recursive",
    "replace_layer_recursive",
]


def find_layer_predicate_recursive(
    model: nn.Module, predicate: Callable[[nn.Module], bool]
) -> list[nn.Module]:
    """Every submodule below ``model`` (not ``model`` itself) for which ``predicate`` holds,
    parents before their children."""
    found = []
    for child in model.children():
        if predicate(child):
            found.append(child)
        found.extend(find_layer_predicate_recursive(child, predicate))
    return found


def find_layer_types_recursive(
    model: nn.Module, layer_types: Iterable[type[nn.Module]]
) -> list[nn.Module]:
    """Every submodule whose type is exactly one of ``layer_types`` (subclasses do not
    count, as upstream), e.g. ``find_layer_types_recursive(model, [nn.Conv2d])``."""
    kinds = tuple(layer_types)
    return find_layer_predicate_recursive(model, lambda layer: type(layer) in kinds)


def replace_layer_recursive(model: nn.Module, old_layer: nn.Module, new_layer: nn.Module) -> bool:
    """Put ``new_layer`` where ``old_layer`` is registered (the first place found);
    ``True`` if it was found."""
    for name, child in model.named_children():
        if child is old_layer:
            setattr(model, name, new_layer)
            return True
        if replace_layer_recursive(child, old_layer, new_layer):
            return True
    return False


def replace_all_layer_type_recursive(
    model: nn.Module,
    old_layer_type: type[nn.Module] | tuple[type[nn.Module], ...],
    new_layer: nn.Module,
) -> None:
    """Put ``new_layer`` in place of every submodule that is an instance of
    ``old_layer_type`` (the same module object everywhere, as upstream)."""
    for name, child in list(model.named_children()):
        if isinstance(child, old_layer_type):
            setattr(model, name, new_layer)
        replace_all_layer_type_recursive(child, old_layer_type, new_layer)
