"""``pytorch_grad_cam.refine_cam`` → camlens: RefineCAM, the product of per-layer CAMs
(:class:`camlens.wrappers.RefineCAM`)."""

from __future__ import annotations

from camlens.wrappers import RefineCAM

__all__ = ["RefineCAM"]
