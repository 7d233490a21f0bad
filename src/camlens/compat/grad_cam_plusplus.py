"""``pytorch_grad_cam.grad_cam_plusplus`` → ``camlens.GradCAMPlusPlus`` (the same class)."""

from camlens.familiar import GradCAMPlusPlus

__all__ = ["GradCAMPlusPlus"]
