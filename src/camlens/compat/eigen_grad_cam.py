"""``pytorch_grad_cam.eigen_grad_cam`` → ``camlens.EigenGradCAM`` (the same class)."""

from camlens.familiar import EigenGradCAM

__all__ = ["EigenGradCAM"]
