"""CAM methods. Importing this package registers every built-in method."""

# Registration order is the order users see: the gradient family first, then the methods
# that re-run the model (perturbations) and FullGrad.
from camlens.methods import gradient, cam, eigen, score, ablation, fullgrad  # noqa: F401, I001
from camlens.methods.eigen import first_principal_component
from camlens.methods.registry import (
    LayerData,
    Method,
    RunContext,
    Runner,
    available_methods,
    get_method,
    register,
)

__all__ = [
    "LayerData",
    "Method",
    "RunContext",
    "Runner",
    "available_methods",
    "first_principal_component",
    "get_method",
    "register",
]
