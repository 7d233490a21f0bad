"""The camlens exception tree.

Every error says what was wrong, what was received and how to fix it. Each class also
derives from the builtin exception a caller would naturally catch (``KeyError`` for an
unknown layer, ``IndexError`` for a class index out of range, ...), so existing
``except`` clauses keep working.
"""

from __future__ import annotations

import sys

__all__ = [
    "CamlensError",
    "ImageLoadError",
    "InputShapeError",
    "LayerNeverRanError",
    "LayerNotFoundError",
    "ModelOutputError",
    "NonFiniteError",
    "OptionError",
    "SlowRunWarning",
    "TargetError",
    "UnknownMethodError",
    "UnsupportedModeError",
    "caller_stacklevel",
]


class CamlensError(Exception):
    """Base class of every error raised by camlens."""


class _ReadableKeyError(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class LayerNotFoundError(CamlensError, _ReadableKeyError):
    """A target layer name does not name a submodule of the model."""


class UnknownMethodError(CamlensError, _ReadableKeyError):
    """A method name is not in the registry."""


class LayerNeverRanError(CamlensError, RuntimeError):
    """A target layer did not run during the forward pass, or the score does not depend on it."""


class InputShapeError(CamlensError, ValueError):
    """The input tensor, a mask or a list of targets has the wrong shape or length."""


class TargetError(CamlensError, IndexError):
    """A target cannot be computed from the model output (e.g. a class index out of range)."""


class ModelOutputError(CamlensError, TypeError):
    """The model output cannot be turned into a tensor of scores."""


class NonFiniteError(CamlensError, FloatingPointError):
    """NaN or infinity appeared in activations, gradients or target scores."""


class UnsupportedModeError(CamlensError, RuntimeError):
    """The call was made in a mode that cannot produce gradients (e.g. ``torch.inference_mode``)."""


class ImageLoadError(CamlensError, OSError):
    """An image file cannot be read or converted to RGB."""


class OptionError(CamlensError, TypeError, ValueError):
    """A method option is unknown, of the wrong type or out of range.

    Derives from ``TypeError`` (an unexpected keyword argument) and ``ValueError`` (a bad
    value), so either ``except`` clause catches it.
    """


class SlowRunWarning(UserWarning):
    """A method that re-runs the model will take long: the estimate, and what to try."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside camlens, so that a warning points at
    the user's line however many camlens calls are in between (call it in the function
    that calls :func:`warnings.warn`)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("camlens"):
        frame = frame.f_back
        level += 1
    return level
