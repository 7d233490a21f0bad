"""Deep Zoom pyramids (``camlens.slide.deepzoom``) and the zoomable viewer
(``camlens.slide.viewer``): pixel values of tiles and levels, the descriptor, the page's
escaping, and the page in headless Chromium (skipped when ``/usr/bin/chromium`` is not
installed)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from camlens.report import STYLE
from camlens.slide.deepzoom import (
    DEEPZOOM_XMLNS,
    DeepZoomImage,
    halve,
    read_deepzoom,
    write_deepzoom,
)
from camlens.slide.viewer import ASSETS, SCALE_UNIT, HeatmapLayer, script_json, write_viewer

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "</script><b>x"
COOLWARM = ["#3b4cc0", "#f7f7f7", "#b40426"]


def random_image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


def read_tile(image: DeepZoomImage, level: int, column: int, row: int) -> np.ndarray:
    with Image.open(image.tile_path(level, column, row)) as tile:
        return np.asarray(tile)


def assemble(image: DeepZoomImage, level: int) -> np.ndarray:
    """A level put back together from its tiles; every tile must have the size of its box and
    (lossless tiles) agree with its neighbours in their overlap."""
    width, height = image.level_size(level)
    columns, rows = image.tile_grid(level)
    channels = read_tile(image, level, 0, 0).shape[2]
    out = np.full((height, width, channels), -1, np.int16)
    for column in range(columns):
        for row in range(rows):
            x0, y0, x1, y1 = image.tile_box(level, column, row)
            tile = read_tile(image, level, column, row)
            assert tile.shape[:2] == (y1 - y0, x1 - x0), (level, column, row)
            seen = out[y0:y1, x0:x1]
            overlap = seen[..., 0] >= 0
            if image.fmt == "png":
                np.testing.assert_array_equal(seen[overlap], tile[overlap])
            out[y0:y1, x0:x1] = tile
    assert (out >= 0).all(), "pixels no tile covers"
    return out.astype(np.uint8)


def block_mean(pixels: np.ndarray, factor: int) -> np.ndarray:
    """The mean of every ``factor × factor`` block (fewer pixels at the bottom and right)."""
    height, width, channels = pixels.shape
    padded = np.full(
        (math.ceil(height / factor) * factor, math.ceil(width / factor) * factor, channels),
        np.nan,
    )
    padded[:height, :width] = pixels
    blocks = padded.reshape(padded.shape[0] // factor, factor, -1, factor, channels)
    return np.nanmean(blocks, axis=(1, 3))


# --- the pyramid's geometry ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "tile_size"),
    [(1, 1, 254), (1000, 613, 254), (256, 256, 64), (257, 3, 64), (600, 400, 100)],
)
def test_levels_and_tile_counts(tmp_path: Path, width: int, height: int, tile_size: int) -> None:
    image = write_deepzoom(
        np.zeros((height, width, 3), np.uint8), tmp_path, "img", tile_size=tile_size, fmt="png"
    )
    expected_levels = math.ceil(math.log2(max(width, height))) + 1
    assert image.levels == expected_levels
    assert sorted(int(p.name) for p in image.tiles_folder.iterdir()) == list(range(expected_levels))
    for level in range(expected_levels):
        scale = 2 ** (image.max_level - level)
        size = (math.ceil(width / scale), math.ceil(height / scale))
        assert image.level_size(level) == size
        grid = (math.ceil(size[0] / tile_size), math.ceil(size[1] / tile_size))
        assert image.tile_grid(level) == grid
        names = {p.name for p in (image.tiles_folder / str(level)).iterdir()}
        assert names == {f"{c}_{r}.png" for c in range(grid[0]) for r in range(grid[1])}
    assert image.level_size(0) == (1, 1)
    assert read_tile(image, 0, 0, 0).shape[:2] == (1, 1)
    assert not list(tmp_path.rglob("*.partial"))


def test_tile_boxes_add_overlap_on_inner_sides_only(tmp_path: Path) -> None:
    image = write_deepzoom(
        random_image(613, 1000, 3), tmp_path, "img", tile_size=254, overlap=2, fmt="png"
    )
    level = image.max_level
    assert image.tile_box(level, 0, 0) == (0, 0, 256, 256)
    assert image.tile_box(level, 1, 1) == (252, 252, 510, 510)
    assert image.tile_box(level, 3, 2) == (760, 506, 1000, 613)
    assert read_tile(image, level, 1, 1).shape == (258, 258, 3)
    assert read_tile(image, level, 3, 2).shape == (107, 240, 3)


# --- pixel values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("tile_size", "overlap"), [(254, 1), (100, 3), (64, 0)])
def test_png_tiles_reassemble_to_the_source_exactly(
    tmp_path: Path, tile_size: int, overlap: int
) -> None:
    source = random_image(613, 1000, 4, seed=1)
    image = write_deepzoom(source, tmp_path, "img", tile_size=tile_size, overlap=overlap, fmt="png")
    np.testing.assert_array_equal(assemble(image, image.max_level), source)


def test_lower_levels_are_area_averages(tmp_path: Path) -> None:
    source = random_image(613, 1001, 3, seed=2)  # odd sizes: partial blocks at the edges
    image = write_deepzoom(source, tmp_path, "img", tile_size=128, overlap=1, fmt="png")
    top = image.max_level
    half = assemble(image, top - 1).astype(float)
    assert half.shape == (307, 501, 3)
    # one halving, rounded half up: within 0.5 of the exact mean
    assert np.abs(half - block_mean(source, 2)).max() <= 0.5
    # rounded twice: within 1 of the exact 4 × 4 mean
    quarter = assemble(image, top - 2).astype(float)
    assert np.abs(quarter - block_mean(source, 4)).max() <= 1.0
    # level 0 is the mean colour of the image, to the rounding of every level on the way
    assert np.abs(assemble(image, 0)[0, 0] - source.reshape(-1, 3).mean(0)).max() <= 6


def test_halve_rounds_half_up_and_handles_odd_edges() -> None:
    rows = np.array([[[1], [2], [7]], [[2], [2], [8]]], np.uint8).repeat(3, axis=2)
    # blocks: (1+2+2+2)/4 = 1.75 -> 2; the odd last column: (7+8)/2 = 7.5 -> 8
    np.testing.assert_array_equal(halve(rows)[..., 0], [[2, 8]])
    np.testing.assert_array_equal(halve(rows[:1])[..., 0], [[2, 7]])  # one row: 1.5 -> 2


def test_transparency_is_kept_and_colour_is_alpha_weighted(tmp_path: Path) -> None:
    source = np.zeros((64, 96, 4), np.uint8)  # transparent black ...
    source[:, 33:] = (200, 40, 10, 255)  # ... then opaque red from column 33 ...
    source[:, 60:70, 3] = 128  # ... half transparent in a band
    image = write_deepzoom(source, tmp_path, "map", tile_size=32, fmt="png")
    top = image.max_level
    with Image.open(image.tile_path(top, 0, 0)) as tile:
        assert tile.mode == "RGBA"
    np.testing.assert_array_equal(assemble(image, top), source)
    half = assemble(image, top - 1)
    np.testing.assert_array_equal(half[:, :16], 0)  # transparent stays transparent
    # the block (columns 32, 33) is half transparent black, half red: red at half alpha,
    # not a darker red
    for column, alpha in ((16, 128), (20, 255), (31, 128)):
        np.testing.assert_array_equal(half[:, column], [[200, 40, 10, alpha]] * 32)


def test_jpeg_tiles_of_an_rgb_image(tmp_path: Path) -> None:
    y, x = np.mgrid[0:300, 0:500]
    source = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    image = write_deepzoom(source, tmp_path, "slide", tile_size=128, quality=90)
    assert image.fmt == "jpg"
    assert image.tile_path(image.max_level, 0, 0).name == "0_0.jpg"
    error = np.abs(assemble(image, image.max_level).astype(int) - source).mean()
    assert error < 3, error
    with pytest.raises(ValueError, match="png"):
        write_deepzoom(np.zeros((8, 8, 4), np.uint8), tmp_path, "rgba", fmt="jpeg")


class RowSource:
    """An array-like that records what is read: the stitchers' canvases look like this."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.shape = pixels.shape
        self.dtype = pixels.dtype
        self.reads: list[tuple[int, int, int, int]] = []

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, columns = key
        self.reads.append((rows.start, rows.stop, columns.start, columns.stop))
        return self.pixels[rows, columns]


def test_sources_are_read_once_in_stripes(tmp_path: Path) -> None:
    pixels = random_image(300, 170, 3, seed=3)
    memmap = np.lib.format.open_memmap(tmp_path / "m.npy", "w+", np.uint8, pixels.shape)
    memmap[:] = pixels
    memmap.flush()
    source = RowSource(np.load(tmp_path / "m.npy", mmap_mode="r"))
    image = write_deepzoom(source, tmp_path / "out", "img", tile_size=64, fmt="png")
    assert source.reads == [(y, min(300, y + 64), 0, 170) for y in range(0, 300, 64)]
    np.testing.assert_array_equal(assemble(image, image.max_level), pixels)


def test_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("", "a/b", ".hidden", "x\x00"):
        with pytest.raises(ValueError, match="name"):
            write_deepzoom(pixels, tmp_path, name)
    with pytest.raises(ValueError, match="overlap"):
        write_deepzoom(pixels, tmp_path, "img", tile_size=4, overlap=4)
    with pytest.raises(ValueError, match="uint8"):
        write_deepzoom(pixels.astype(np.float32), tmp_path, "img")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_deepzoom(pixels[..., 0], tmp_path, "img")
    with pytest.raises(ValueError, match="fmt"):
        write_deepzoom(pixels, tmp_path, "img", fmt="webp")


# --- descriptor and tile source --------------------------------------------------------------


def test_descriptor_xml(tmp_path: Path) -> None:
    image = write_deepzoom(
        np.zeros((613, 1000, 3), np.uint8), tmp_path, "slide", tile_size=254, overlap=1
    )
    assert image.descriptor == tmp_path / "slide.dzi"
    root = ElementTree.fromstring(image.descriptor.read_bytes())
    assert root.tag == f"{{{DEEPZOOM_XMLNS}}}Image"
    assert root.attrib == {"Format": "jpg", "Overlap": "1", "TileSize": "254"}
    size = root.find(f"{{{DEEPZOOM_XMLNS}}}Size")
    assert size is not None
    assert size.attrib == {"Width": "1000", "Height": "613"}
    assert read_deepzoom(image.descriptor) == image


def test_tile_source_is_inline_and_relative(tmp_path: Path) -> None:
    image = DeepZoomImage("tumour #1", 1000, 613, 254, 1, "png", tmp_path / "viewer")
    assert image.tile_source(tmp_path) == {
        "Image": {
            "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
            "Url": "viewer/tumour%20%231_files/",
            "Format": "png",
            "Overlap": "1",
            "TileSize": "254",
            "Size": {"Width": "1000", "Height": "613"},
        }
    }
    assert image.tile_source(tmp_path / "page")["Image"]["Url"] == (
        f"../viewer/{quote('tumour #1')}_files/"
    )


# --- the page --------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Tags, attributes, script blocks and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def make_viewer(out: Path, *, title: str = "Slide <demo>") -> tuple[Path, DeepZoomImage]:
    """A 600 × 400 slide (colour gradients) and three 150 × 100 heatmaps: class A, opaque red
    on the left half; class B, opaque blue on the right half; a hostile class name."""
    y, x = np.mgrid[0:400, 0:600]
    slide = np.stack([x * 255 // 600, y * 255 // 400, np.full_like(x, 160)], -1)
    slide_image = write_deepzoom(slide.astype(np.uint8), out / "viewer", "slide", tile_size=128)
    left = np.zeros((100, 150, 4), np.uint8)
    left[:, :75] = (255, 0, 0, 255)
    right = np.zeros((100, 150, 4), np.uint8)
    right[:, 75:] = (0, 0, 255, 255)
    maps = {
        name: write_deepzoom(pixels, out / "viewer", name, tile_size=64, fmt="png")
        for name, pixels in (("A", left), ("B", right))
    }
    layers = [
        HeatmapLayer("A", "gradcam", maps["A"], 2.5, COOLWARM, note="left half"),
        HeatmapLayer("A", "hirescam", maps["B"], 2.5, COOLWARM),
        HeatmapLayer("B", "hirescam", maps["B"], 1.25, COOLWARM),
        HeatmapLayer(HOSTILE, "gradcam", maps["A"], 0.5, COOLWARM, note=HOSTILE),
    ]
    stats: list[dict[str, Any]] = [
        {"class": "A", "area (mm²)": 1.5},
        {"class": HOSTILE, "area (mm²)": None, HOSTILE: 3},
    ]
    facts = {"slide": "demo.svs", "mpp": "0.5", HOSTILE: HOSTILE}
    page = write_viewer(
        out, title=title, slide=slide_image, layers=layers, stats=stats, facts=facts
    )
    return page, slide_image


def test_page_escapes_every_user_string(tmp_path: Path) -> None:
    page, slide = make_viewer(tmp_path / "out", title=f"Slide {HOSTILE}")
    text = page.read_text(encoding="utf-8")
    assert "<b>" not in text
    assert text.count("</script>") == 3  # the data block and the two script files
    # title, h1, a column name, a row's data-class and cell, a fact's name and value
    assert text.count("&lt;/script&gt;&lt;b&gt;x") == 7
    parser = PageParser()
    parser.feed(text)
    assert [tag for tag, _ in parser.starts].count("b") == 0
    data_block = next(attrs for tag, attrs in parser.starts if tag == "script" and attrs.get("id"))
    assert data_block["type"] == "application/json"
    data = json.loads(parser.scripts[0])
    assert data["slide"] == slide.tile_source(tmp_path / "out")
    assert [(layer["class"], layer["method"]) for layer in data["layers"]] == [
        ("A", "gradcam"),
        ("A", "hirescam"),
        ("B", "hirescam"),
        (HOSTILE, "gradcam"),
    ]
    assert data["layers"][3]["note"] == HOSTILE
    assert data["layers"][0]["labels"] == ["\u22122.5", "0", "+2.5"]
    assert data["layers"][0]["colors"] == COOLWARM
    assert SCALE_UNIT in "".join(parser.text)
    assert json.loads(script_json({"k": "</script>&\u2028"})) == {"k": "</script>&\u2028"}
    assert "<" not in script_json(["<!--", "</"])


def test_page_is_offline_and_ships_its_assets(tmp_path: Path) -> None:
    page, _ = make_viewer(tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(text)
    links = [attrs.get("src") or attrs.get("href") for _, attrs in parser.starts]
    links = [link for link in links if link]
    assert sorted(links) == [
        "viewer-assets/openseadragon.min.js",
        "viewer-assets/report.css",
        "viewer-assets/viewer.css",
        "viewer-assets/viewer.js",
    ]
    policy = next(a["content"] for t, a in parser.starts if a.get("http-equiv"))
    assert policy is not None
    assert "default-src 'none'" in policy
    assert "connect-src 'none'" in policy
    assert "script-src 'self';" in policy
    package = resources.files("camlens.slide") / "assets"
    for name in ASSETS:
        copied = tmp_path / "out" / "viewer-assets" / name
        assert copied.read_bytes() == (package / name).read_bytes()
    # the report's style sheet is shared, not copied into the package twice
    shared = (tmp_path / "out" / "viewer-assets" / "report.css").read_text(encoding="utf-8")
    assert shared == STYLE and "--accent" in shared
    assert "--accent:" not in (package / "viewer.css").read_text(encoding="utf-8")
    script = (package / "openseadragon.min.js").read_text(encoding="utf-8")
    assert re.match(r"//! openseadragon 6\.", script)
    assert "BSD-3-Clause" in (package / "VENDORED.md").read_text(encoding="utf-8")


def test_refuses_layers_the_page_cannot_show(tmp_path: Path) -> None:
    slide = DeepZoomImage("slide", 600, 400, 254, 1, "jpg", tmp_path)
    heatmap = DeepZoomImage("map", 150, 100, 254, 1, "png", tmp_path)

    def write(*layers: HeatmapLayer) -> None:
        write_viewer(tmp_path, title="t", slide=slide, layers=list(layers), stats=[], facts={})

    layer = HeatmapLayer("A", "gradcam", heatmap, 1.0, COOLWARM)
    with pytest.raises(ValueError, match="two layers"):
        write(layer, layer)
    with pytest.raises(ValueError, match="hex"):
        write(HeatmapLayer("A", "m", heatmap, 1.0, ["#fff", "red;background:url(x)"]))
    for limit in (0.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="limit"):
            write(HeatmapLayer("A", "m", heatmap, limit, COOLWARM))
    tall = DeepZoomImage("map", 100, 150, 254, 1, "png", tmp_path)
    with pytest.raises(ValueError, match="shape of the slide"):
        write(HeatmapLayer("A", "m", tall, 1.0, COOLWARM))
    # a heatmap whose size is the slide's, rounded up on a coarser grid, is fine
    coarse = DeepZoomImage("map", 38, 25, 254, 1, "png", tmp_path)
    write(HeatmapLayer("A", "m", coarse, 1.0, COOLWARM))


# --- the page in a browser -------------------------------------------------------------------


def chromium(profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--force-device-scale-factor=1",
        "--window-size=1200,900",
        "--virtual-time-budget=5000",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    try:
        return subprocess.run(command, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in 120 s: {' '.join(command)}")


def screenshot(tmp_path: Path, url: str, name: str) -> np.ndarray:
    shot = tmp_path / f"{name}.png"
    run = chromium(tmp_path / "profile", url, f"--screenshot={shot}")
    assert shot.is_file(), run.stderr.decode(errors="replace")[-2000:]
    with Image.open(shot) as image:
        return np.asarray(image.convert("RGB")).astype(np.int32)


@pytest.mark.slow
def test_viewer_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("chromium not installed: apt-get install chromium to run the viewer test")
    page, _ = make_viewer(tmp_path / "out")
    url = page.resolve().as_uri()

    # a link to the hostile class opens it; tiles load from file:// and nothing is blocked
    hostile = quote(HOSTILE, safe="")
    run = chromium(tmp_path / "profile", f"{url}#class={hostile}&opacity=0.8", "--dump-dom")
    dom = run.stdout.decode("utf-8", errors="replace")
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs["layer"] == "&lt;/script&gt;&lt;b&gt;x/gradcam", attrs
    assert attrs["opacity"] == "0.8"
    assert int(attrs["tiles-loaded"]) > 0, attrs
    assert attrs["tiles-failed"] == "0", attrs
    assert attrs["layer-loaded"] == "true", attrs
    assert "<b>" not in dom
    log = run.stderr.decode(errors="replace")
    assert "Content Security Policy" not in log, log[-2000:]
    assert "Uncaught" not in log, log[-2000:]
    x, y, width, height = (round(float(v)) for v in attrs["image-rect"].split(","))
    assert width > 400 and height > 250, attrs["image-rect"]

    # the slide is drawn: its gradient gives many colours
    red = screenshot(tmp_path, f"{url}#class=A&method=gradcam&opacity=0.8", "red")
    blue = screenshot(tmp_path, f"{url}#class=B&opacity=0.8", "blue")
    area = red[y : y + height, x : x + width]
    assert len(np.unique(area.reshape(-1, 3), axis=0)) > 1000

    # A is red on the left half, B blue on the right (the navigator is at the bottom right:
    # compare the upper part)
    def region(shot: np.ndarray, left: float, right: float) -> np.ndarray:
        rows = slice(y + height // 10, y + height // 2)
        columns = slice(x + round(left * width), x + round(right * width))
        return shot[rows, columns].reshape(-1, 3).mean(axis=0)

    red_left, blue_left = region(red, 0.05, 0.45), region(blue, 0.05, 0.45)
    red_right, blue_right = region(red, 0.55, 0.95), region(blue, 0.55, 0.95)
    assert red_left[0] > 200 and red_left[2] < 60, red_left  # 0.8 red over the slide
    assert blue_right[2] > 200 and blue_right[0] < 60, blue_right  # 0.8 blue over it
    # where a heatmap is transparent the slide shows: R grows left to right, B is 160
    assert blue_left[0] < 100 and 130 < blue_left[2] < 190, blue_left
    assert red_right[0] > 150 and 130 < red_right[2] < 190, red_right
    # so the two pictures differ on both halves, each the way its heatmap says
    assert red_left[0] - blue_left[0] > 100
    assert blue_right[2] - red_right[2] > 40 and red_right[0] - blue_right[0] > 100
