"""Whole-slide explanations: stitched maps equal direct explanations inside tiles, overlaps
blend without seams, glass holds no values, areas add up, a killed run resumes to the same
bytes, and the outputs open in OpenSlide / as GeoJSON.

The slide is the demo's synthetic tissue written as a pyramidal TIFF with MPP metadata; the
model is the shipped demo segmenter (trained on 128-px tiles of the same tissue).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from camlens import explain_segmentation
from camlens.demo.classes import CLASS_NAMES
from camlens.demo.models import MEAN, STD, load_demo_model
from camlens.demo.slide import write_synthetic_slide
from camlens.image import preprocess_image
from camlens.postprocess import upsample
from camlens.slide.process import TileBatch
from camlens.slide.run import explain_slide
from camlens.slide.source import SlideError, choose_resolution, open_slide, read_analysis
from camlens.slide.stitch import stitch
from camlens.slide.tiling import Tile, TileGrid, plan_tiles, tile_window

openslide = pytest.importorskip("openslide", reason="the slide extra is part of make test")

LAYER = "encoder.layer4"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_demo_model("segmenter")


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "synthetic.tiff"
    write_synthetic_slide(path, 1536, 1024, mpp=0.5, seed=3)
    return path


def _run(slide: Path, model, out: Path, **kwargs):
    settings = dict(
        layers=LAYER,
        methods=("hirescam", "gradcam"),
        class_names=list(CLASS_NAMES),
        mpp=1.0,
        tile=256,
        overlap=64,
        downsample=1,
        batch_size=4,
        mean=MEAN,
        std=STD,
        progress=False,
        viewer=False,
    )
    settings.update(kwargs)
    return explain_slide(slide, model, out, **settings)


@pytest.fixture(scope="module")
def whole(tmp_path_factory, slide_file, model):
    """One run over the whole slide (no tissue detection), canvas at full resolution."""
    out = tmp_path_factory.mktemp("whole")
    return _run(slide_file, model, out, tissue="none")


def _canvas(result, method: str, class_id: int) -> np.ndarray:
    found = [
        m
        for m in result.outputs.summary["maps"]
        if m["method"] == method and m["class_id"] == class_id
    ]
    return np.load(result.out / found[0]["file"])


def test_inside_a_tile_the_stitched_map_is_the_direct_explanation(whole, slide_file, model):
    source = open_slide(slide_file)
    resolution = choose_resolution(source, mpp=1.0, level=None)
    assert resolution.level == 1 and resolution.scale == 2.0
    grid = TileGrid(*resolution.size, 256, 64, 1)
    tiles = plan_tiles(grid, None, min_tissue=0)
    tile = tiles[5]  # row 1, column 1: wholly inside the slide
    # The same batch of four the run put it in: a class mask from the argmax can flip at a
    # near-tie pixel between batch compositions (float summation order), which changes a
    # mask-sum target; here only the stitching is under test.
    batch = tiles[4:8]
    pixels = [read_analysis(source, resolution, t.x, t.y, 256) for t in batch]
    inputs = torch.cat([preprocess_image(p, MEAN, STD) for p in pixels])
    direct = explain_segmentation(
        model, inputs, classes="all", methods=["hirescam", "gradcam"], layers=LAYER
    )
    inner = slice(64, 256 - 64)
    for method in ("hirescam", "gradcam"):
        expected = direct.raw_maps(method)[1].numpy()
        for class_id in (1, 2, 6):
            stitched = _canvas(whole, method, class_id)
            window = stitched[tile.y : tile.y + 256, tile.x : tile.x + 256]
            scale = np.abs(expected[class_id]).max()
            assert scale > 0
            error = np.abs(window[inner, inner] - expected[class_id][inner, inner]).max()
            assert error <= 1e-5 * scale, (method, class_id, error / scale)


def test_a_coarser_canvas_holds_the_maps_resized_to_it(tmp_path, slide_file, model, whole):
    coarse = _run(slide_file, model, tmp_path / "coarse", tissue="none", downsample=4)
    source = open_slide(slide_file)
    resolution = choose_resolution(source, mpp=1.0, level=None)
    tiles = plan_tiles(TileGrid(*resolution.size, 256, 64, 4), None, min_tissue=0)
    tile = tiles[6]  # row 1, column 2, in the run's second batch of four
    pixels = [read_analysis(source, resolution, t.x, t.y, 256) for t in tiles[4:8]]
    inputs = torch.cat([preprocess_image(p, MEAN, STD) for p in pixels])
    direct = explain_segmentation(model, inputs, classes="all", methods=["hirescam"], layers=LAYER)
    expected = upsample(direct.layer_maps["hirescam"][0][2, 1][None], (64, 64))[0].numpy()
    stitched = _canvas(coarse, "hirescam", 1)
    window = stitched[tile.y // 4 : tile.y // 4 + 64, tile.x // 4 : tile.x // 4 + 64]
    inner = slice(16, 48)
    error = np.abs(window[inner, inner] - expected[inner, inner]).max()
    assert error <= 1e-5 * np.abs(expected).max()
    assert coarse.outputs.summary["tiling"]["canvas"] == [
        -(-resolution.size[0] // 4),
        -(-resolution.size[1] // 4),
    ]


def test_overlaps_blend_linearly_without_a_seam(tmp_path):
    """Two tiles of constant maps 0 and 1: across their overlap the stitched map climbs in
    equal steps of 1/overlap — no jump anywhere — and is exactly each tile's value outside."""
    grid = TileGrid(width=112, height=64, tile=64, overlap=16, downsample=1)
    (tmp_path / "tiles").mkdir()
    entries = {}
    for col, value in ((0, 0.0), (1, 1.0)):
        tile = grid.tile_at(0, col, col)
        maps = np.full((1, 1, 64, 64), value, dtype=np.float32)
        shares = np.zeros((2, 64, 64), dtype=np.float32)
        shares[col] = 1
        np.savez(tmp_path / "tiles" / f"{tile.key}.npz", maps=maps, shares=shares)
        entries[tile.key] = {
            "key": tile.key,
            "index": col,
            "status": "done",
            "tile": {"row": 0, "col": col, "x": tile.x, "y": tile.y},
            "owned": [0, 0],
            "maps": [["gradcam", "layer"]],
            "classes": [1],
        }
    result = stitch(tmp_path, grid, entries, class_names=["a", "b"])
    canvas = np.load(result.maps[0].path)
    row = canvas[10]
    assert np.all(row[:48] == 0) and np.all(row[64:] == 1)
    # pixel centres across the overlap: tile 1's weight is (i + ½)/16, tile 0's the rest
    np.testing.assert_allclose(row[48:64], (np.arange(16) + 0.5) / 16, atol=1e-6)
    assert np.abs(np.diff(canvas, axis=1)).max() <= 1 / 16 + 1e-6
    window = tile_window(64, 16)
    assert window[32, 32] == 1 and 0 < window[0, 0] < window[0, 15] < 1


def test_the_real_stitched_map_is_continuous_across_tile_borders(whole):
    """Across each vertical tile border, the largest step between neighbouring canvas
    columns is no larger than the largest step inside the tiles' interiors."""
    canvas = _canvas(whole, "hirescam", 1)
    steps = np.abs(np.diff(canvas, axis=1))
    borders = [192 * col + offset for col in range(1, 7) for offset in range(-2, 66)]
    borders = [b for b in borders if b < steps.shape[1]]
    inside = np.delete(steps, borders, axis=1)
    assert np.nanmax(steps[:, borders]) <= np.nanmax(inside) * 1.5


def test_areas_count_every_analysis_pixel_once(whole):
    classes = whole.outputs.summary["classes"]
    width, height = whole.outputs.summary["resolution"]["size"]
    assert sum(c["area_pixels"] for c in classes) == width * height
    mm2 = sum(c["area_mm2"] for c in classes)
    assert mm2 == pytest.approx(width * height * (1.0 / 1000) ** 2, rel=1e-6)
    truth = np.bincount(np.load(whole.out / "maps" / "prediction.npy").ravel(), minlength=7)
    owned = np.array([c["area_pixels"] for c in classes])
    np.testing.assert_allclose(owned / owned.sum(), truth[:7] / truth[:7].sum(), atol=0.01)


def test_tissue_free_regions_hold_no_values(tmp_path, slide_file, model):
    result = _run(slide_file, model, tmp_path / "tissue", downsample=4)
    source = open_slide(slide_file)
    resolution = choose_resolution(source, mpp=1.0, level=None)
    grid = TileGrid(*resolution.size, 256, 64, 4)
    planned = result.tiles
    assert 0 < planned < grid.rows * grid.cols  # glass-only tiles were left out
    canvas = _canvas(result, "gradcam", 1)
    labels = np.load(result.out / "maps" / "prediction.npy")
    missing = ~np.isfinite(canvas)
    assert missing.any() and (~missing).any()
    np.testing.assert_array_equal(missing, labels == 255)
    done = {(e["tile"]["row"], e["tile"]["col"]) for e in _entries(result.out)}
    for row in range(grid.rows):
        for col in range(grid.cols):
            if any(
                (r, c) in done for r in (row - 1, row, row + 1) for c in (col - 1, col, col + 1)
            ):
                continue
            tile = grid.tile_at(row, col)
            assert missing[tile.y // 4 : tile.y // 4 + 64, tile.x // 4 : tile.x // 4 + 64].all()
    truth = source.thumbnail(256)[0].mean(axis=2) < 220  # tissue is darker than glass
    assert truth.any()


def _entries(out: Path) -> list[dict]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, slide_file, model, monkeypatch):
    reference = _run(slide_file, model, tmp_path / "ref", downsample=4)
    calls = {"n": 0}
    original = TileBatch.__call__

    def dying(self, items, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, items, images)

    monkeypatch.setattr(TileBatch, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(slide_file, model, tmp_path / "run", downsample=4)
    assert len(_entries(tmp_path / "run")) == 8  # two batches of four recorded
    monkeypatch.setattr(TileBatch, "__call__", original)
    with pytest.raises(Exception, match="--resume"):
        _run(slide_file, model, tmp_path / "run", downsample=4)
    resumed = _run(slide_file, model, tmp_path / "run", downsample=4, resume=True)
    assert resumed.counts.already == 8 and resumed.counts.done == reference.counts.done - 8
    for entry in reference.outputs.summary["maps"]:
        a = (tmp_path / "ref" / entry["file"]).read_bytes()
        b = (tmp_path / "run" / entry["file"]).read_bytes()
        assert a == b, entry["file"]


def test_heatmaps_are_pyramidal_tiffs_openslide_reads(whole):
    entry = whole.outputs.summary["maps"][0]
    path = whole.out / entry["heatmap"]
    opened = openslide.OpenSlide(str(path))
    assert opened.level_count >= 2
    assert opened.level_dimensions[0] == tuple(whole.outputs.summary["tiling"]["canvas"])
    assert float(opened.properties["openslide.mpp-x"]) == pytest.approx(1.0)
    top = np.asarray(
        opened.read_region((0, 0), opened.level_count - 1, opened.level_dimensions[-1])
    )[..., :3]
    assert len(np.unique(top.reshape(-1, 3), axis=0)) > 10  # a heatmap, not a blank page


def test_tiles_geojson_has_one_measured_tile_per_explained_tile(whole):
    geo = json.loads((whole.out / "tiles.geojson").read_text())
    features = geo["features"]
    entries = _entries(whole.out)
    assert len(features) == len(entries)
    first = min(entries, key=lambda e: e["index"])
    feature = features[0]
    xs = [p[0] for p in feature["geometry"]["coordinates"][0]]
    assert min(xs) == first["tile"]["x"] * 2 and max(xs) - min(xs) == 512  # level-0 pixels
    assert feature["properties"]["measurements"] == pytest.approx(
        {k: v for k, v in first["measurements"].items()}
    )


def test_resolution_choices_and_their_errors(tmp_path, slide_file):
    source = open_slide(slide_file)
    assert source.mpp == pytest.approx(0.5)
    assert choose_resolution(source, mpp=None, level=None).level == 0
    assert choose_resolution(source, mpp=1.5, level=None).level == 1  # read finer, resize
    with pytest.raises(SlideError, match="finer than"):
        choose_resolution(source, mpp=0.25, level=None)
    with pytest.raises(SlideError, match="levels 0"):
        choose_resolution(source, mpp=None, level=9)
    blank = open_slide(slide_file, mpp=None)
    object.__setattr__(blank, "mpp", None)
    with pytest.raises(SlideError, match="no MPP metadata"):
        choose_resolution(blank, mpp=0.5, level=None)
    with pytest.raises(SlideError, match="no MPP metadata"):
        choose_resolution(blank, mpp=None, level=None)
    assert choose_resolution(blank, mpp=None, level=1).mpp is None


def test_planning_keeps_tiles_with_enough_tissue() -> None:
    grid = TileGrid(width=1000, height=500, tile=200, overlap=40, downsample=1)
    assert (grid.rows, grid.cols) == (3, 6)
    tissue = np.zeros((50, 100), dtype=bool)
    tissue[:, :20] = True  # the left fifth of the slide
    tiles = plan_tiles(grid, tissue, min_tissue=0.05)
    assert {t.col for t in tiles} == {0, 1} and all(isinstance(t, Tile) for t in tiles)
    assert [t.index for t in tiles] == list(range(len(tiles)))
    assert len(plan_tiles(grid, None, min_tissue=0.5)) == 18
    # every analysis pixel has exactly one owner
    owners = np.zeros((500, 1000), dtype=int)
    for tile in plan_tiles(grid, None, min_tissue=0):
        y0, y1, x0, x1 = grid.core(tile)
        owners[tile.y + y0 : tile.y + y1, tile.x + x0 : tile.x + x1] += 1
    assert (owners == 1).all()


def test_stitching_does_not_depend_on_the_order_tiles_finished(whole, tmp_path):
    """A resumed or distributed run records tiles in another order: the float sums over the
    overlaps must still be the same bytes."""
    import shutil

    shutil.copytree(whole.out / "tiles", tmp_path / "tiles")
    entries = {e["key"]: e for e in reversed(_entries(whole.out))}
    summary = whole.outputs.summary
    grid = TileGrid(*summary["resolution"]["size"], 256, 64, 1)
    result = stitch(tmp_path, grid, entries, class_names=list(CLASS_NAMES))
    for stitched in result.maps:
        original = whole.out / "maps" / stitched.path.name
        assert stitched.path.read_bytes() == original.read_bytes(), stitched.path.name
