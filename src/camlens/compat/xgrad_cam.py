"""``pytorch_grad_cam.xgrad_cam`` → ``camlens.XGradCAM`` (the same class)."""

from camlens.familiar import XGradCAM

__all__ = ["XGradCAM"]
