"""``pytorch_grad_cam.seg_eigen_cam`` → ``camlens.SegEigenCAM`` (the same class)."""

from camlens.familiar_more import SegEigenCAM

__all__ = ["SegEigenCAM"]
