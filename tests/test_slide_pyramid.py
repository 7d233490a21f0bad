"""Pyramidal TIFFs (camlens.slide.pyramid) read back by OpenSlide and tifffile, and the
seeded synthetic whole slide (camlens.demo.slide): values, not shapes.

The reference for a reduced level is the exact area average of the source over
``2**k x 2**k`` blocks (fewer pixels at odd edges), computed here in float64; the file holds
it rounded once, so every value is within 0.5 of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
tifffile = pytest.importorskip("tifffile")

from camlens.demo.classes import BACKGROUND  # noqa: E402
from camlens.demo.slide import SyntheticSlide, write_synthetic_slide  # noqa: E402
from camlens.slide.pyramid import level_sizes, write_pyramidal_tiff  # noqa: E402


def area_average(image: np.ndarray, factor: int) -> np.ndarray:
    """The mean of every ``factor x factor`` block (the last row and column of blocks
    averaging only the pixels the image has), float64."""
    height, width, channels = image.shape
    rows, cols = -(-height // factor) * factor, -(-width // factor) * factor
    sums = np.zeros((rows, cols, channels))
    counts = np.zeros((rows, cols, 1))
    sums[:height, :width] = image
    counts[:height, :width] = 1
    shape = (rows // factor, factor, cols // factor, factor)
    return sums.reshape(*shape, channels).sum(axis=(1, 3)) / counts.reshape(*shape, 1).sum(
        axis=(1, 3)
    )


def read_level(slide: Any, level: int) -> np.ndarray:
    """A whole level as OpenSlide returns it (RGBA, un-premultiplied)."""
    return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))


def smooth_noise(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """A gradient plus noise: different values everywhere, with structure at every scale."""
    y, x = np.mgrid[0:height, 0:width]
    base = (y[..., None] * 0.2 + x[..., None] * 0.15 + np.arange(channels) * 40) % 200
    return (base + rng.integers(0, 56, (height, width, channels))).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(613, 1000), (512, 768)])
def test_every_level_is_read_by_openslide_as_the_area_average(
    tmp_path: Path, height: int, width: int
) -> None:
    image = smooth_noise(np.random.default_rng(0), height, width, 3)
    path = tmp_path / "pyramid.tiff"
    sizes = write_pyramidal_tiff(path, image, mpp=0.25, tile=128, min_size=64, description="hi")

    assert sizes == level_sizes(width, height, 64)
    assert max(sizes[-1]) <= 64 < max(sizes[-2])
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert slide.properties["openslide.comment"] == "hi"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
        assert slide.level_count == len(sizes)
        assert slide.level_dimensions == tuple(sizes)
        for k, (w, h) in enumerate(sizes):
            assert slide.level_downsamples[k] == pytest.approx((width / w + height / h) / 2)
            level = read_level(slide, k)
            assert (level[..., 3] == 255).all()
            if k == 0:
                np.testing.assert_array_equal(level[..., :3], image)
            else:
                error = np.abs(level[..., :3] - area_average(image, 2**k))
                assert error.max() <= 0.5 + 1e-9, f"level {k}"


def test_reduced_levels_carry_their_own_resolution(tmp_path: Path) -> None:
    path = tmp_path / "res.tiff"
    sizes = write_pyramidal_tiff(path, np.zeros((300, 500, 3), np.uint8), mpp=0.5, min_size=100)
    with tifffile.TiffFile(path) as tif:
        assert [page.tags["NewSubfileType"].value for page in tif.pages] == [0, 1, 1, 1]
        for page, (w, _h) in zip(tif.pages, sizes, strict=True):
            numerator, denominator = page.tags["XResolution"].value
            micrometres = 1e4 / (numerator / denominator)
            assert micrometres == pytest.approx(0.5 * 500 / w, rel=1e-6)


def test_the_same_image_gives_the_same_bytes(tmp_path: Path) -> None:
    image = smooth_noise(np.random.default_rng(4), 300, 200, 3)
    first, second = tmp_path / "a.tiff", tmp_path / "b.tiff"
    write_pyramidal_tiff(first, image, mpp=0.5, min_size=64, description="same")
    write_pyramidal_tiff(second, image, mpp=0.5, min_size=64, description="same")
    assert first.read_bytes() == second.read_bytes()


def test_no_mpp_writes_no_resolution(tmp_path: Path) -> None:
    path = tmp_path / "plain.tiff"
    write_pyramidal_tiff(path, np.full((100, 90, 3), 7, np.uint8), mpp=None)
    with openslide.OpenSlide(path) as slide:
        assert "openslide.mpp-x" not in slide.properties
        assert slide.level_count == 1
        np.testing.assert_array_equal(read_level(slide, 0)[..., :3], 7)


def test_rgba_is_stored_exactly_and_openslide_premultiplies(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = smooth_noise(rng, 300, 260, 4)
    image[..., 3] = 255
    image[:8, :8] = (200, 100, 50, 128)  # half transparent
    image[8:16, :8] = (200, 100, 50, 0)  # transparent
    path = tmp_path / "rgba.tiff"
    sizes = write_pyramidal_tiff(path, image, mpp=1.0, tile=64, min_size=64)

    with tifffile.TiffFile(path) as tif:  # the file holds straight (unassociated) alpha
        assert [page.tags["ExtraSamples"].value for page in tif.pages] == [(2,)] * len(sizes)
        np.testing.assert_array_equal(tif.pages[0].asarray(), image)
        for k in range(1, len(sizes)):
            error = np.abs(tif.pages[k].asarray() - area_average(image, 2**k))
            assert error.max() <= 0.5 + 1e-9
    with openslide.OpenSlide(path) as slide:
        level = read_level(slide, 0)
    np.testing.assert_array_equal(level[..., 3], image[..., 3])  # alpha exact
    np.testing.assert_array_equal(level[16:], image[16:])  # opaque pixels exact
    np.testing.assert_array_equal(level[8:16, :8], 0)  # transparent: colour lost
    half = level[:8, :8, :3].astype(int) - (200, 100, 50)  # rounded through 8-bit premultiply
    assert np.abs(half).max() <= 2 and (half != 0).any()


class FailingImage:
    """An RGB image whose ``reads``-th read raises; records the regions read."""

    def __init__(self, image: np.ndarray, reads: int | None = None) -> None:
        self.image, self.reads, self.regions = image, reads, []
        self.shape, self.dtype = image.shape, image.dtype

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        if self.reads is not None and len(self.regions) == self.reads:
            raise OSError("the scanner's disk went away")
        self.regions.append(
            tuple(part.indices(n)[:2] for part, n in zip(key, self.shape, strict=False))
        )
        return self.image[key]


def test_the_source_is_read_once_in_full_width_stripes(tmp_path: Path) -> None:
    image = smooth_noise(np.random.default_rng(2), 700, 300, 3)
    source = FailingImage(image)
    write_pyramidal_tiff(tmp_path / "s.tiff", source, mpp=None, tile=256)
    assert source.regions == [((0, 256), (0, 300)), ((256, 512), (0, 300)), ((512, 700), (0, 300))]


def test_a_failing_source_leaves_no_file_behind(tmp_path: Path) -> None:
    image = smooth_noise(np.random.default_rng(3), 1100, 700, 3)
    path = tmp_path / "out.tiff"
    with pytest.raises(OSError, match="went away"):
        write_pyramidal_tiff(path, FailingImage(image, reads=3), mpp=0.5, tile=256)
    assert list(tmp_path.iterdir()) == []

    path.write_bytes(b"the old file")
    with pytest.raises(OSError, match="went away"):
        write_pyramidal_tiff(path, FailingImage(image, reads=1), mpp=0.5, tile=256)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == b"the old file"


@pytest.mark.parametrize(
    ("image", "options", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), {}, "uint8"),
        (np.zeros((10, 10), np.uint8), {}, "RGBA"),
        (np.zeros((10, 10, 2), np.uint8), {}, "RGBA"),
        (np.zeros((10, 10, 3), np.uint8), {"tile": 100}, "multiple of 16"),
        (np.zeros((10, 10, 3), np.uint8), {"mpp": 0.0}, "mpp"),
    ],
)
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, image: np.ndarray, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_pyramidal_tiff(tmp_path / "x.tiff", image, **{"mpp": None, **options})
    assert list(tmp_path.iterdir()) == []


def test_synthetic_slide_is_seeded_and_independent_of_the_order_of_reads() -> None:
    slide = SyntheticSlide(700, 500, seed=5, block=64)
    whole = slide[:, :]
    again = SyntheticSlide(700, 500, seed=5, block=64)
    bottom, top = again[201:, 37:], again[:201, 37:]  # read in another order and split
    np.testing.assert_array_equal(np.concatenate([top, bottom]), whole[:, 37:])
    np.testing.assert_array_equal(again[100:300, :333], whole[100:300, :333])
    np.testing.assert_array_equal(again[:, :, 1:2], whole[:, :, 1:2])
    assert not np.array_equal(SyntheticSlide(700, 500, seed=6, block=64)[:, :], whole)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_labels_agree_with_the_pixels(seed: int) -> None:
    slide = SyntheticSlide(640, 448, seed=seed, block=64)
    pixels, labels = slide[:, :].astype(float), slide.labels(1)
    glass, tissue = labels == BACKGROUND, labels != BACKGROUND
    np.testing.assert_array_equal(slide.tissue_mask(1), tissue)
    assert 0.25 <= tissue.mean() <= 0.55
    # glass (around the sections and the tiles' own) is near-white; tissue is stained
    assert pixels[glass].mean(axis=0).min() > 230
    assert np.percentile(pixels[glass].min(axis=1), 5) > 215
    assert pixels[tissue].mean(axis=0).min() < 200
    # the outer margin of the slide is bare glass: near-white noise, no pure white
    margin = pixels[:, :16].reshape(-1, 3)
    assert margin.min() >= 230 and margin.max() <= 252 and margin.std() > 0.5
    # a downsampled map samples the centre of each block
    np.testing.assert_array_equal(slide.labels(8), labels[4::8, 4::8])


def test_synthetic_slide_written_and_read_by_openslide(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.tiff"
    slide = write_synthetic_slide(path, 4096, 4096, mpp=0.5, seed=11)
    with openslide.OpenSlide(path) as opened:
        assert opened.properties["openslide.vendor"] == "generic-tiff"
        assert opened.properties["openslide.mpp-x"] == "0.5"
        assert "camlens" in opened.properties["openslide.comment"]
        assert "seed=11" in opened.properties["openslide.comment"]
        assert opened.level_dimensions == ((4096, 4096), (2048, 2048), (1024, 1024), (512, 512))
        region = np.asarray(opened.read_region((1500, 2100), 0, (700, 300)))
        np.testing.assert_array_equal(region[..., :3], slide[2100:2400, 1500:2200])
        smallest = read_level(opened, 3)[..., :3].astype(float)
    mask = slide.tissue_mask(8)  # tissue darker than glass at the smallest level too
    assert smallest[mask].mean() < smallest[~mask].mean() - 20
