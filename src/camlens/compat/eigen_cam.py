"""``pytorch_grad_cam.eigen_cam`` → ``camlens.EigenCAM`` (the same class)."""

from camlens.familiar import EigenCAM

__all__ = ["EigenCAM"]
