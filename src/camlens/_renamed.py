"""Old keyword spellings kept working, with a warning that names the new one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renamed_keywords"]

Function = TypeVar("Function", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[Function], Function]:
    """Accept each ``old=`` keyword of ``renames`` (``old -> new``) as ``new=`` with a
    ``DeprecationWarning``; passing both is a ``TypeError``."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{function.__name__}() got both `{old}` and `{new}`; `{old}` is the old "
                        f"name of `{new}`: pass only `{new}`."
                    )
                warnings.warn(
                    f"{function.__name__}(): `{old}=` is deprecated; call it `{new}=`.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
