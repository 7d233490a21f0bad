"""Shared machinery of the perturbation metrics: targets, scores of perturbed inputs in
chunks, pixel orderings.

Every metric that re-runs the model goes through :func:`target_scores`: the model is
borrowed (hooks removed and train/eval flags restored on every exit path), the forward
passes run under ``torch.inference_mode`` in chunks of ``batch_size`` inputs, and each
perturbed input is scored by the target of the image it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from camlens.capture import borrowed
from camlens.errors import InputShapeError, TargetError
from camlens.outputs import as_score_tensor
from camlens.postprocess import upsample
from camlens.steps import model_device
from camlens.target_sets import resolve_targets
from camlens.targets import ClassifierOutputTarget, target_score

__all__ = [
    "ScoreKind",
    "Scorer",
    "check_batch",
    "device_for",
    "gaussian_blur",
    "relevance_ranks",
]

ScoreKind = Literal["probability", "raw"]
Target = Callable[[torch.Tensor], torch.Tensor]


def device_for(model: nn.Module, fallback: torch.device) -> torch.device:
    """The model's device (:func:`camlens.steps.model_device`), else ``fallback``."""
    return model_device(model) or fallback


def check_batch(
    model: nn.Module, inputs: torch.Tensor, maps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``inputs`` ``(B, C, H, W)`` and ``maps`` ``(B, H, W)`` (or ``(B, h, w)``, then
    upsampled bilinearly) and return both detached on the model's device."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
        raise InputShapeError(
            f"`inputs` must be a (B, C, H, W) image tensor, got {shape}; add the batch "
            "dimension with inputs.unsqueeze(0)."
        )
    if not inputs.is_floating_point():
        raise InputShapeError(f"`inputs` must be floating point, got {inputs.dtype}")
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[0] != inputs.shape[0]:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps)
        raise InputShapeError(
            f"`maps` must be (B, H, W) with one map per image (B={inputs.shape[0]}), got "
            f"{shape}; use Explanation.maps or Explanation.raw_maps()."
        )
    device = device_for(model, inputs.device)
    inputs = inputs.detach().to(device)
    maps = maps.detach().to(device=device, dtype=inputs.dtype)
    size = tuple(inputs.shape[-2:])
    if tuple(maps.shape[-2:]) != size:
        maps = upsample(maps, size)
    return inputs, maps


def relevance_ranks(maps: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """``(B, H*W)`` int64: the position of each pixel when the pixels of each map are sorted
    by value (most relevant first with ``descending``). Ties keep raster order (row-major
    pixel index), so the ordering is deterministic."""
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=descending, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images, edges replicated; the kernel
    reaches ``ceil(3 σ)`` pixels each way."""
    if sigma <= 0:
        return images.clone()
    radius = max(1, int(torch.tensor(3.0 * sigma).ceil()))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _as_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (axis 1); a single-logit output gets a sigmoid."""
    if scores.dim() < 2:
        raise TargetError(
            f"score='probability' needs per-class outputs (B, K, ...), got shape "
            f"{tuple(scores.shape)}; use score='raw'."
        )
    if scores.shape[1] == 1:
        return torch.sigmoid(scores)
    return torch.softmax(scores, dim=1)


class Scorer:
    """Scores of one target per image, for the images and for perturbed copies of them.

    Args:
        model: the borrowed model.
        inputs: ``(B, C, H, W)`` the unperturbed images, on the model's device.
        targets: one target callable per image (taking one image's output and returning a
            scalar), class ids, a single target for all, or ``None`` for the predicted class.
        score: ``"probability"``: targets see the softmax over the class axis (a sigmoid for
            a single-logit output), so a class-id target scores the class probability;
            ``"raw"``: targets see the raw model output (logits).
        batch_size: at most this many inputs per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: Sequence[Any] | Any | None,
        *,
        score: ScoreKind = "probability",
        batch_size: int = 64,
    ) -> None:
        if score not in ("probability", "raw"):
            raise ValueError(f"`score` must be 'probability' or 'raw', got {score!r}")
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
        self.model = model
        self.score = score
        self.batch_size = int(batch_size)
        outputs = self._outputs(inputs)
        if targets is not None and (callable(targets) or isinstance(targets, int)):
            targets = [targets]
        self.targets: list[Target] = resolve_targets(targets, outputs)
        self.classes = self._class_ids(self.targets)
        #: ``(B,)`` the target score of each unperturbed image.
        with torch.no_grad():
            self.original = self._pick(outputs, torch.arange(inputs.shape[0], device=inputs.device))

    @staticmethod
    def _class_ids(targets: list[Target]) -> list[int] | None:
        """Class ids when every target is a plain class logit (a gather is then enough)."""
        if all(type(t) is ClassifierOutputTarget for t in targets):
            return [t.category for t in targets]  # type: ignore[attr-defined]
        return None

    def _outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        with borrowed(self.model), torch.inference_mode():
            scores = as_score_tensor(self.model(inputs))
            scores = _as_probabilities(scores) if self.score == "probability" else scores
        return scores.clone()  # a normal tensor again: targets may do anything with it

    def _pick(self, outputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The target score of each row of ``outputs``; row ``j`` came from image
        ``images[j]``."""
        if self.classes is not None and outputs.dim() == 2:
            classes = torch.tensor(self.classes, device=outputs.device)[images]
            if bool(((classes < -outputs.shape[1]) | (classes >= outputs.shape[1])).any()):
                raise TargetError(
                    f"a class index in {sorted(set(self.classes))} is out of range for a model "
                    f"with {outputs.shape[1]} classes (valid: 0..{outputs.shape[1] - 1})."
                )
            return outputs.gather(1, (classes % outputs.shape[1])[:, None])[:, 0]
        return torch.stack(
            [
                target_score(self.targets[image], row, f"target {image}")
                for row, image in zip(outputs, images.tolist(), strict=True)
            ]
        )

    def scores(
        self, count: int, make: Callable[[slice], tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """``(count,)`` target scores of ``count`` perturbed inputs, built a chunk at a time.

        ``make(chunk)`` returns the perturbed inputs of positions ``chunk`` and the image each
        came from; no more than ``batch_size`` perturbed inputs exist at once.
        """
        results = []
        for start in range(0, count, self.batch_size):
            chunk = slice(start, min(count, start + self.batch_size))
            inputs, images = make(chunk)
            with torch.no_grad():
                results.append(self._pick(self._outputs(inputs), images))
        return torch.cat(results)
