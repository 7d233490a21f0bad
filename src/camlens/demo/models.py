"""The demo's models and their shipped weights.

* :func:`segmenter`: a small DeepLabV3+ (ResNet-style encoder, ASPP decoder, smp attribute
  names ``encoder.layer1..4``, ``decoder``, ``segmentation_head``) for the seven tissue
  classes of :mod:`camlens.demo.synthetic`.
* :func:`shortcut_classifier`: a small ResNet-style lesion classifier (``layer1..4``,
  ``avgpool``, ``fc``). Two copies are trained: one on data where a corner marker leaks the
  label ("leaky"), one without the leak ("control").

Inputs are RGB in [0, 1] normalised with the ImageNet mean and std (the CLI's default).
Weights are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camlens.demo.synthetic import CLASS_NAMES
from camlens.models.deeplab import DeepLabV3Plus
from camlens.models.resnet import BasicBlock, ResNet, ResNetEncoder

__all__ = [
    "MEAN",
    "SEGMENTER_SIZE",
    "SHORTCUT_SIZE",
    "STD",
    "WEIGHT_FILES",
    "demo_weights",
    "load_demo_model",
    "recorded_metrics",
    "segmenter",
    "shortcut_classifier",
]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Tile size the segmenter is trained on (it runs on any multiple of 16).
SEGMENTER_SIZE = 128
#: Patch size of the shortcut classifiers.
SHORTCUT_SIZE = 96
WEIGHT_FILES = {
    "segmenter": "segmenter.pt",
    "shortcut_leaky": "shortcut_leaky.pt",
    "shortcut_control": "shortcut_control.pt",
}


def segmenter() -> DeepLabV3Plus:
    """The demo segmenter's architecture (untrained)."""
    encoder = ResNetEncoder(BasicBlock, [1, 1, 1, 1], width=16, output_stride=16)
    return DeepLabV3Plus(
        encoder, num_classes=len(CLASS_NAMES), decoder_channels=48, atrous_rates=(3, 6, 9)
    )


def shortcut_classifier() -> ResNet:
    """The shortcut demo's lesion classifier architecture (untrained): 2 classes."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2, width=16)


_FACTORIES = {
    "segmenter": segmenter,
    "shortcut_leaky": shortcut_classifier,
    "shortcut_control": shortcut_classifier,
}


def _weights_folder() -> Any:
    return resources.files("camlens.demo") / "weights"


def demo_weights(name: str) -> Path:
    """The file of a shipped model's weights (for ``camlens explain --weights``)."""
    return Path(str(_weights_folder() / WEIGHT_FILES[name]))


def load_demo_model(name: str) -> nn.Module:
    """A shipped model in eval mode: ``"segmenter"``, ``"shortcut_leaky"`` or
    ``"shortcut_control"``."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown demo model {name!r}; choose from {sorted(_FACTORIES)}")
    model = _FACTORIES[name]()
    with resources.as_file(_weights_folder() / WEIGHT_FILES[name]) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"the demo weights {path.name} are missing; train them with "
                "`python -m camlens.demo.train`"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def recorded_metrics() -> dict[str, Any]:
    """The validation figures recorded when the shipped weights were trained."""
    return json.loads((_weights_folder() / "metrics.json").read_text(encoding="utf-8"))
