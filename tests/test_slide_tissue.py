"""Tissue detection on a thumbnail, user masks (GeoJSON, PNG) and GeoJSON output: values."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.errors import CamlensError, ImageLoadError
from camlens.masks import connected_components
from camlens.slide.geojson import mask_to_geojson, read_regions, tiles_to_geojson, write_geojson
from camlens.slide.tissue import (
    RegionError,
    detect_tissue,
    label_components,
    mask_from_png,
    otsu_threshold,
)

PINK = (220, 140, 190)
GLASS = (214, 214, 218)  # slightly tinted glass, below `background_max`


def _twice_area(ring: list) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))


def _polygons(feature: dict) -> list:
    geometry = feature["geometry"]
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def _check_rings(collection: dict) -> None:
    """Every ring closed and simple; exteriors positive (shoelace), holes negative."""
    for feature in collection["features"]:
        for polygon in _polygons(feature):
            for k, ring in enumerate(polygon):
                assert ring[0] == ring[-1]
                assert len({tuple(p) for p in ring[:-1]}) == len(ring) - 1
                assert (_twice_area(ring) > 0) == (k == 0)


# --- Otsu ----------------------------------------------------------------------------------


def test_otsu_hand_computed() -> None:
    # Cuts after 0–1: σ² = ½·½·(0 − 5)² = 6.25; after 2–7: ¾·¼·(⅔ − 8)² ≈ 10.08 (the best,
    # a tie over empty bins 3–7): the middle of cuts 2..7 lies between values 4 and 5.
    assert otsu_threshold(np.array([0, 0, 2, 8], dtype=np.uint8)) == 5.0
    assert otsu_threshold(np.array([10] * 50 + [200] * 50, dtype=np.uint8)) == 105.0
    assert otsu_threshold(np.array([0.1] * 50 + [0.9] * 50)) == 0.5
    assert otsu_threshold(np.full(7, 42, dtype=np.uint8)) == 42.0


def test_otsu_bimodal_sample() -> None:
    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.normal(60, 10, 4000), rng.normal(180, 15, 6000)])
    threshold = otsu_threshold(np.clip(sample, 0, 255).astype(np.uint8))
    assert 100 < threshold < 140
    assert 100 / 255 < otsu_threshold(np.clip(sample / 255, 0, 1)) < 140 / 255


def test_otsu_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="0–255"):
        otsu_threshold(np.array([-1, 300]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        otsu_threshold(np.array([0.5, 1.5]))


# --- components and detection --------------------------------------------------------------


def test_labels_match_the_torch_labeller() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        mask = rng.random(tuple(rng.integers(1, 40, 2))) < rng.random()
        labels, count = label_components(mask)
        reference = connected_components(torch.from_numpy(mask)).numpy()
        pairs = set(zip(labels[mask].tolist(), reference[mask].tolist(), strict=True))
        assert count == len(pairs) == len(np.unique(reference[mask]))
        assert ((labels > 0) == mask).all()


def test_four_connectivity_separates_diagonals() -> None:
    mask = np.eye(4, dtype=bool)
    assert label_components(mask, connectivity=8)[1] == 1
    labels, count = label_components(mask, connectivity=4)
    assert count == 4 and labels[np.eye(4, dtype=bool)].tolist() == [1, 2, 3, 4]


def _synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A thumbnail of pink blobs on glass; the expected mask with and without its hole."""
    rng = np.random.default_rng(2)
    rows, columns = np.mgrid[:120, :160]
    disc = (rows - 50) ** 2 + (columns - 50) ** 2 < 30**2
    hole = (rows - 50) ** 2 + (columns - 50) ** 2 < 8**2
    box = (rows >= 70) & (rows < 110) & (columns >= 100) & (columns < 150)
    thumbnail = np.empty((120, 160, 3), dtype=np.uint8)
    thumbnail[:] = GLASS
    tissue = (disc & ~hole) | box
    thumbnail[tissue] = PINK
    for row, column in [(5, 120), (100, 20), (10, 10)]:  # specks of 2 × 2 pixels
        thumbnail[row : row + 2, column : column + 2] = PINK
    thumbnail[20:40, 120:150] = (12, 6, 9)  # black: the edge of the scanned area
    noise = rng.integers(-3, 4, thumbnail.shape)
    thumbnail = np.clip(thumbnail.astype(int) + noise, 0, 255).astype(np.uint8)
    return thumbnail, tissue, disc | box


def test_detect_tissue_exact_without_smoothing() -> None:
    thumbnail, with_hole, filled = _synthetic()
    mask = detect_tissue(thumbnail, smooth=1, min_area=20)
    assert mask.dtype == np.bool_ and (mask == filled).all()
    kept = detect_tissue(thumbnail, smooth=1, min_area=20, fill_holes=False)
    assert (kept == with_hole).all()
    specks = detect_tissue(thumbnail, smooth=1, min_area=1, fill_holes=False)
    assert specks.sum() == with_hole.sum() + 3 * 4


def test_detect_tissue_default_smoothing_and_threshold() -> None:
    thumbnail, _, filled = _synthetic()
    mask = detect_tissue(thumbnail, min_area=20)
    assert (mask & filled).sum() / (mask | filled).sum() > 0.98
    assert not detect_tissue(thumbnail, threshold=0.9).any()  # the user's threshold wins


def test_blank_slides_have_no_tissue() -> None:
    white = np.full((64, 80, 3), 245, dtype=np.uint8)
    assert not detect_tissue(white).any()
    rng = np.random.default_rng(3)
    glass = np.clip(np.array(GLASS) + rng.integers(-4, 5, (64, 80, 3)), 0, 255).astype(np.uint8)
    assert not detect_tissue(glass).any()  # Otsu splits noise; the floor keeps it out
    assert not detect_tissue(np.zeros((10, 10, 3), dtype=np.uint8)).any()


def test_detect_tissue_is_fast_on_a_large_thumbnail() -> None:
    rows, columns = np.mgrid[:2000, :2000]
    thumbnail = np.full((2000, 2000, 3), 236, dtype=np.uint8)
    thumbnail[(rows - 900) ** 2 + (columns - 1100) ** 2 < 600**2] = PINK
    start = time.perf_counter()
    mask = detect_tissue(thumbnail)
    assert time.perf_counter() - start < 5.0  # about 0.2 s on two idle cores
    assert mask.sum() == pytest.approx(math.pi * 600**2, rel=0.01)


# --- GeoJSON out and back ------------------------------------------------------------------


def _tricky_mask() -> np.ndarray:
    mask = np.zeros((12, 14), dtype=bool)
    mask[1:8, 1:8] = True
    mask[2:7, 2:7] = False  # a hole ...
    mask[4, 4] = True  # ... with a component inside it
    mask[3, 3] = True  # touching that one diagonally
    mask[9, 10] = mask[10, 11] = mask[9, 12] = True  # diagonal neighbours
    mask[0, 13] = mask[11, 0] = mask[11, 13] = True  # single pixels on the edges
    mask[8, 8] = True  # touches the ring's corner diagonally
    return mask


@pytest.mark.parametrize("downsample", [1, 4, (2.5, 3.0), 7.3])
def test_mask_round_trip(downsample: float | tuple[float, float], tmp_path: Path) -> None:
    mask = _tricky_mask()
    collection = mask_to_geojson(mask, downsample)
    _check_rings(collection)
    path = tmp_path / "tissue.geojson"
    write_geojson(path, collection)
    assert (read_regions(path, mask.shape, downsample) == mask).all()
    # 8-connected: the ring with its diagonal neighbour at (8, 8), the pixel inside the hole
    # with the one touching it, the three diagonal pixels, and three single pixels.
    assert len(collection["features"]) == 6


def test_random_masks_round_trip() -> None:
    rng = np.random.default_rng(4)
    for _ in range(60):
        mask = rng.random(tuple(rng.integers(1, 24, 2))) < rng.random()
        if not mask.any():
            assert mask_to_geojson(mask, 2) == {"type": "FeatureCollection", "features": []}
            continue
        collection = json.loads(json.dumps(mask_to_geojson(mask, (3, 2))))
        _check_rings(collection)
        assert (read_regions(collection, mask.shape, (3, 2)) == mask).all()
        assert len(collection["features"]) == label_components(mask)[1]


def test_mask_to_geojson_coordinates() -> None:
    mask = np.zeros((5, 6), dtype=bool)
    mask[2, 3] = True
    (feature,) = mask_to_geojson(mask, 4, name="roi", properties={"isLocked": True})["features"]
    assert feature["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[12, 8], [16, 8], [16, 12], [12, 12], [12, 8]]],
    }
    assert feature["properties"] == {
        "objectType": "annotation",
        "name": "roi",
        "classification": {"name": "roi"},
        "isLocked": True,
    }
    ring = np.ones((3, 3), dtype=bool)
    ring[1, 1] = False
    (feature,) = mask_to_geojson(ring, 1)["features"]
    assert feature["geometry"]["coordinates"] == [
        [[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]],
        [[1, 1], [1, 2], [2, 2], [2, 1], [1, 1]],
    ]
    (feature,) = mask_to_geojson(np.eye(2, dtype=bool), (2, 3))["features"]
    assert feature["geometry"] == {
        "type": "MultiPolygon",
        "coordinates": [
            [[[0, 0], [2, 0], [2, 3], [0, 3], [0, 0]]],
            [[[2, 3], [4, 3], [4, 6], [2, 6], [2, 3]]],
        ],
    }
    (feature,) = mask_to_geojson(np.ones((1, 3), dtype=bool), 2.5)["features"]
    assert feature["geometry"]["coordinates"] == [[[0, 0], [7.5, 0], [7.5, 2.5], [0, 2.5], [0, 0]]]


# --- reading GeoJSON -----------------------------------------------------------------------


def test_read_regions_pixel_centres_and_forms() -> None:
    rectangle = [[2.2, 1.0], [5.7, 1.0], [5.7, 3.0], [2.2, 3.0], [2.2, 1.0]]
    expected = np.zeros((5, 8), dtype=bool)
    expected[1:3, 2:6] = True
    polygon = {"type": "Polygon", "coordinates": [rectangle]}
    feature = {"type": "Feature", "geometry": polygon, "properties": {}}
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}}
    forms = [
        polygon,
        feature,
        [feature, point],
        {"type": "FeatureCollection", "features": [point, feature]},
        {"type": "GeometryCollection", "geometries": [polygon]},
        {"type": "MultiPolygon", "coordinates": [[rectangle]]},
    ]
    for form in forms:
        assert (read_regions(form, (5, 8), 1) == expected).all()
    doubled = [[2 * x, 2 * y] for x, y in rectangle]
    assert (
        read_regions({"type": "Polygon", "coordinates": [doubled]}, (5, 8), 2) == expected
    ).all()


def test_read_regions_overlaps_and_holes() -> None:
    square = [[0, 0], [8, 0], [8, 8], [0, 8], [0, 0]]
    hole = [[2, 2], [2, 6], [6, 6], [6, 2], [2, 2]]
    inside = [[3, 3], [5, 3], [5, 5], [3, 5], [3, 3]]
    collection = {
        "type": "MultiPolygon",
        "coordinates": [[square, hole], [inside], [[[0, 0], [4, 0], [4, 4], [0, 4]]]],
    }
    mask = read_regions(collection, (8, 8), 1)
    expected = np.ones((8, 8), dtype=bool)
    expected[2:6, 2:6] = False
    expected[3:5, 3:5] = True
    expected[:4, :4] = True  # an overlapping polygon is a union, not a toggle
    assert (mask == expected).all()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regions.geojson"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "FeatureCollection"}', "without a 'features' list"),
        ('{"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [1, 1]]]}', "position 1"),
        ('{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}', "fewer than 3"),
        ('{"type": "Polygon", "coordinates": []}', "no rings"),
        ('{"type": "Circle", "coordinates": [0, 0]}', "unknown GeoJSON type 'Circle'"),
        ('{"type": "Feature", "properties": {}}', "without a 'geometry'"),
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}]', "Point"),
        ('{"type": "Polygon", "coordinates": [[[1e6, 0], [2e6, 0], [2e6, 9e5]]]}', "no pixel"),
        ("[3]", "not a GeoJSON object"),
    ],
)
def test_malformed_geojson(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RegionError, match=problem) as caught:
        read_regions(path, (10, 10), 4)
    assert isinstance(caught.value, CamlensError) and str(caught.value).startswith(str(path))


def test_missing_geojson_file(tmp_path: Path) -> None:
    with pytest.raises(CamlensError, match=r"missing\.geojson: cannot read"):
        read_regions(tmp_path / "missing.geojson", (4, 4), 1)


# --- tiles ---------------------------------------------------------------------------------


def test_tiles_to_geojson(tmp_path: Path) -> None:
    tiles = [
        {"x": 0, "y": 512, "width": 256, "height": 128, "measurements": {"cam": 0.25, "n": 3}},
        {"x": np.int64(256), "y": 0, "width": 256, "height": 256, "measurements": {}},
        {"x": 0, "y": 0, "width": 1, "height": 1, "measurements": {"a": math.nan, "b": -math.inf}},
    ]
    collection = tiles_to_geojson(tiles, tile_class="cam tile")
    first = collection["features"][0]
    assert first["geometry"]["coordinates"] == [
        [[0, 512], [256, 512], [256, 640], [0, 640], [0, 512]]
    ]
    assert first["properties"] == {
        "objectType": "tile",
        "classification": {"name": "cam tile"},
        "measurements": {"cam": 0.25, "n": 3.0},
    }
    assert collection["features"][2]["properties"]["measurements"] == {"a": None, "b": None}
    _check_rings(collection)
    path = tmp_path / "tiles.geojson"
    write_geojson(path, collection)
    text = path.read_text()
    assert text.count("\n") == 1
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == json.loads(
        json.dumps(collection)
    )
    with pytest.raises(ValueError, match="tile 0 has no 'height'"):
        tiles_to_geojson([{"x": 0, "y": 0, "width": 1}])
    with pytest.raises(ValueError, match="not a number"):
        tiles_to_geojson([{"x": 0, "y": 0, "width": 1, "height": 1, "measurements": {"a": "b"}}])


# --- PNG masks -----------------------------------------------------------------------------


def test_mask_from_png_modes_and_resize(tmp_path: Path) -> None:
    drawn = np.zeros((40, 60), dtype=bool)
    drawn[10:30, 6:30] = True
    expected = drawn[::2, ::2]  # a 20 × 30 thumbnail: nearest neighbour at pixel centres
    grey = (drawn * 255).astype(np.uint8)
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white everywhere, but transparent outside the region
    rgba[drawn, 3] = 255
    images = {
        "grey.png": Image.fromarray(grey),
        "one-bit.png": Image.fromarray(drawn),
        "rgb.png": Image.fromarray(np.stack([grey * 0, grey, grey * 0], axis=2)),
        "rgba.png": Image.fromarray(rgba),
        "palette.png": Image.fromarray(drawn.astype(np.uint8)).convert("P"),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
        assert (mask_from_png(tmp_path / name, (20, 30)) == expected).all(), name


def test_mask_from_png_refusals(tmp_path: Path) -> None:
    close = tmp_path / "close.png"
    Image.fromarray(np.full((40, 61), 255, dtype=np.uint8)).save(close)
    assert mask_from_png(close, (20, 30)).all()  # 1.7 % off the slide's aspect: accepted
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((40, 64), 255, dtype=np.uint8)).save(wide)
    with pytest.raises(RegionError, match=r"wide\.png: the mask is 64×40.*thumbnail is 30×20"):
        mask_from_png(wide, (20, 30))
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(empty)
    with pytest.raises(RegionError, match=r"empty\.png: the mask is empty"):
        mask_from_png(empty, (20, 30))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match=r"broken\.png: cannot read"):
        mask_from_png(broken, (20, 30))
