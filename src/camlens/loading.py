"""Load users' models, weights and label files for the command line.

A model is named by a factory: ``package.module:function`` (importable) or
``path/to/file.py:function``; the factory is called without arguments and must return an
``nn.Module``. Weights are read with ``torch.load(weights_only=True)`` — never unpickling
arbitrary objects — from a state dict, or a checkpoint dict holding one under
``"state_dict"``, ``"model_state_dict"``, ``"model"`` or ``"weights"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from camlens.errors import CamlensError

__all__ = ["ModelLoadError", "load_labels", "load_model", "load_weights"]

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "weights")


class ModelLoadError(CamlensError, RuntimeError):
    """A model factory, weights file or labels file cannot be loaded."""


def load_model(spec: str) -> nn.Module:
    """Build the model named by ``spec`` (``pkg.module:factory`` or ``file.py:factory``)."""
    module_name, sep, factory_name = spec.rpartition(":")
    if not sep or not module_name or not factory_name:
        raise ModelLoadError(
            f"--model {spec!r} must look like 'package.module:factory' or "
            "'path/to/file.py:factory' (a function returning an nn.Module)."
        )
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ModelLoadError(f"--model: file {str(path)!r} does not exist")
        unique = f"camlens_user_model_{abs(hash(path.resolve()))}"
        loader_spec = importlib.util.spec_from_file_location(unique, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ModelLoadError(f"--model: cannot import {str(path)!r} as Python")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[unique] = module
        sys.path.insert(0, str(path.resolve().parent))  # let the file import its neighbours
        try:
            loader_spec.loader.exec_module(module)
        except Exception as error:  # the user's file: syntax errors, failed imports, ...
            raise ModelLoadError(
                f"--model: importing {str(path)!r} failed: {_first_line(error)}"
            ) from error
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # ImportError, or anything the module raises on import
            raise ModelLoadError(
                f"--model: cannot import {module_name!r}: {_first_line(error)}"
            ) from error
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        public = sorted(
            n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
        )
        raise ModelLoadError(
            f"--model: {module_name!r} has no callable {factory_name!r}; callables there: "
            f"{', '.join(public[:12]) or 'none'}"
        )
    try:
        model = factory()
    except Exception as error:
        raise ModelLoadError(f"--model: {spec}() raised {_first_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"--model: {spec} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (an empty message gives the type alone)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> None:
    """Load a state dict from ``path`` into ``model`` (``weights_only=True``).

    Errors say why: missing file, a file that is not a weights-only checkpoint (e.g. a whole
    pickled model), or keys/shapes that do not match the model (with examples).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"--weights: file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ModelLoadError(
            f"--weights: {str(path)!r} is empty (0 bytes); was it copied completely?"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad files
        raise ModelLoadError(
            f"--weights: cannot read {str(path)!r} as a weights-only checkpoint "
            f"({_first_line(error)}). "
            "Save a state dict: torch.save(model.state_dict(), path)."
        ) from error
    state = loaded
    if isinstance(loaded, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelLoadError(
            f"--weights: {str(path)!r} holds {type(loaded).__name__}, not a state dict of tensors"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel prefix
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {'; '.join(mismatched[:2])})")
        raise ModelLoadError(
            f"--weights: {str(path)!r} does not fit the model: {'; '.join(parts)}. Check that "
            "--model builds the architecture these weights were trained with."
        )
    model.load_state_dict(state, strict=strict)


def load_labels(path: str | Path) -> list[str]:
    """Class names from a JSON file: a list of names, or a mapping ``{"0": "name", ...}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"--labels: cannot read {str(path)!r} as JSON: {error}") from error
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return data
    if isinstance(data, dict):
        try:
            indexed = {int(k): str(v) for k, v in data.items()}
        except ValueError as error:
            raise ModelLoadError(f"--labels: keys of {str(path)!r} must be class ids") from error
        return [indexed.get(i, f"class {i}") for i in range(max(indexed) + 1)]
    raise ModelLoadError(
        f"--labels: {str(path)!r} must hold a list of names or a mapping of id to name"
    )
