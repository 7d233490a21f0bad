"""``pytorch_grad_cam.activations_and_gradients`` → camlens: the recorder of target-layer
activations and gradients (its hooks exist only during a call)."""

from camlens.familiar_extension import ActivationsAndGradients

__all__ = ["ActivationsAndGradients"]
