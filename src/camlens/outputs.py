"""Model-output adapters: turn whatever a model returns into one tensor of scores.

Users' models return plain tensors (classifiers, smp segmenters), ``{"out": ...}`` dicts
(torchvision segmentation), tuples or lists (auxiliary heads), or objects with a
``.logits`` attribute (Hugging Face). Targets always see a tensor: ``[B, K]`` for
classifiers, ``[B, K, *spatial]`` for dense predictions, ``[B, D]`` for embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from camlens.errors import ModelOutputError

__all__ = ["as_score_tensor", "is_dense"]

_DICT_KEYS = ("out", "logits", "pred", "output")


def as_score_tensor(output: Any) -> torch.Tensor:
    """Return the tensor of scores inside ``output``.

    Tensors pass through; mappings give their ``"out"`` (then ``"logits"``, ``"pred"``,
    ``"output"``) entry; objects with a ``.logits`` tensor give it; tuples and lists give
    their first element (the main head by convention). Anything else raises
    :class:`~camlens.errors.ModelOutputError` naming what was received.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in _DICT_KEYS:
            if key in output:
                return as_score_tensor(output[key])
        raise ModelOutputError(
            f"the model returned a dict with keys {sorted(map(str, output))}; camlens looks for "
            f"one of {list(_DICT_KEYS)}. Wrap the model so it returns the score tensor, e.g. "
            "`lambda x: model(x)['my_key']` inside an nn.Module."
        )
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Sequence) and not isinstance(output, str) and len(output) > 0:
        return as_score_tensor(output[0])
    raise ModelOutputError(
        f"cannot find a score tensor in a model output of type {type(output).__name__}; "
        "return a tensor, a dict with 'out', a tuple whose first item is the scores, or an "
        "object with a `.logits` tensor."
    )


def is_dense(scores: torch.Tensor) -> bool:
    """True when ``scores`` is a dense prediction ``[B, K, *spatial]`` (segmentation)."""
    return scores.dim() >= 4
