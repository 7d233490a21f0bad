"""Checking and formatting what callers pass in: cell values, number formats, widths."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from camlens.errors import CamlensError

__all__ = [
    "MISSING",
    "NumberFormat",
    "ReportError",
    "check_width",
    "column_formats",
    "format_value",
]

#: A float pattern for all columns, one per column (``None``: the default), or by header.
NumberFormat = str | Sequence[str | None] | Mapping[str, str]

#: The text shown for a missing or not-a-number value in tables and key/value lists.
MISSING = "–"

#: The float pattern used where none is given.
DEFAULT_NUMBER_FORMAT = "{:.3f}"


class ReportError(CamlensError, ValueError):
    """A report was given something it cannot show (a bad option, a malformed table)."""


def format_value(value: Any, number_format: str = DEFAULT_NUMBER_FORMAT) -> tuple[str, str]:
    """Format a table or key/value cell as ``(text, kind)``; ``kind`` picks the CSS class.

    ``kind`` is ``"num"`` for numbers (right-aligned), ``"na"`` for ``None`` and NaN (both
    shown as ``"–"``), ``"text"`` for everything else. Floats (numpy's included) go
    through ``number_format``; integers are printed exactly, booleans as text; infinities
    as ``"∞"`` / ``"−∞"``. The text is *not* escaped yet.
    """
    if value is None:
        return MISSING, "na"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), "text"
    if isinstance(value, (Integral, np.integer)):
        return str(int(value)), "num"
    if isinstance(value, (Real, np.floating)):
        number = float(value)
        if math.isnan(number):
            return MISSING, "na"
        if math.isinf(number):
            return ("∞" if number > 0 else "−∞"), "num"
        return number_format.format(number), "num"
    return str(value), "text"


def column_formats(headers: tuple[str, ...], number_format: NumberFormat) -> Callable[[int], str]:
    """Resolve ``number_format`` to a function: column index → ``str.format`` pattern."""
    default = DEFAULT_NUMBER_FORMAT
    if isinstance(number_format, str):
        pattern = number_format
        return lambda i: pattern
    if isinstance(number_format, Mapping):
        unknown = set(number_format) - set(headers)
        if unknown:
            raise ReportError(
                f"number_format names columns that are not headers: {sorted(unknown)}"
            )
        by_column = [number_format.get(h, default) for h in headers]
    else:
        by_column = [f if f is not None else default for f in number_format]
        if len(by_column) != len(headers):
            raise ReportError(
                f"number_format has {len(by_column)} patterns for {len(headers)} columns"
            )
    return lambda i: by_column[i] if i < len(by_column) else default


def check_width(width: Any, what: str) -> int | None:
    """``None`` or a positive whole number of CSS pixels, returned as ``int``."""
    if width is None:
        return None
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (Integral, np.integer)):
        raise ReportError(f"{what} must be a whole number of CSS pixels; got {width!r}")
    if int(width) <= 0:
        raise ReportError(f"{what} must be positive; got {width}")
    return int(width)
