"""``pytorch_grad_cam.fullgrad_cam`` → ``camlens.FullGrad`` (the same class)."""

from camlens.familiar import FullGrad

__all__ = ["FullGrad"]
