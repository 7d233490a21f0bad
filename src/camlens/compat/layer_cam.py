"""``pytorch_grad_cam.layer_cam`` → ``camlens.LayerCAM`` (the same class)."""

from camlens.familiar import LayerCAM

__all__ = ["LayerCAM"]
