"""Regions as GeoJSON: reading a user's annotations (QuPath exports) onto the thumbnail grid,
and writing masks and tiles back for QuPath to show.

Coordinates are level-0 pixels, x to the right and **y down**, as QuPath writes them; a
thumbnail pixel ``(row, column)`` covers ``[column·dx, (column+1)·dx] × [row·dy, (row+1)·dy]``
at ``downsample = (dx, dy)`` (level-0 pixels per thumbnail pixel; one number for both).

Conventions of what is written (:func:`mask_to_geojson`, :func:`tiles_to_geojson`):

* **Orientation**: rings follow RFC 7946 *as the numbers are written*: the shoelace area
  ``½ Σ (x_k y_{k+1} − x_{k+1} y_k)`` is positive for exterior rings (counter-clockwise in a
  y-up frame) and negative for holes, so generic GeoJSON tools see right-hand-rule rings.
  On screen, with y down, exteriors therefore run clockwise. Every ring is closed (its last
  position repeats its first) and starts at its top-left-most vertex.
* **Exact outlines**: rings follow pixel edges; only corners are kept.
* **Connectivity**: one Feature per 8-connected component, as :func:`camlens.slide.tissue.
  detect_tissue` counts them. Its geometry is one Polygon per 4-connected piece (a
  MultiPolygon when pieces touch only diagonally), so every polygon is valid in the
  OGC/JTS sense (simple rings, connected interior); rings of different pieces, and a hole
  and its exterior, may touch at single corners, which OGC allows.

Reading (:func:`read_regions`) keeps every Polygon and MultiPolygon (also inside a
GeometryCollection), whatever its classification; Points and LineStrings have no area and
are skipped. A thumbnail pixel is inside when its centre is inside (exterior minus holes,
even-odd per polygon, union over polygons), so a mask written by :func:`mask_to_geojson`
reads back exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camlens.atomic import json_text, write_text
from camlens.slide.tissue import RegionError, fill_polygon, label_components

__all__ = ["mask_to_geojson", "read_regions", "tiles_to_geojson", "write_geojson"]

Downsample = float | tuple[float, float]
_NO_AREA = {"Point", "MultiPoint", "LineString", "MultiLineString"}
#: Unit steps of the four edge directions: +x, +y, −x, −y.
_STEP_X = np.array([1, 0, -1, 0])
_STEP_Y = np.array([0, 1, 0, -1])


def _factors(downsample: Downsample) -> tuple[float, float]:
    """``(dx, dy)`` from one downsample or a pair; both finite and positive."""
    pair = (downsample, downsample) if np.isscalar(downsample) else tuple(downsample)
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in map(float, pair)):
        raise ValueError(f"`downsample` must be a positive number or (dx, dy); got {downsample!r}")
    return float(pair[0]), float(pair[1])


# --- reading -------------------------------------------------------------------------------


def _ring(ring: Any, where: str, name: str) -> np.ndarray:
    """One ring as an ``(n, 2)`` float array of distinct-ended positions, checked."""
    if not isinstance(ring, list) or len(ring) < 3:
        raise RegionError(f"{name}: {where} is not a list of at least 3 positions")
    for k, position in enumerate(ring):
        if not (
            isinstance(position, list)
            and len(position) in (2, 3)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in position)
        ):
            raise RegionError(f"{name}: {where}, position {k} is not [x, y]: {position!r:.60}")
    points = np.array([position[:2] for position in ring], dtype=np.float64)
    if not np.isfinite(points).all():
        raise RegionError(f"{name}: {where} has a coordinate that is not a finite number")
    if (points[0] == points[-1]).all():
        points = points[:-1]
    if len(points) < 3:
        raise RegionError(f"{name}: {where} has fewer than 3 distinct positions")
    return points


def _polygon(rings: Any, where: str, name: str) -> list[np.ndarray]:
    if not isinstance(rings, list) or not rings:
        raise RegionError(f"{name}: {where} has no rings (coordinates must be [[[x, y], ...]])")
    label = ["exterior ring"] + [f"hole {k}" for k in range(1, len(rings))]
    return [_ring(ring, f"{where}, {label[k]}", name) for k, ring in enumerate(rings)]


def _collect(obj: Any, where: str, name: str, polygons: list, skipped: list) -> None:
    """Append the polygons of a GeoJSON object (recursively) to ``polygons``."""
    if isinstance(obj, list):
        for k, item in enumerate(obj):
            _collect(item, f"feature {k}", name, polygons, skipped)
        return
    if not isinstance(obj, dict):
        raise RegionError(f"{name}: {where} is not a GeoJSON object: {obj!r:.60}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise RegionError(f"{name}: {where} is a FeatureCollection without a 'features' list")
        for k, feature in enumerate(features):
            _collect(feature, f"feature {k}", name, polygons, skipped)
    elif kind == "Feature":
        if "geometry" not in obj:
            raise RegionError(f"{name}: {where} is a Feature without a 'geometry'")
        if obj["geometry"] is None:
            skipped.append("empty geometry")
        else:
            _collect(obj["geometry"], where, name, polygons, skipped)
    elif kind == "GeometryCollection":
        geometries = obj.get("geometries")
        if not isinstance(geometries, list):
            raise RegionError(f"{name}: {where} is a GeometryCollection without 'geometries'")
        for k, geometry in enumerate(geometries):
            _collect(geometry, f"{where}, geometry {k}", name, polygons, skipped)
    elif kind == "Polygon":
        polygons.append(_polygon(obj.get("coordinates"), f"{where} (Polygon)", name))
    elif kind == "MultiPolygon":
        parts = obj.get("coordinates")
        if not isinstance(parts, list):
            raise RegionError(f"{name}: {where} is a MultiPolygon without a coordinates list")
        for k, rings in enumerate(parts):
            polygons.append(_polygon(rings, f"{where} (MultiPolygon part {k})", name))
    elif kind in _NO_AREA:
        skipped.append(kind)
    else:
        raise RegionError(f"{name}: {where} has an unknown GeoJSON type {kind!r}")


def read_regions(
    source: str | os.PathLike | Mapping | Sequence, shape: Sequence[int], downsample: Downsample
) -> np.ndarray:
    """Rasterise a GeoJSON file (or an already parsed object) onto the thumbnail grid.

    ``source``: a path, or a FeatureCollection, a Feature, a list of Features or a bare
    geometry. Every Polygon and MultiPolygon is a region (holes subtracted); Points and
    LineStrings are skipped. ``shape = (h, w)`` is the thumbnail's; ``downsample`` as in the
    module docstring. Returns a boolean ``(h, w)`` mask of the pixels whose centres are in a
    region. Raises :class:`~camlens.slide.tissue.RegionError` naming the file when it is not
    JSON, not GeoJSON, holds no polygon, or when its polygons cover no thumbnail pixel
    (coordinates outside the slide, e.g. micrometres instead of pixels).
    """
    dx, dy = _factors(downsample)
    height, width = (int(v) for v in shape)
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            obj = json.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as error:
            raise RegionError(f"{name}: cannot read the file ({error.strerror or error})") from None
        except UnicodeDecodeError:
            raise RegionError(f"{name}: not a text file (GeoJSON is UTF-8 JSON)") from None
        except json.JSONDecodeError as error:
            raise RegionError(
                f"{name}: not valid JSON ({error.msg}, line {error.lineno} column {error.colno})"
            ) from None
    else:
        name, obj = "GeoJSON object", source
    polygons: list[list[np.ndarray]] = []
    skipped: list[str] = []
    _collect(obj, "the top-level object", name, polygons, skipped)
    if not polygons:
        found = f" (found only {', '.join(sorted(set(skipped)))})" if skipped else ""
        raise RegionError(f"{name}: no Polygon or MultiPolygon to use as a region{found}")
    mask = np.zeros((height, width), dtype=bool)
    scale = np.array([dx, dy])
    for rings in polygons:
        fill_polygon([ring / scale for ring in rings], mask)
    if not mask.any():
        raise RegionError(
            f"{name}: the regions cover no pixel of the {width}×{height} thumbnail at "
            f"downsample {dx:g}×{dy:g} (outside the slide's {width * dx:.0f}×{height * dy:.0f} "
            "level-0 pixels, or smaller than one thumbnail pixel)"
        )
    return mask


# --- writing -------------------------------------------------------------------------------


def _boundary(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit edges between inside and outside pixels, inside on the left in a y-up frame.

    Returns start x, start y and direction (0: +x, 1: +y, 2: −x, 3: −y) of each edge.
    """
    padded = np.pad(mask, 1)
    inside = padded[1:-1, 1:-1]
    sides = (
        (inside & ~padded[:-2, 1:-1], 0, 0, 0),  # top edge: (c, r) → (c + 1, r)
        (inside & ~padded[1:-1, 2:], 1, 0, 1),  # right: (c + 1, r) → (c + 1, r + 1)
        (inside & ~padded[2:, 1:-1], 1, 1, 2),  # bottom: (c + 1, r + 1) → (c, r + 1)
        (inside & ~padded[1:-1, :-2], 0, 1, 3),  # left: (c, r + 1) → (c, r)
    )
    xs, ys, directions = [], [], []
    for side, shift_x, shift_y, direction in sides:
        rows, columns = np.nonzero(side)
        xs.append(columns + shift_x)
        ys.append(rows + shift_y)
        directions.append(np.full(len(rows), direction))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(directions)


def _rings(mask: np.ndarray) -> list[np.ndarray]:
    """Closed boundary walks of ``mask`` as ``(k, 2)`` integer corner arrays (not repeated).

    Each vertex has one edge in and one out, except where two inside pixels touch only
    diagonally: there the walk turns left, around the inside pixel's corner, so that
    diagonal neighbours end up in different walks (4-connected pieces).
    """
    width = mask.shape[1]
    x, y, direction = _boundary(mask)
    count = len(x)
    if count == 0:
        return []
    stride = width + 1
    start_key = (y * stride + x) * 4 + direction
    order = np.argsort(start_key, kind="stable")
    sorted_keys = start_key[order]
    end_vertex = (y + _STEP_Y[direction]) * stride + x + _STEP_X[direction]
    wanted = end_vertex * 4 + (direction + 1) % 4  # the left turn, taken at a saddle
    position = np.minimum(np.searchsorted(sorted_keys, wanted), count - 1)
    any_out = np.searchsorted(sorted_keys, end_vertex * 4)
    following = np.where(sorted_keys[position] == wanted, order[position], order[any_out])
    # Each walk is a cycle of `following`; name it by its smallest edge (pointer doubling),
    # then rank edges by their distance from that edge.
    cycle = np.arange(count)
    jump = following.copy()
    span = 1
    while span < count:
        cycle = np.minimum(cycle, cycle[jump])
        jump = jump[jump]
        span *= 2
    is_root = cycle == np.arange(count)
    pointer = np.where(is_root, np.arange(count), following)
    steps = (~is_root).astype(np.int64)  # steps from each edge on to its cycle's root
    while True:
        advanced = steps + steps[pointer]
        if np.array_equal(advanced, steps):
            break
        steps, pointer = advanced, pointer[pointer]
    length = np.bincount(cycle, minlength=count)[cycle]
    walk = np.lexsort(((length - steps) % length, cycle))
    corner = direction[following[walk]] != direction[walk]  # keep the ends of turning edges
    walk = walk[corner]
    corners = np.stack([x[walk] + _STEP_X[direction[walk]], y[walk] + _STEP_Y[direction[walk]]], 1)
    breaks = np.flatnonzero(np.diff(cycle[walk])) + 1
    return np.split(corners, breaks)


Loop = list[tuple[int, int]]


def _simple_loops(ring: Loop) -> list[Loop]:
    """Split a walk that passes a corner twice into loops that pass each corner once."""
    if len(set(ring)) == len(ring):
        return [ring]
    loops, stack, seen = [], [], {}
    for corner in ring:
        if corner in seen:
            at = seen[corner]
            loops.append(stack[at:])
            for passed in stack[at + 1 :]:
                del seen[passed]
            del stack[at + 1 :]
        else:
            seen[corner] = len(stack)
            stack.append(corner)
    loops.append(stack)
    return loops


def _twice_area(loop: Loop) -> int:
    following = loop[1:] + loop[:1]
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(loop, following, strict=True))


def _left_pixel(loop: Loop) -> tuple[int, int]:
    """``(row, column)`` of the inside pixel to the left of the loop's first edge."""
    (x0, y0), (x1, y1) = loop[0], loop[1]
    if y1 == y0:  # +x: the pixel below the edge; −x: the one above, to the left
        return (y0, x0) if x1 > x0 else (y0 - 1, x0 - 1)
    return (y0, x0 - 1) if y1 > y0 else (y0 - 1, x0)  # +y: left of it; −y: right of it


def _coordinates(loop: Loop, dx: float, dy: float) -> list[list[float]]:
    """A loop as a closed GeoJSON ring in level-0 pixels, from its top-left-most corner."""
    first = min(range(len(loop)), key=lambda k: (loop[k][1], loop[k][0]))
    loop = loop[first:] + loop[: first + 1]
    if dx.is_integer() and dy.is_integer():
        x_scale, y_scale = int(dx), int(dy)
        return [[x * x_scale, y * y_scale] for x, y in loop]
    return [[round(x * dx, 4), round(y * dy, 4)] for x, y in loop]


def mask_to_geojson(
    mask: np.ndarray,
    downsample: Downsample,
    *,
    name: str = "tissue",
    properties: Mapping[str, Any] | None = None,
) -> dict:
    """A FeatureCollection outlining the True pixels of a boolean ``(h, w)`` thumbnail mask.

    One Feature per 8-connected component, in the raster order of their first pixels, with
    ``properties = {"objectType": "annotation", "name": name, "classification": {"name":
    name}, **properties}`` (what QuPath reads as a classified annotation); geometry, ring
    orientation and coordinates as in the module docstring. An empty mask gives an empty
    FeatureCollection.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"`mask` must be (h, w), got shape {mask.shape}")
    dx, dy = _factors(downsample)
    pieces, _ = label_components(mask, connectivity=4)
    components, _ = label_components(mask, connectivity=8)
    exteriors: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for ring in _rings(mask):
        for loop in _simple_loops(list(map(tuple, ring.tolist()))):
            piece = int(pieces[_left_pixel(loop)])
            if _twice_area(loop) > 0:
                exteriors[piece] = loop
            else:
                holes.setdefault(piece, []).append(loop)
    by_component: dict[int, list[int]] = {}
    for piece in sorted(exteriors):
        row, column = _left_pixel(exteriors[piece])
        by_component.setdefault(int(components[row, column]), []).append(piece)
    features = []
    for component in sorted(by_component):
        polygons = []
        for piece in by_component[component]:
            inner = sorted(holes.get(piece, []), key=lambda loop: min((y, x) for x, y in loop))
            polygons.append([_coordinates(loop, dx, dy) for loop in [exteriors[piece], *inner]])
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        tags = {"objectType": "annotation", "name": name, "classification": {"name": name}}
        features.append(
            {"type": "Feature", "geometry": geometry, "properties": tags | dict(properties or {})}
        )
    return {"type": "FeatureCollection", "features": features}


def tiles_to_geojson(tiles: Sequence[Mapping[str, Any]], *, tile_class: str = "tile") -> dict:
    """A FeatureCollection with one rectangle per tile, for QuPath's measurement maps.

    Each tile is ``{"x", "y", "width", "height"}`` in level-0 pixels (integers) and an
    optional ``"measurements": {name: number}``. Each Feature has ``properties =
    {"objectType": "tile", "classification": {"name": tile_class}, "measurements": {...}}``;
    QuPath 0.4 and later read ``measurements`` as a name → number map. JSON has no NaN or
    infinity, so those measurements become ``null`` (QuPath shows them as missing values).
    """
    features = []
    for k, tile in enumerate(tiles):
        try:
            x, y, width, height = (tile[key] for key in ("x", "y", "width", "height"))
        except KeyError as error:
            raise ValueError(f"tile {k} has no {error.args[0]!r}") from None
        values = [x, y, width, height]
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"tile {k}: x, y, width and height must be integers; got {values}")
        x, y, width, height = (int(v) for v in values)
        if width <= 0 or height <= 0:
            raise ValueError(f"tile {k}: width and height must be positive; got {width}×{height}")
        measurements = {}
        for key, value in dict(tile.get("measurements") or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"tile {k}: measurement {key!r} is not a number: {value!r}")
            value = float(value)
            measurements[str(key)] = value if math.isfinite(value) else None
        ring = [[x, y], [x + width, y], [x + width, y + height], [x, y + height], [x, y]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "tile",
                    "classification": {"name": tile_class},
                    "measurements": measurements,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike, obj: Any) -> None:
    """Write a GeoJSON object to ``path`` atomically as compact UTF-8 JSON on one line (NaN
    and infinities as ``null``), with a final newline."""
    write_text(path, json_text(obj, indent=None) + "\n")
