"""``pytorch_grad_cam.grad_cam_elementwise`` → ``camlens.GradCAMElementWise`` (the same class)."""

from camlens.familiar import GradCAMElementWise

__all__ = ["GradCAMElementWise"]
