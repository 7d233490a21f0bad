"""``pytorch_grad_cam.kpca_cam`` → ``camlens.KPCA_CAM`` (the same class)."""

from camlens.familiar_more import KPCA_CAM

__all__ = ["KPCA_CAM"]
