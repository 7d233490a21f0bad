"""A slide's tiles on a Ray cluster: what each worker needs to explain them.

:class:`SlideWorkerSpec` is the slide's counterpart of
:class:`camlens.distributed.WorkerSpec`: each Ray worker builds the model once from the
``--model`` factory and weights, opens the slide itself, reads its tiles at the run's
resolution and explains them with :class:`camlens.slide.process.TileBatch` — the local run's
code — writing the tile files into the shared output folder. The driver keeps the manifest
and stitches once every tile is recorded (:func:`camlens.slide.run.explain_slide`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camlens.jobs.plan import Item
from camlens.jobs.runner import Processor
from camlens.slide.process import SlideSettings, TileBatch
from camlens.slide.source import Resolution, open_slide, read_analysis
from camlens.slide.tiling import Tile, TileGrid

__all__ = ["SlideWorkerSpec"]


@dataclass(frozen=True)
class SlideWorkerSpec:
    """What every worker of a slide run needs (sent to each actor once)."""

    settings: SlideSettings
    out: str  # absolute
    model: str  # the --model factory, made portable
    weights: str | None
    slide: str  # absolute
    slide_mpp: float | None
    resolution: Resolution
    grid: TileGrid
    tiles: tuple[Tile, ...]
    threads: int = 1
    gpu: bool = False

    def processor(self, model: torch.nn.Module, device: torch.device) -> Processor:
        """The local run's tile processor."""
        tiles = {tile.key: tile for tile in self.tiles}
        return TileBatch(model, self.settings, self.grid, tiles, Path(self.out), device)

    def reader(self) -> Callable[[Item], np.ndarray]:
        """Reads a tile from this worker's own handle on the slide."""
        source = open_slide(self.slide, mpp=self.slide_mpp)
        tiles = {tile.key: tile for tile in self.tiles}
        side = self.grid.tile

        def read(item: Item) -> np.ndarray:
            tile = tiles[item.key]
            return read_analysis(source, self.resolution, tile.x, tile.y, side)

        return read
