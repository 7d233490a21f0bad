"""The work of ``camlens slide`` on one batch of tiles: explain, shrink to the canvas, record.

:class:`SlideSettings` is the run's identity in ``run.json`` (the job settings plus the slide,
its resolution and the tiling). :class:`TileBatch` is the job runner's processor: it explains
a batch of tiles with :func:`camlens.explain_segmentation` — every requested class and
method from one forward pass — and writes, per tile, atomically, ``tiles/<key>.npz``:

* ``maps``: ``(M, K, t, t)`` float32, the signed raw maps (logit units, never normalised)
  of the M ``(method, map)`` pairs for the K classes, resized to the tile's canvas footprint
  ``t = tile / downsample`` (bilinear, half-pixel centres — what ``raw_maps`` does);
* ``shares``: ``(C, t, t)`` float32, the share of each canvas pixel predicted as each of the
  model's C classes.

Its manifest entry holds the tile's position, the pixels it owns (its core) predicted as each
class, and per-tile measurements for the GeoJSON. Stitching reads these files afterwards
(:mod:`camlens.slide.stitch`), so a tile is either wholly recorded or run again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camlens.atomic import save_npz
from camlens.jobs.plan import Item
from camlens.jobs.settings import JobSettings, batch_inputs, explain_classes
from camlens.postprocess import upsample
from camlens.segmentation import SegmentationExplanation
from camlens.slide.stitch import map_label
from camlens.slide.tiling import Tile, TileGrid
from camlens.steps import model_dtype

__all__ = ["SlideSettings", "TileBatch", "map_keys"]


@dataclass(frozen=True, kw_only=True)
class SlideSettings(JobSettings):
    """What decides the outputs of a slide run (recorded in ``run.json``)."""

    command: ClassVar[str] = "slide"

    slide: str
    level: int
    scale: float
    mpp: float | None
    tile: int
    overlap: int
    downsample: int
    tissue: str
    min_tissue: float


def map_keys(
    result_map_names: dict[str, list[str]], methods: Sequence[str]
) -> list[tuple[str, str]]:
    """The ``(method, map)`` pairs in file order: methods as given, their maps in order."""
    return [(method, name) for method in methods for name in result_map_names[method]]


class TileBatch:
    """The runner's processor for slide tiles (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        settings: SlideSettings,
        grid: TileGrid,
        tiles: dict[str, Tile],
        out: Path,
        device: torch.device,
    ) -> None:
        self.model = model
        self.settings = settings
        self.grid = grid
        self.tiles = tiles
        self.out = Path(out)
        self.device = device
        self.dtype = model_dtype(model)

    def __call__(self, items: Sequence[Item], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        settings = self.settings
        (self.out / "tiles").mkdir(parents=True, exist_ok=True)
        inputs = batch_inputs(images, settings, self.device, self.dtype)
        result = explain_classes(self.model, inputs, settings)
        pairs = map_keys(result.map_names, result.methods)
        side = self.grid.tile // self.grid.downsample
        maps = torch.stack(
            [
                _resized(result.layer_maps[method][result.map_names[method].index(name)], side)
                for method, name in pairs
            ],
            dim=1,
        )
        shares = _class_shares(result, side)
        labels = _labels_at_input(result)
        entries = []
        for index, item in enumerate(items):
            tile = self.tiles[item.key]
            arrays = {"maps": maps[index].numpy(), "shares": shares[index].numpy()}
            save_npz(self.out / "tiles" / f"{item.key}.npz", arrays)
            entries.append(self._entry(item, tile, labels[index], arrays, pairs, result))
        return entries

    def _entry(
        self,
        item: Item,
        tile: Tile,
        labels: torch.Tensor,
        arrays: dict[str, np.ndarray],
        pairs: list[tuple[str, str]],
        result: SegmentationExplanation,
    ) -> dict[str, Any]:
        y0, y1, x0, x1 = self.grid.core(tile)
        core = labels[y0:y1, x0:x1]
        owned = torch.bincount(core.flatten(), minlength=result.outputs.shape[1]).tolist()
        step = self.grid.downsample
        cy0, cy1 = y0 // step, max(y0 // step + 1, -(-y1 // step))
        cx0, cx1 = x0 // step, max(x0 // step + 1, -(-x1 // step))
        measurements: dict[str, float | None] = {}
        pixels = max(1, core.numel())
        for k, class_id in enumerate(result.classes):
            name = result.class_label(k)
            measurements[f"{name}: predicted %"] = 100.0 * owned[class_id] / pixels
            for m, (method, map_name) in enumerate(pairs):
                values = arrays["maps"][m, k, cy0:cy1, cx0:cx1]
                label = map_label(method, map_name, pairs)
                measurements[f"{name}: {label} mean"] = _finite(values.mean())
                measurements[f"{name}: {label} max"] = _finite(values.max())
        return {
            "key": item.key,
            "index": item.index,
            "source": item.source,
            "status": "done",
            "tile": {"row": tile.row, "col": tile.col, "x": tile.x, "y": tile.y},
            "owned": owned,
            "maps": [[method, name] for method, name in pairs],
            "classes": list(result.classes),
            "measurements": measurements,
        }


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _resized(maps: torch.Tensor, side: int) -> torch.Tensor:
    """``(B, K, h, w)`` raw maps resized to ``side × side``, float32 on the CPU."""
    batch, classes = maps.shape[:2]
    flat = upsample(maps.detach().flatten(0, 1).float(), (side, side))
    return flat.reshape(batch, classes, side, side).cpu()


def _labels_at_input(result: SegmentationExplanation) -> torch.Tensor:
    """``(B, H, W)`` predicted labels at the input's size (nearest when the output differs)."""
    labels = result.predicted
    size = tuple(result.input_size[-2:])
    if tuple(labels.shape[-2:]) != size:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return labels.cpu()


def _class_shares(result: SegmentationExplanation, side: int) -> torch.Tensor:
    """``(B, C, side, side)``: the share of each canvas pixel predicted as each class."""
    labels = result.predicted.cpu()
    count = result.outputs.shape[1]
    one_hot = F.one_hot(labels, count).permute(0, 3, 1, 2).float()
    if tuple(one_hot.shape[-2:]) == (side, side):
        return one_hot
    return (
        F.adaptive_avg_pool2d(one_hot, side)
        if one_hot.shape[-1] >= side
        else F.interpolate(one_hot, size=(side, side), mode="nearest")
    )
