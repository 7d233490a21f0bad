"""Port of pytorch-grad-cam's ``tests/test_run_all_models.py``: every method runs on a
ResNet-18 and a VGG-11 layout, one or several target layers, batches of 1 and 2, with and
without targets and ``eigen_smooth``, and returns ``(B, H, W)`` maps.

Changes: camlens's same-layout models (small, seeded) instead of pretrained torchvision ones;
upstream passes ``device=None``, which 1.5.7's classes refuse, so it is dropped; the maps are
also checked to lie in [0, 1] and the model to come back unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens.compat import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from camlens.compat.utils.image import preprocess_image
from camlens.compat.utils.model_targets import ClassifierOutputTarget
from tests.compat.conftest import resize, small_resnet18, small_vgg11


@pytest.mark.parametrize(
    "cnn_model,target_layer_names",
    [(small_resnet18, ["layer4[-1]", "layer4[-2]"]), (small_vgg11, ["features[-1]"])],
)
@pytest.mark.parametrize("batch_size,width,height", [(2, 32, 32), (1, 32, 40)])
@pytest.mark.parametrize("target_category", [None, 100])
@pytest.mark.parametrize("aug_smooth", [False])
@pytest.mark.parametrize("eigen_smooth", [True, False])
@pytest.mark.parametrize(
    "cam_method",
    [
        ScoreCAM,
        AblationCAM,
        GradCAM,
        GradCAMPlusPlus,
        XGradCAM,
        EigenCAM,
        EigenGradCAM,
        LayerCAM,
        FullGrad,
    ],
)
def test_all_cam_models_can_run(
    numpy_image: np.ndarray,
    batch_size: int,
    width: int,
    height: int,
    cnn_model,
    target_layer_names: list[str],
    cam_method,
    target_category: int | None,
    aug_smooth: bool,
    eigen_smooth: bool,
) -> None:
    img = resize(numpy_image, width, height)
    input_tensor = preprocess_image(np.float32(img) / 255).repeat(batch_size, 1, 1, 1)
    model = cnn_model()
    target_layers = []
    for layer in target_layer_names:
        target_layers.append(eval(f"model.{layer}"))
    before = {name: value.clone() for name, value in model.state_dict().items()}

    cam = cam_method(model=model, target_layers=target_layers)
    cam.batch_size = 4
    targets = (
        None
        if target_category is None
        else [ClassifierOutputTarget(target_category) for _ in range(batch_size)]
    )
    grayscale_cam = cam(
        input_tensor=input_tensor,
        targets=targets,
        aug_smooth=aug_smooth,
        eigen_smooth=eigen_smooth,
    )
    assert grayscale_cam.shape[0] == input_tensor.shape[0]
    assert grayscale_cam.shape[1:] == input_tensor.shape[2:]
    assert grayscale_cam.min() >= 0 and grayscale_cam.max() <= 1
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
