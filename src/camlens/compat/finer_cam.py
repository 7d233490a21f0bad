"""``pytorch_grad_cam.finer_cam`` → camlens: Finer-CAM (Zhang et al., CVPR 2025), camlens's
own :class:`camlens.FinerCAM` over any familiar class."""

from __future__ import annotations

from camlens.familiar_more import FINER_COMPARISONS, FinerCAM

__all__ = ["DEFAULT_COMPARISON_CATEGORIES", "FinerCAM"]

#: The ranks (by closeness of score to the main class) of the classes compared with it.
DEFAULT_COMPARISON_CATEGORIES = FINER_COMPARISONS
