"""``pytorch_grad_cam.utils`` → camlens: the helpers under upstream's module paths
(``find_layers``, ``image``, ``model_targets``, ``reshape_transforms``,
``svd_on_activations``), and the two names upstream imports here."""

from camlens.compat.utils import model_targets, reshape_transforms
from camlens.compat.utils.image import deprocess_image
from camlens.compat.utils.svd_on_activations import get_2d_projection

__all__ = ["deprocess_image", "get_2d_projection", "model_targets", "reshape_transforms"]
