"""The result of explaining a batch with one method and one target per image.

:class:`Explanation` is the ``K = 1``, one-method view of the engine's
:class:`~camlens.engine.BatchResult`; :class:`~camlens.segmentation.SegmentationExplanation`
is the ``K``-classes, several-methods view. Both read the same way: ``layer_maps`` are the
signed, unnormalised maps at the layers' resolution, ``maps`` the final maps in [0, 1],
``map_names[method]`` names the raw maps, and ``raw_maps(method=None, layer=None)``
upsamples one of them to the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from camlens.methods import get_method
from camlens.postprocess import upsample

__all__ = ["Explanation", "pick_layer"]


def pick_layer(names: Sequence[str], layer: int | str | None) -> int:
    """The index of ``layer`` (an index or a map name) among ``names``; ``None`` requires a
    single map (raw maps of different layers live on different scales and are never summed
    silently)."""
    if layer is None:
        if len(names) != 1:
            raise ValueError(f"{len(names)} raw maps: pass `layer=` to pick one of {list(names)}")
        return 0
    if isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"no raw map named {layer!r}; the maps are {list(names)}")
        return list(names).index(layer)
    if not -len(names) <= layer < len(names):
        raise IndexError(f"layer {layer} is out of range for {len(names)} raw map(s) {list(names)}")
    return layer


@dataclass
class Explanation:
    """What one call explained, as tensors on the model's device.

    Attributes:
        method: registry name of the method (``"hirescam"``).
        layer_names: the names of the raw maps: the target layers' dotted names, or the
            method's own map names for methods without target layers (FullGrad).
        layer_maps: one ``(B, *grid)`` tensor per target layer: the signed, unnormalised
            map (no ReLU, no scaling) at the layer's resolution.
        maps: ``(B, *input_spatial)`` final maps in [0, 1], what the familiar
            ``cam(...)`` call returns.
        scores: ``(B,)`` the target score of each image.
        outputs: the model output, as a detached score tensor (``[B, K]``,
            ``[B, K, *spatial]``, ...).
        targets: the target of each image (resolved defaults included).
        input_size: the spatial size of the input.
    """

    method: str
    layer_names: list[str]
    layer_maps: list[torch.Tensor]
    maps: torch.Tensor
    scores: torch.Tensor
    outputs: torch.Tensor
    targets: list[Any]
    input_size: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    @property
    def methods(self) -> list[str]:
        """``[method]``, as in the several-methods results."""
        return [self.method]

    @property
    def map_names(self) -> dict[str, list[str]]:
        """``{method: layer_names}``, as in the several-methods results."""
        return {self.method: list(self.layer_names)}

    def raw_maps(self, method: str | None = None, layer: int | str | None = None) -> torch.Tensor:
        """Signed, unnormalised maps upsampled to the input size, ``(B, *input_spatial)``.

        ``method`` may be omitted (or must name this explanation's method); ``layer`` (an
        index or a name of :attr:`layer_names`) may be omitted when there is one map.
        """
        if method is not None and get_method(method).name != self.method:
            raise ValueError(f"this explanation holds {self.method!r} maps, not {method!r}")
        index = pick_layer(self.layer_names, layer)
        return upsample(self.layer_maps[index], self.input_size)

    def numpy(self) -> np.ndarray:
        """The final maps as a float32 numpy array ``(B, *input_spatial)``."""
        return self.maps.detach().to("cpu", torch.float32).numpy()

    def to(self, device: torch.device | str) -> Explanation:
        """A copy with every tensor moved to ``device``."""

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, list):
                return [move(v) for v in value]
            return value

        return Explanation(**{k: move(v) for k, v in self.__dict__.items()})

    def summary(self) -> str:
        """One line per image: target, score and the peak's grid position per layer."""
        lines = []
        for index, target in enumerate(self.targets):
            peaks: Sequence[str] = [
                str(np.unravel_index(int(m[index].argmax()), tuple(m.shape[1:])))
                for m in self.layer_maps
            ]
            lines.append(
                f"[{index}] {target!r} score={float(self.scores[index]):.4g} "
                f"peak={', '.join(peaks)}"
            )
        return "\n".join(lines)
