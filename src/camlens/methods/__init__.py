"""CAM methods. Importing this package registers every built-in method.

Registration order is the order users see (``camlens methods``, ``available_methods()``):
the families listed below first, then every other module of this package, by name — so a
method in a new module needs no edit here.
"""

import importlib
import pkgutil

from camlens.methods.reduction import first_principal_component
from camlens.methods.registry import (
    LayerData,
    Method,
    Option,
    RunContext,
    Runner,
    available_methods,
    get_method,
    register,
)

#: The built-in families, in the order users see them.
_FAMILIES = ("gradient", "cam", "eigen", "score", "ablation", "fullgrad")
#: Modules of this package that hold machinery, not methods.
_MACHINERY = frozenset({"registry", "perturbation", "reduction", "linear_delta", "linear_suffix"})

_OTHERS = sorted(info.name for info in pkgutil.iter_modules(__path__))
for _name in [*_FAMILIES, *(n for n in _OTHERS if n not in _FAMILIES)]:
    if _name not in _MACHINERY and not _name.startswith("_"):
        importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "LayerData",
    "Method",
    "Option",
    "RunContext",
    "Runner",
    "available_methods",
    "first_principal_component",
    "get_method",
    "register",
]
