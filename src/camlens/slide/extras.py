"""The optional packages whole slides need, imported with an install hint when missing.

``camlens[slide]`` brings ``openslide-python`` with ``openslide-bin`` (the OpenSlide 4
library as a wheel: no system package) and ``tifffile``. The core of camlens never needs
them, so they are imported here, on first use, and a missing one is a one-line error that
says what to install rather than a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from camlens.errors import CamlensError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(CamlensError, ImportError):
    """An optional package camlens needs for this feature is not installed."""


def require(module: str, *, extra: str = "slide", why: str = "whole slides") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{why} need the {module.split('.')[0]} package ({error}); install it with: "
            f'pip install "camlens[{extra}]"'
        ) from None
