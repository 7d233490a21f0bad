"""``pytorch_grad_cam.fem`` → ``camlens.FEM`` (the same class)."""

from camlens.familiar import FEM

__all__ = ["FEM"]
