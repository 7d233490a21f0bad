"""``pytorch_grad_cam.ablation_cam_multilayer`` → camlens.

Upstream's experimental module: an ``AblationCAM`` for several target layers and a wrapper
``AblationLayer(layer, reshape_transform, indices)`` that it swaps into the model. camlens's
:class:`~camlens.compat.AblationCAM` takes several target layers (one map each, averaged),
so it is that class here; the wrapper cannot exist honestly (camlens never swaps modules)
and raises, naming the alternative.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from camlens.compat.ablation_cam import AblationCAM
from camlens.compat.utils.find_layers import replace_layer_recursive
from camlens.errors import CamlensError

__all__ = ["AblationCAM", "AblationLayer", "replace_layer_recursive"]


class AblationLayer(nn.Module):
    """Upstream's module-swapping ablation wrapper: not supported (raises)."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise CamlensError(
            "ablation_cam_multilayer.AblationLayer wraps and swaps your layer; camlens never "
            "swaps modules. Use camlens.compat.AblationCAM(model, target_layers=[...]) with "
            "several layers."
        )
