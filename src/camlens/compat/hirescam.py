"""``pytorch_grad_cam.hirescam`` → ``camlens.HiResCAM`` (the same class)."""

from camlens.familiar import HiResCAM

__all__ = ["HiResCAM"]
