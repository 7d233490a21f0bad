"""What every job's settings hold, and how a batch of decoded images becomes model input.

A job's settings decide its outputs, so they are its identity in ``run.json``: a resumed run
or another shard must have the same ones. :class:`JobSettings` holds what ``explain`` and
``evaluate`` share; each command's settings add their own fields and name their command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from camlens.image import preprocess_image
from camlens.segmentation import SegmentationExplanation, explain_segmentation

__all__ = ["JobSettings", "batch_inputs", "explain_classes"]


@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """The settings every job shares (recorded in ``run.json``)."""

    command: ClassVar[str] = ""

    model: str
    weights: str | None
    layers: list[str]
    methods: list[str]
    options: dict[str, dict[str, Any]]
    task: str  # "seg" or "cls"
    classes: Any  # seg: "present" | "all" | [ids]; cls: None (top) or [ids]
    class_names: list[str] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int] | None
    batch_size: int
    shards: int

    def identity(self) -> dict[str, Any]:
        """``run.json``'s content for this run (option values as their ``repr``: a module
        given as CAM's ``fc_layer`` is not JSON)."""
        settings = dataclasses.asdict(self)
        settings["options"] = {
            method: {name: repr(value) for name, value in options.items()}
            for method, options in self.options.items()
        }
        return {"command": self.command, "settings": settings}

    @property
    def layer_spec(self) -> str | list[str]:
        """The target layers as the library takes them: one name, or a list."""
        return self.layers[0] if len(self.layers) == 1 else list(self.layers)


def batch_inputs(
    images: Sequence[np.ndarray],
    settings: JobSettings,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Decoded ``(H, W, 3)`` images normalised with the settings' mean and std, as one batch
    on the model's device and in its floating dtype (a float16 model gets float16 inputs)."""
    batch = torch.cat([preprocess_image(image, settings.mean, settings.std) for image in images])
    return batch.to(device, dtype)


def explain_classes(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    settings: JobSettings,
    *,
    region: torch.Tensor | None = None,
) -> SegmentationExplanation:
    """A segmenter's batch explained as the settings say (classes, methods, layers, class
    names, options): every requested class and method from one forward pass."""
    return explain_segmentation(
        model,
        inputs,
        classes=settings.classes,
        methods=settings.methods,
        layers=settings.layer_spec,
        class_names=settings.class_names,
        options=settings.options,
        region=region,
    )
