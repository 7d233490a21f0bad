"""Ports of pytorch-grad-cam's ``usage_examples/`` (``vit_example.py``,
``swinT_example.py``, ``clip_example.py``) as tests: each method of the example's table
explains a transformer with the example's own ``reshape_transform`` and draws the overlay.

Changes: camlens's small timm-style ViT, channels-last Swin and Hugging Face-style ViT stand
in for DeiT, timm's Swin-B and CLIP ViT-L (so the grids are 4 × 4 and 8 × 8, not 14 × 14,
7 × 7 and 16 × 16); the Swin example's token reshape becomes a permute because timm's current
Swin (and the stand-in) gives channels-last ``(B, H, W, C)`` maps; its pre-1.0 keywords
(``target_layer=``, ``use_cuda=``, ``target_category=``) are today's ``target_layers=`` and
``targets=``; no files are written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

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
from camlens.compat.ablation_layer import AblationLayerVit
from camlens.compat.utils.image import preprocess_image, show_cam_on_image
from camlens.models import HuggingFaceViT, ViTConfig
from tests.compat.conftest import resize

METHODS = {
    "gradcam": GradCAM,
    "scorecam": ScoreCAM,
    "gradcam++": GradCAMPlusPlus,
    "ablationcam": AblationCAM,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "layercam": LayerCAM,
    "fullgrad": FullGrad,
}


def _rgb(numpy_image: np.ndarray, size: int) -> np.ndarray:
    return np.float32(resize(numpy_image, size, size)[:, :, ::-1]) / 255


def _run(cam, rgb_img: np.ndarray, eigen_smooth: bool, aug_smooth: bool) -> None:
    input_tensor = preprocess_image(rgb_img, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    cam.batch_size = 32
    grayscale_cam = cam(
        input_tensor=input_tensor, targets=None, eigen_smooth=eigen_smooth, aug_smooth=aug_smooth
    )[0, :]
    assert grayscale_cam.shape == rgb_img.shape[:2]
    cam_image = show_cam_on_image(rgb_img, grayscale_cam)
    assert cam_image.shape == rgb_img.shape and cam_image.dtype == np.uint8


def vit_reshape(tensor: torch.Tensor, height: int = 4, width: int = 4) -> torch.Tensor:
    """The example's reshape: drop the class token, tokens → grid, channels first."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("eigen_smooth,aug_smooth", [(False, False), (True, True)])
def test_vit_example(
    numpy_image: np.ndarray, vit: nn.Module, method: str, eigen_smooth: bool, aug_smooth: bool
) -> None:
    target_layers = [vit.blocks[-1].norm1]
    if method == "ablationcam":
        cam = METHODS[method](
            model=vit,
            target_layers=target_layers,
            reshape_transform=vit_reshape,
            ablation_layer=AblationLayerVit(),
        )
    else:
        cam = METHODS[method](model=vit, target_layers=target_layers, reshape_transform=vit_reshape)
    _run(cam, _rgb(numpy_image, 32), eigen_smooth, aug_smooth)


def swin_reshape(tensor: torch.Tensor) -> torch.Tensor:
    """Channels-last ``(B, H, W, C)`` → ``(B, C, H, W)``."""
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("layercam", "fullgrad")])
def test_swin_example(numpy_image: np.ndarray, swin: nn.Module, method: str) -> None:
    target_layers = [swin.layers[-1].blocks[-1].norm2]
    cam = METHODS[method](model=swin, target_layers=target_layers, reshape_transform=swin_reshape)
    _run(cam, _rgb(numpy_image, 32), False, False)


class ImageClassifier(nn.Module):
    """The example's wrapper: class probabilities from a Hugging Face-style vision model."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = ViTConfig(image_size=32, patch_size=8, num_register_tokens=0, num_labels=5)
        self.clip = HuggingFaceViT(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip(x).logits.softmax(dim=1)


@pytest.mark.parametrize("method", list(METHODS))
def test_clip_example(numpy_image: np.ndarray, method: str) -> None:
    model = ImageClassifier().eval()
    target_layers = [model.clip.dinov2.encoder.layer[-1].norm1]
    extra = {"ablation_layer": AblationLayerVit()} if method == "ablationcam" else {}
    cam = METHODS[method](
        model=model, target_layers=target_layers, reshape_transform=vit_reshape, **extra
    )
    _run(cam, _rgb(numpy_image, 32), False, False)
