"""Model-output adapters: turn whatever a model returns into one tensor of scores.

Users' models return plain tensors (classifiers, smp segmenters), ``{"out": ...}`` dicts
(torchvision segmentation), tuples or lists (auxiliary heads), or objects with a
``.logits`` attribute (Hugging Face). Targets always see a tensor: ``[B, K]`` for
classifiers, ``[B, K, *spatial]`` for dense predictions, ``[B, D]`` for embeddings.

Detectors are the one exception: torchvision's convention is a list with one
``{"boxes", "labels", "scores"}`` dict per image, and no single tensor of scores exists. The
engine asks for them with ``detections=True`` and gets a :class:`Detections` (the same
per-image dicts), which :class:`~camlens.target_sets.TargetSet` hands image by image to
targets such as :class:`~camlens.targets.FasterRCNNBoxScoreTarget`; every other caller keeps
getting a tensor or a :class:`~camlens.errors.ModelOutputError` saying where detectors run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import torch

from camlens.errors import ModelOutputError

__all__ = ["DETECTION_KEYS", "Detections", "as_score_tensor", "is_dense"]

_DICT_KEYS = ("out", "logits", "pred", "output")

#: What one image's entry of a detector's output holds (torchvision's convention).
DETECTION_KEYS = ("boxes", "labels", "scores")


class Detections(list):  # type: ignore[type-arg]
    """A detector's output: one ``{"boxes": (M, 4), "labels": (M,), "scores": (M,), ...}``
    dict per image, kept as the model returned it (differentiable where the model is).

    A list, so that targets receive ``outputs[image]`` exactly as pytorch-grad-cam's do;
    :meth:`detach` and :meth:`tensors` are what the engine needs of a model output besides.
    """

    def detach(self) -> Detections:
        """The same dicts with every tensor detached (what a result keeps)."""
        return Detections(
            {
                key: value.detach() if isinstance(value, torch.Tensor) else value
                for key, value in image.items()
            }
            for image in self
        )

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` for every floating-point tensor (the finite checks' subjects)."""
        for index, image in enumerate(self):
            for key, value in image.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    yield f"image {index} {key!r}", value


def _is_detections(output: Any) -> bool:
    return (
        isinstance(output, Sequence)
        and not isinstance(output, str)
        and len(output) > 0
        and all(
            isinstance(image, Mapping) and all(key in image for key in DETECTION_KEYS)
            for image in output
        )
    )


@overload
def as_score_tensor(output: Any, *, detections: Literal[False] = False) -> torch.Tensor: ...


@overload
def as_score_tensor(output: Any, *, detections: bool) -> torch.Tensor | Detections: ...


def as_score_tensor(output: Any, *, detections: bool = False) -> torch.Tensor | Detections:
    """Return the tensor of scores inside ``output``.

    Tensors pass through; mappings give their ``"out"`` (then ``"logits"``, ``"pred"``,
    ``"output"``) entry; objects with a ``.logits`` tensor give it; tuples and lists give
    their first element (the main head by convention). A detector's per-image dicts
    (``"boxes"``, ``"labels"``, ``"scores"``) come back as :class:`Detections` with
    ``detections=True`` (the engine) and raise otherwise. Anything else raises
    :class:`~camlens.errors.ModelOutputError` naming what was received.
    """
    if isinstance(output, torch.Tensor):
        return output
    if _is_detections(output):
        if detections:
            return Detections(output)
        raise ModelOutputError(
            "the model returned a detector's per-image dicts (boxes, labels, scores), which "
            "have no tensor of scores; explain a detector with the familiar classes (e.g. "
            "camlens.EigenCAM, camlens.GradCAM) or camlens.Explainer, with a callable target "
            "per image such as camlens.targets.FasterRCNNBoxScoreTarget."
        )
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


def is_dense(scores: torch.Tensor | Detections) -> bool:
    """True when ``scores`` is a dense prediction ``[B, K, *spatial]`` (segmentation);
    false for :class:`Detections`."""
    return isinstance(scores, torch.Tensor) and scores.dim() >= 4
