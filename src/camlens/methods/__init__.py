"""CAM methods. Importing this package registers every built-in method."""

# Registration order is the order users see: the gradient family first.
from camlens.methods import gradient, cam, eigen  # noqa: F401, I001
from camlens.methods.eigen import first_principal_component
from camlens.methods.registry import LayerData, Method, available_methods, get_method, register

__all__ = [
    "LayerData",
    "Method",
    "available_methods",
    "first_principal_component",
    "get_method",
    "register",
]
