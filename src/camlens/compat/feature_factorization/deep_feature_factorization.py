"""``pytorch_grad_cam.feature_factorization.deep_feature_factorization`` → camlens.

:class:`DeepFeatureFactorization` is camlens's (:mod:`camlens.familiar_more`); :func:`dff`
factorises given activations with camlens's NMF (:mod:`camlens.methods.factorization`;
multiplicative updates from a seeded random start, where upstream runs scikit-learn's
``NMF(init="random", random_state=0)``: the same kind of factorisation, not the same
numbers); :func:`run_dff_on_image` draws one image's concepts as upstream does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from camlens.familiar_more import DeepFeatureFactorization
from camlens.image import create_labels_legend, show_factorization_on_image
from camlens.methods.factorization import factorize_activations

__all__ = ["DeepFeatureFactorization", "dff", "run_dff_on_image"]


def dff(activations: Any, n_components: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Deep Feature Factorization of ``(B, C, h, w)`` numpy activations: ``concepts``
    ``(C, n_components)`` and ``explanations`` ``(B, n_components, h, w)`` (float64 on the
    CPU; NaNs count as 0). The input is not changed."""
    array = np.nan_to_num(np.asarray(activations, dtype=np.float64), nan=0.0)
    found = factorize_activations(torch.from_numpy(array), n_components)
    return found.concepts.numpy(), found.maps.numpy()


def run_dff_on_image(
    model: nn.Module,
    target_layer: nn.Module,
    classifier: Callable[[torch.Tensor], Any],
    img_pil: Image.Image,
    img_tensor: torch.Tensor,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_components: int = 5,
    top_k: int = 2,
) -> np.ndarray:
    """One image's concepts drawn next to it: ``[image | concept overlay]`` as ``uint8``.

    ``img_tensor`` is the image ``(C, H, W)`` as the model takes it; ``classifier`` maps the
    concepts ``(k, C)`` to class scores (softmax-ed for the legend, ``top_k`` classes each).
    Class names come from ``model.config.id2label`` (a Hugging Face model), else
    ``"class N"``.
    """
    factorization = DeepFeatureFactorization(
        model=model,
        target_layer=target_layer,
        reshape_transform=reshape_transform,
        computation_on_concepts=classifier,
    )
    _, explanations, outputs = factorization(img_tensor[None], n_components)
    scores = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
    config = getattr(model, "config", None)
    labels = getattr(config, "id2label", None) or [f"class {c}" for c in range(scores.shape[-1])]
    legend = create_labels_legend(scores, labels=labels, top_k=top_k)
    rgb = np.asarray(img_pil, dtype=np.float64) / 255
    picture = show_factorization_on_image(
        rgb, explanations[0], image_weight=0.3, concept_labels=legend
    )
    return np.hstack((np.asarray(img_pil), picture))
