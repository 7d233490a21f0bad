"""The result of explaining a batch: raw layer maps, final maps, scores and outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from camlens.postprocess import upsample

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """What one call explained, as tensors on the model's device.

    Attributes:
        method: registry name of the method (``"hirescam"``).
        layer_names: dotted names of the target layers.
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

    def raw_maps(self, layer: int | None = None) -> torch.Tensor:
        """Signed, unnormalised maps upsampled to the input size, ``(B, *input_spatial)``.

        ``layer=None`` requires a single target layer (raw maps of different layers live on
        different scales and are not summed silently).
        """
        if layer is None:
            if len(self.layer_maps) != 1:
                raise ValueError(
                    f"{len(self.layer_maps)} target layers: pass `layer=` to pick one of "
                    f"{self.layer_names}"
                )
            layer = 0
        return upsample(self.layer_maps[layer], self.input_size)

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
