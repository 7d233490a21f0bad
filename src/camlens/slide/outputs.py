"""The files a slide run leaves, written from the stitched canvases and the manifest.

In the slide's output folder:

* ``maps/*.npy`` and ``maps/prediction.npy`` — the stitched canvases (:mod:`camlens.slide.stitch`);
* ``heatmaps/<method>-c<id>-<class>.tiff`` — each canvas drawn blue–white–red on its fixed
  scale, as a tiled pyramidal TIFF with its resolution (µm/px) that OpenSlide and QuPath
  open; white where no tile was explained;
* ``tiles.geojson`` — one QuPath "tile" object per explained tile, in level-0 pixels, with
  per-class measurements (predicted share; each method's mean and max raw value), which
  QuPath shows as measurement maps; ``tissue.geojson`` — the region that was explained;
* ``viewer.html`` with ``viewer/`` — Deep Zoom tiles of the slide and of every heatmap and a
  zoomable page (vendored OpenSeadragon; works from ``file://``, no network);
* ``summary.json`` — the slide, the resolution, the tiling, the tiles done and skipped, per
  class its predicted area (analysis pixels owned by exactly one tile, and mm² when the
  resolution is known), and per map its display scale and the share of its positive mass
  inside the area predicted as its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camlens.atomic import write_json
from camlens.image import signed_heatmap
from camlens.slide.arrays import Colourised, NpyRows, SlideView
from camlens.slide.process import SlideSettings
from camlens.slide.source import Resolution, SlideSource
from camlens.slide.stitch import LIMIT_PERCENTILE, Stitched, StitchedMap
from camlens.slide.tiling import TileGrid

__all__ = ["SlideOutputs", "write_outputs"]

SCALE_NOTE = (
    "signed raw maps in logit units, stitched without per-tile normalisation; drawn on one "
    f"fixed scale ±limit per slide, class and method (limit = the {LIMIT_PERCENTILE}th "
    "percentile of |value| over the explained area)"
)


@dataclass
class SlideOutputs:
    """Where the outputs are, and what failed."""

    summary: dict[str, Any]
    viewer: Path | None
    failed: list[dict[str, Any]]


class _RGB:
    """A :class:`Colourised` canvas without its alpha (white where no tile)."""

    def __init__(self, colourised: Colourised) -> None:
        self.colourised = colourised
        self.shape = (*colourised.shape[:2], 3)
        self.dtype = colourised.dtype

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return self.colourised[key][..., :3]


def write_outputs(
    out: Path,
    slide: SlideSource,
    resolution: Resolution,
    grid: TileGrid,
    settings: SlideSettings,
    entries: Mapping[str, Mapping[str, Any]],
    stitched: Stitched,
    *,
    thumbnail: np.ndarray,
    mask: np.ndarray | None,
    thumb_downsample: tuple[float, float],
    viewer: bool,
    progress: bool,
) -> SlideOutputs:
    """Write everything listed in the module docstring; returns the summary."""
    from camlens.slide.geojson import mask_to_geojson, tiles_to_geojson, write_geojson
    from camlens.slide.pyramid import write_pyramidal_tiff

    done = [e for e in entries.values() if e.get("status") == "done"]
    failed = [
        {"tile": e["key"], "error": e.get("reason", "")}
        for e in entries.values()
        if e.get("status") != "done"
    ]
    names = settings.class_names or []
    canvas_mpp = resolution.mpp * grid.downsample if resolution.mpp else None
    heatmaps = out / "heatmaps"
    heatmaps.mkdir(exist_ok=True)
    for stitched_map in stitched.maps:
        colour = Colourised(NpyRows(stitched_map.path), stitched_map.limit)
        write_pyramidal_tiff(
            heatmaps / (stitched_map.path.stem + ".tiff"),
            _RGB(colour),
            mpp=canvas_mpp,
            description=_ascii(f"camlens heatmap: {_title(stitched_map)}"),
        )
    scale = resolution.scale
    width0, height0 = slide.dimensions
    tiles = []
    for entry in sorted(done, key=lambda e: e["index"]):
        x, y = entry["tile"]["x"] * scale, entry["tile"]["y"] * scale
        tiles.append(
            {
                "x": round(x),
                "y": round(y),
                "width": round(min(grid.tile * scale, width0 - x)),
                "height": round(min(grid.tile * scale, height0 - y)),
                "measurements": entry["measurements"],
            }
        )
    write_geojson(out / "tiles.geojson", tiles_to_geojson(tiles, tile_class="camlens tile"))
    region = mask if mask is not None else np.ones(thumbnail.shape[:2], dtype=bool)
    write_geojson(
        out / "tissue.geojson", mask_to_geojson(region, thumb_downsample, name="camlens region")
    )
    summary = _summary(slide, resolution, grid, settings, done, failed, stitched, names)
    page = _viewer(out, slide, resolution, grid, stitched, summary) if viewer else None
    summary["outputs"] = {
        "viewer": page.name if page else None,
        "heatmaps": "heatmaps/",
        "tiles": "tiles.geojson",
        "tissue": "tissue.geojson",
        "maps": "maps/",
    }
    write_json(out / "summary.json", summary)
    return SlideOutputs(summary, page, failed)


def _title(stitched_map: StitchedMap) -> str:
    return f"{stitched_map.class_name} — {stitched_map.label}"


def _summary(
    slide: SlideSource,
    resolution: Resolution,
    grid: TileGrid,
    settings: SlideSettings,
    done: list,
    failed: list,
    stitched: Stitched,
    names: list[str],
) -> dict[str, Any]:
    owned = np.zeros(len(names), dtype=np.int64)
    for entry in done:
        owned += np.asarray(entry["owned"], dtype=np.int64)
    total = int(owned.sum())
    pixel_mm2 = (resolution.mpp / 1000.0) ** 2 if resolution.mpp else None
    classes = [
        {
            "class_id": i,
            "class_name": name,
            "area_pixels": int(owned[i]),
            "area_mm2": round(float(owned[i]) * pixel_mm2, 6) if pixel_mm2 else None,
            "share_of_explained_area": float(owned[i]) / total if total else None,
        }
        for i, name in enumerate(names)
    ]
    maps = [
        {
            "class_id": m.class_id,
            "class_name": m.class_name,
            "method": m.method,
            "map": m.label,
            "file": f"maps/{m.path.name}",
            "heatmap": f"heatmaps/{m.path.stem}.tiff",
            "limit": m.limit,
            "max_abs": m.max_abs,
            "positive_mass_in_class": m.mass_in_class,
        }
        for m in stitched.maps
    ]
    return {
        "slide": {
            "path": str(slide.path),
            "backend": slide.backend,
            "dimensions": list(slide.dimensions),
            "levels": len(slide.levels),
            "mpp": slide.mpp,
        },
        "resolution": {
            "level": resolution.level,
            "scale": resolution.scale,
            "mpp": resolution.mpp,
            "size": list(resolution.size),
            "describe": resolution.describe(),
        },
        "tiling": {
            "tile": grid.tile,
            "overlap": grid.overlap,
            "downsample": grid.downsample,
            "rows": grid.rows,
            "cols": grid.cols,
            "canvas": list(stitched.canvas_size),
            "canvas_mpp": resolution.mpp * grid.downsample if resolution.mpp else None,
        },
        "model": settings.model,
        "layers": settings.layers,
        "methods": settings.methods,
        "tiles": {"planned": len(done) + len(failed), "done": len(done), "skipped": failed},
        "display_scale": SCALE_NOTE,
        "classes": classes,
        "maps": maps,
    }


def _viewer(
    out: Path,
    slide: SlideSource,
    resolution: Resolution,
    grid: TileGrid,
    stitched: Stitched,
    summary: dict[str, Any],
) -> Path:
    """Deep Zoom tiles of the slide (4× finer than the canvas, at most the analysis
    resolution) and of every heatmap, and the page."""
    from camlens.slide.deepzoom import write_deepzoom
    from camlens.slide.viewer import HeatmapLayer, write_viewer

    folder = out / "viewer"
    fine = max(1.0, grid.downsample / 4)
    slide_image = write_deepzoom(
        SlideView(slide, resolution.scale * fine), folder, "slide", fmt="jpeg"
    )
    stops = [_hex(c) for c in signed_heatmap(np.linspace(-1.0, 1.0, 11), limit=1.0)]
    layers = []
    for m in stitched.maps:
        image = write_deepzoom(Colourised(NpyRows(m.path), m.limit), folder, m.path.stem, fmt="png")
        layers.append(
            HeatmapLayer(m.class_name, m.label, image, m.limit, stops, note=_share_note(m))
        )
    stats = [
        {
            "class": c["class_name"],
            "area (mm²)": c["area_mm2"],
            "share of explained area": _percent(c["share_of_explained_area"]),
        }
        for c in summary["classes"]
    ]
    facts = {
        "slide": slide.path.name,
        "resolution": resolution.describe(),
        "tiles": f"{summary['tiles']['done']} of {summary['tiles']['planned']} "
        f"({grid.tile} px, overlap {grid.overlap})",
        "model": summary["model"],
        "layers": ", ".join(summary["layers"]),
        "scale": SCALE_NOTE,
    }
    return write_viewer(
        out,
        title=f"camlens — {slide.path.name}",
        slide=slide_image,
        layers=layers,
        stats=stats,
        facts=facts,
    )


def _ascii(text: str) -> str:
    """TIFF strings are 7-bit ASCII: other characters as escapes."""
    return text.replace("—", "-").encode("ascii", "backslashreplace").decode("ascii")


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _share_note(m: StitchedMap) -> str:
    share = m.mass_in_class
    where = "—" if share is None else f"{100 * share:.1f} %"
    return f"positive mass inside the area predicted as {m.class_name}: {where}"
