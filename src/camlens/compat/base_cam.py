"""``pytorch_grad_cam.base_cam`` → camlens.

pytorch-grad-cam's base class; a subclass that overrides ``get_cam_weights`` or
``get_cam_image`` runs through camlens's pipeline (:mod:`camlens.familiar_extension`).
"""

from camlens.familiar import BaseCAM

__all__ = ["BaseCAM"]
