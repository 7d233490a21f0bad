"""``explain_slide``: one whole slide explained as a resumable job (under ``camlens slide``).

The steps, each checked before the next costs anything:

1. open the slide (:mod:`camlens.slide.source`), choose the analysis resolution (``mpp`` or
   ``level``), check the tiling (:func:`camlens.slide.tiling.check_geometry`);
2. find the tissue on a thumbnail (Otsu on saturation), or take the user's region (GeoJSON
   from QuPath, or a PNG mask), and plan the tiles with enough tissue under them;
3. claim the output folder (:class:`camlens.jobs.folder.RunFolder`: lock, ``run.json``,
   ``--resume`` / ``--overwrite``) and run the tiles through the job runner
   (:func:`camlens.jobs.runner.run_plan`): tiles are read ahead in threads while the model
   works, batched, explained (:class:`camlens.slide.process.TileBatch`), written atomically,
   recorded in the manifest — a killed run resumes where it stopped;
4. stitch the raw maps into canvases (:mod:`camlens.slide.stitch`) and write the outputs
   (:mod:`camlens.slide.outputs`): pyramidal TIFF heatmaps, GeoJSON, the viewer, summary.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from camlens.engine import plan_methods
from camlens.image.preprocess import IMAGENET_MEAN, IMAGENET_STD
from camlens.jobs.folder import RunFolder
from camlens.jobs.plan import Batch, Item, Plan
from camlens.jobs.runner import RunCounts, run_plan
from camlens.slide.outputs import SlideOutputs, write_outputs
from camlens.slide.process import SlideSettings, TileBatch
from camlens.slide.source import (
    SlideError,
    SlideSource,
    choose_resolution,
    open_slide,
    read_analysis,
)
from camlens.slide.stitch import stitch
from camlens.slide.tiling import TileGrid, check_geometry, plan_tiles
from camlens.steps import model_device

__all__ = ["SlideResult", "explain_slide", "tissue_mask"]

#: Longer side of the thumbnail tissue is found on.
THUMBNAIL_SIDE = 2048


@dataclass
class SlideResult:
    """What a slide run did and where its outputs are."""

    out: Path
    counts: RunCounts
    tiles: int
    outputs: SlideOutputs | None

    @property
    def complete(self) -> bool:
        return self.outputs is not None and not self.outputs.failed


def tissue_mask(
    slide: SlideSource, tissue: str | Path
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """``(thumbnail, mask or None, downsample)`` for ``tissue``: ``"auto"`` (detected),
    ``"none"`` (the whole slide), or a GeoJSON / PNG file of the region to explain."""
    from camlens.slide.geojson import read_regions
    from camlens.slide.tissue import detect_tissue, mask_from_png

    thumbnail, downsample = slide.thumbnail(THUMBNAIL_SIDE)
    spec = str(tissue)
    if spec == "none":
        return thumbnail, None, downsample
    if spec == "auto":
        return thumbnail, detect_tissue(thumbnail), downsample
    path = Path(spec)
    if path.suffix.lower() in (".geojson", ".json"):
        return thumbnail, read_regions(path, thumbnail.shape[:2], downsample), downsample
    return thumbnail, mask_from_png(path, thumbnail.shape[:2]), downsample


def explain_slide(
    slide: str | Path,
    model: nn.Module,
    out: str | Path,
    *,
    layers: str | Sequence[str],
    methods: Sequence[str] = ("hirescam", "gradcam"),
    classes: str | Sequence[int] = "all",
    class_names: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    mpp: float | None = None,
    level: int | None = None,
    slide_mpp: float | None = None,
    tile: int = 1024,
    overlap: int = 64,
    downsample: int = 8,
    batch_size: int = 4,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    tissue: str | Path = "auto",
    min_tissue: float = 0.05,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    viewer: bool = True,
    model_name: str | None = None,
    weights: str | None = None,
    cluster: Any = None,
) -> SlideResult:
    """Explain a segmenter on a whole slide, tile by tile, and stitch slide-level heatmaps.

    Args:
        slide: the slide file (anything OpenSlide reads; a plain TIFF or image too).
        model: a segmenter returning ``(B, C, H, W)`` logits; borrowed, returned as it was.
        out: the output folder (one slide per folder; see :mod:`camlens.slide.outputs`).
        layers, methods, options: as for :func:`camlens.explain_segmentation`.
        classes: ``"all"`` or class ids; every tile explains the same classes.
        class_names: names of all the model's classes (default ``class 0``, ...).
        mpp / level: the analysis resolution (µm/px, read from the closest finer level and
            resized; or a level as is). A slide without MPP metadata needs ``level`` or a
            declared ``slide_mpp``.
        tile, overlap, downsample: tile side and overlap in analysis pixels; the canvas is
            ``downsample`` times coarser (tile and overlap must be multiples of it).
        tissue: ``"auto"``, ``"none"`` or a GeoJSON / PNG region; tiles with less than
            ``min_tissue`` of it are not explained.
        resume / overwrite: continue a run in ``out`` / clear it first.
        model_name, weights: the ``--model`` factory (``pkg.module:function`` or
            ``file.py:function``) and weights file the model came from: recorded in
            ``run.json``, and what Ray workers build their model from.
        cluster: a started :class:`camlens.distributed.Cluster`: the tiles are explained by
            its workers (``camlens[ray]``; ``model_name`` must then be a factory).
    """
    if classes == "present":
        raise SlideError(
            "classes='present' differs from tile to tile; a slide needs 'all' or class ids"
        )
    out = Path(out)
    calls = plan_methods(list(methods), options)  # unknown methods, bad options: now
    methods = [call.name for call in calls]
    nested = {call.name: dict(call.options) for call in calls if call.options}
    try:
        check_geometry(tile, overlap, downsample)
    except ValueError as error:
        raise SlideError(str(error)) from None
    source = open_slide(slide, mpp=slide_mpp)
    with source:
        resolution = choose_resolution(source, mpp=mpp, level=level)
        thumbnail, mask, thumb_downsample = tissue_mask(source, tissue)
        grid = TileGrid(*resolution.size, tile, overlap, downsample)
        tiles = plan_tiles(grid, mask, min_tissue=min_tissue)
        device = model_device(model)
        with torch.no_grad():
            count = int(_class_count(model, tile, device))
        names = (
            list(class_names) if class_names is not None else [f"class {i}" for i in range(count)]
        )
        if len(names) != count:
            raise SlideError(f"{len(names)} class names for a model with {count} classes")
        settings = SlideSettings(
            model=model_name or type(model).__name__,
            weights=weights,
            layers=[layers] if isinstance(layers, str) else list(layers),
            methods=methods,
            options=nested,
            task="seg",
            classes=classes if classes == "all" else list(classes),
            class_names=names,
            mean=tuple(mean),
            std=tuple(std),
            size=(tile, tile),
            batch_size=batch_size,
            shards=1,
            slide=str(Path(slide).resolve()),
            level=resolution.level,
            scale=resolution.scale,
            mpp=resolution.mpp,
            tile=tile,
            overlap=overlap,
            downsample=downsample,
            tissue=str(tissue),
            min_tissue=min_tissue,
        )
        folder = RunFolder(out)
        folder.check_writable()
        with folder:
            folder.claim(
                settings.identity() | {"tiles": len(tiles)}, resume=resume, overwrite=overwrite
            )
            folder.remove_stale_partials()
            by_key = {t.key: t for t in tiles}
            items = [Item(t.index, Path(slide), t.key) for t in tiles]
            plan = Plan(
                [
                    Batch(tuple(items[i : i + batch_size]), (tile, tile))
                    for i in range(0, len(items), batch_size)
                ],
                total_items=len(items),
                sizes={(tile, tile): len(items)},
            )
            process = TileBatch(model, settings, grid, by_key, out, device)
            execute, engine = run_plan, None
            if cluster is not None:
                engine = _ray_engine(cluster, settings, slide, slide_mpp, resolution, grid,
                                     tiles, out, model_name, weights)  # fmt: skip
                execute = engine.run
            done = folder.entries() if resume else {}
            with tqdm(
                total=len(items),
                desc=f"slide {Path(slide).name}",
                unit="tile",
                disable=not progress,
                file=sys.stderr,
            ) as bar:
                counts = execute(
                    plan,
                    folder,
                    process,
                    read=lambda item: read_analysis(
                        source, resolution, by_key[item.key].x, by_key[item.key].y, tile
                    ),
                    done=done,
                    progress=bar,
                )
            if engine is not None:
                folder.remove_stale_partials()  # what a killed worker left
                if engine.error is not None:
                    raise SlideError(f"the Ray run stopped early: {engine.error}; rerun with "
                                     "--resume to continue")  # fmt: skip
            entries = folder.entries()
            if not any(e.get("status") == "done" for e in entries.values()):
                return SlideResult(out, counts, len(tiles), None)
            stitched = stitch(out, grid, entries, class_names=names)
            outputs = write_outputs(
                out,
                source,
                resolution,
                grid,
                settings,
                entries,
                stitched,
                thumbnail=thumbnail,
                mask=mask,
                thumb_downsample=thumb_downsample,
                viewer=viewer,
                progress=progress,
            )
    return SlideResult(out, counts, len(tiles), outputs)


def _ray_engine(cluster: Any, settings: SlideSettings, slide: str | Path, slide_mpp: float | None,
                resolution: Any, grid: TileGrid, tiles: list, out: Path,
                model_name: str | None, weights: str | None) -> Any:  # fmt: skip
    """A Ray engine whose workers explain this slide's tiles (see :mod:`.distributed`)."""
    from camlens.distributed import RayEngine
    from camlens.distributed.worker import portable_model_spec
    from camlens.slide.distributed import SlideWorkerSpec

    if model_name is None or ":" not in model_name:
        raise SlideError("Ray workers build the model from its factory: pass model_name="
                         "'pkg.module:function' (camlens slide --model does)")  # fmt: skip
    spec = SlideWorkerSpec(
        settings=settings, out=str(Path(out).resolve()), model=portable_model_spec(model_name),
        weights=str(Path(weights).resolve()) if weights else None,
        slide=str(Path(slide).resolve()), slide_mpp=slide_mpp, resolution=resolution,
        grid=grid, tiles=tuple(tiles),
    )  # fmt: skip
    engine = RayEngine(cluster, spec, cluster.options)
    engine.plan_workers()  # too few GPUs: refused before any tile
    return engine


def _class_count(model: nn.Module, tile: int, device: torch.device) -> int:
    """The model's number of classes, from one forward pass of zeros at the tile size."""
    from camlens.capture import borrowed
    from camlens.outputs import as_score_tensor
    from camlens.steps import model_dtype

    zeros = torch.zeros(1, 3, tile, tile, device=device, dtype=model_dtype(model))
    with borrowed(model):
        scores = as_score_tensor(model(zeros))
    if scores.dim() != 4:
        raise SlideError(
            "a slide needs a segmenter's (B, C, H, W) logits; the model returns "
            f"{tuple(scores.shape)}"
        )
    return scores.shape[1]
