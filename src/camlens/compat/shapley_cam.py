"""``pytorch_grad_cam.shapley_cam`` → ``camlens.ShapleyCAM`` (the same class)."""

from camlens.familiar import ShapleyCAM

__all__ = ["ShapleyCAM"]
