"""``pytorch_grad_cam.utils.reshape_transforms`` → camlens.

pytorch-grad-cam's reshape transforms (rarely needed: camlens reads a ViT's token layout
from the model).
"""

from camlens.reshape import (
    fasterrcnn_reshape_transform,
    swinT_reshape_transform,
    vit_reshape_transform,
)

__all__ = ["fasterrcnn_reshape_transform", "swinT_reshape_transform", "vit_reshape_transform"]
