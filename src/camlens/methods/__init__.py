"""CAM methods. Importing this package registers every built-in method.

Registration order is the order users see (``camlens methods``, ``available_methods()``):
the families listed below first, then every other module of this package, by name — so a
method in a new module needs no edit here.
"""

import importlib
import pkgutil

from camlens.methods import gradient, cam, eigen, score, ablation, fullgrad  # noqa: F401, I001
from camlens.methods.eigen import first_principal_component
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

#: Modules of this package that hold machinery, not methods.
_MACHINERY = frozenset({"registry", "perturbation"})

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _module.name not in _MACHINERY and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

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
