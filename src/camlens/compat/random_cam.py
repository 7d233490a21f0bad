"""``pytorch_grad_cam.random_cam`` → ``camlens.RandomCAM`` (the same class)."""

from camlens.familiar import RandomCAM

__all__ = ["RandomCAM"]
