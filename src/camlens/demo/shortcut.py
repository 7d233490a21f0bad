"""Is the model cheating? The shortcut case of the demo, in numbers.

Two lesion classifiers share an architecture: one was trained on patches where a green
corner marker leaks the label ("leaky"), the other on the same patches without the marker
("control"). On lesion patches that carry the marker, we explain the "lesion" logit and ask
where each method puts its strongest evidence (the pointing game: is the map's peak on the
marker, or on the lesion, within one grid cell?) and what share of its positive mass lies
there. A model that learned the shortcut peaks on a box covering about 1 % of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from camlens.demo.synthetic import make_shortcut_dataset
from camlens.explainer import Explainer
from camlens.explanation import Explanation
from camlens.metrics import DatasetAudit, audit_dataset, pointing_game, positive_mass_in_mask
from camlens.targets import ClassifierOutputTarget

__all__ = ["LAYER", "ShortcutFindings", "audit_models", "shortcut_findings"]

#: Target layer of the shortcut classifiers: a 12 × 12 grid (8-px cells) for 96-px patches.
LAYER = "layer2"
LESION = 1


@dataclass
class ShortcutFindings:
    """Where each model's evidence for "lesion" lies, on lesion patches with the marker.

    Attributes:
        images: ``(N, H, W, 3)`` the explained patches.
        lesion_masks, marker_masks: ``(N, H, W)`` bool.
        explanations: per model, per method, the :class:`Explanation` of the lesion logit.
        on_marker, on_lesion: per model, per method, ``(N,)`` share of positive raw-map mass
            inside the marker box / the lesion (NaN where a map has no positive mass).
        peak_on_marker, peak_on_lesion: per model, per method, ``(N,)`` whether the map's
            maximum lies on the marker box / the lesion, within ``tolerance`` pixels.
        tolerance: one grid cell of the target layer, in pixels: a layer's evidence for a
            feature can sit in the cell next to it (receptive fields, padding).
        predicted_lesion: per model, ``(N,)`` whether the model predicts "lesion".
        marker_area: the marker box's share of the image area.
    """

    images: np.ndarray
    lesion_masks: np.ndarray
    marker_masks: np.ndarray
    explanations: dict[str, dict[str, Explanation]]
    on_marker: dict[str, dict[str, np.ndarray]]
    on_lesion: dict[str, dict[str, np.ndarray]]
    peak_on_marker: dict[str, dict[str, np.ndarray]]
    peak_on_lesion: dict[str, dict[str, np.ndarray]]
    predicted_lesion: dict[str, np.ndarray]
    marker_area: float
    tolerance: int

    def mean_on_marker(self, model: str, method: str) -> float:
        return float(np.nanmean(self.on_marker[model][method]))

    def mean_on_lesion(self, model: str, method: str) -> float:
        return float(np.nanmean(self.on_lesion[model][method]))

    def peak_rate(self, model: str, method: str, where: str) -> float:
        """Fraction of patches whose map peaks on ``where`` (``"marker"`` or ``"lesion"``)."""
        hits = (self.peak_on_marker if where == "marker" else self.peak_on_lesion)[model]
        return float(hits[method].mean())


def shortcut_findings(
    models: dict[str, nn.Module],
    methods: list[str],
    inputs_from_images,
    *,
    seed: int,
    count: int,
    size: int,
) -> ShortcutFindings:
    """Explain the lesion logit of each model on ``count`` lesion patches with the marker.

    ``inputs_from_images`` turns ``(N, H, W, 3)`` RGB in [0, 1] into the models' input tensor.
    """
    data = make_shortcut_dataset(seed, 2 * count, size, leak=True)
    positives = data["labels"] == LESION
    images = data["images"][positives][:count]
    lesions = torch.as_tensor(data["lesion_masks"][positives][:count])
    markers = torch.as_tensor(data["marker_masks"][positives][:count])
    inputs = inputs_from_images(images)
    explanations: dict[str, dict[str, Explanation]] = {}
    on_marker: dict[str, dict[str, np.ndarray]] = {}
    on_lesion: dict[str, dict[str, np.ndarray]] = {}
    peak_marker: dict[str, dict[str, np.ndarray]] = {}
    peak_lesion: dict[str, dict[str, np.ndarray]] = {}
    predicted: dict[str, np.ndarray] = {}
    tolerance = 0
    for name, model in models.items():
        explanations[name], on_marker[name], on_lesion[name] = {}, {}, {}
        peak_marker[name], peak_lesion[name] = {}, {}
        for method in methods:
            explanation = Explainer(model, LAYER, method).explain(
                inputs, [ClassifierOutputTarget(LESION)]
            )
            raw = explanation.layer_maps[0]
            explanations[name][method] = explanation
            on_marker[name][method] = positive_mass_in_mask(raw, markers).numpy()
            on_lesion[name][method] = positive_mass_in_mask(raw, lesions).numpy()
            tolerance = size // raw.shape[-1]
            peak_marker[name][method] = pointing_game(raw, markers, tolerance).numpy()
            peak_lesion[name][method] = pointing_game(raw, lesions, tolerance).numpy()
        predicted[name] = (explanation.outputs.argmax(1) == LESION).numpy()
    return ShortcutFindings(
        images=images,
        lesion_masks=lesions.numpy(),
        marker_masks=markers.numpy(),
        explanations=explanations,
        on_marker=on_marker,
        on_lesion=on_lesion,
        peak_on_marker=peak_marker,
        peak_on_lesion=peak_lesion,
        predicted_lesion=predicted,
        marker_area=float(markers[0].float().mean()),
        tolerance=tolerance,
    )


def audit_models(
    models: dict[str, nn.Module],
    methods: list[str],
    inputs_from_images,
    *,
    seed: int,
    count: int,
    size: int,
    class_names: tuple[str, str] = ("normal", "lesion"),
) -> dict[tuple[str, str], DatasetAudit]:
    """The dataset audit (:func:`camlens.metrics.audit_dataset`) of each model and method over
    ``count`` patches as they were trained (the marker leaking on lesion patches), with the
    lesion masks as where class "lesion" appears."""
    data = make_shortcut_dataset(seed, count, size, leak=True)
    masks = torch.as_tensor(data["lesion_masks"])
    batches = [
        (inputs_from_images(data["images"][start : start + 16]), masks[start : start + 16])
        for start in range(0, count, 16)
    ]
    return {
        (name, method): audit_dataset(
            model, batches, Explainer(model, LAYER, method), class_names=class_names
        )
        for name, model in models.items()
        for method in methods
    }
