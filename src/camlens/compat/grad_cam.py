"""``pytorch_grad_cam.grad_cam`` → ``camlens.GradCAM`` (the same class)."""

from camlens.familiar import GradCAM

__all__ = ["GradCAM"]
