"""The code our users run with pytorch-grad-cam runs with only its imports changed."""

from __future__ import annotations

import numpy as np
import torch

from camlens import GradCAM, HiResCAM
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget


def test_users_segmentation_snippet() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=4).eval()
    rgb_img = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    input_tensor = torch.from_numpy(rgb_img).permute(2, 0, 1)[None]
    output = model(input_tensor)
    normalized_masks = torch.softmax(output, dim=1).cpu()
    category = 2
    mask = normalized_masks[0].argmax(dim=0).detach().cpu().numpy()
    mask_float = np.float32(mask == category)
    targets = [SemanticSegmentationTarget(category, mask_float)]
    with HiResCAM(model=model, target_layers=[model.encoder.layer4]) as cam:
        grayscale_cam = cam(input_tensor=input_tensor, targets=targets)[0, :]
    assert isinstance(grayscale_cam, np.ndarray)
    assert grayscale_cam.dtype == np.float32
    assert grayscale_cam.shape == (64, 64)
    assert grayscale_cam.min() >= 0 and grayscale_cam.max() <= 1
    assert cam.outputs.shape == (1, 4, 64, 64)


def test_classification_snippet_with_default_targets() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=6)
    x = torch.randn(3, 3, 64, 64)
    cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
    maps = cam(input_tensor=x, targets=None)
    assert maps.shape == (3, 64, 64)
    top = model.eval()(x).argmax(1)
    explicit = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in top])
    np.testing.assert_array_equal(maps, explicit)
    # maps are min–max scaled per image
    assert np.allclose(maps.reshape(3, -1).max(1), 1, atol=1e-5)
    assert np.allclose(maps.reshape(3, -1).min(1), 0, atol=1e-6)
