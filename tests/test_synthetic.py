"""The demo's synthetic data: seeded, well-formed, every class present, colours that look like
H&E, and a shortcut marker exactly where the leak puts it."""

from __future__ import annotations

import numpy as np
import pytest

from camlens.demo import synthetic as syn
from camlens.demo.stain import STAINS, Staining
from camlens.demo.tissue import draw_tissue


@pytest.fixture(scope="module")
def tiles() -> tuple[np.ndarray, np.ndarray]:
    """32 tiles at 128 px (a few hundred milliseconds, shared by the statistics tests)."""
    return syn.make_dataset(seed=0, count=32, size=128)


def _brightness(images: np.ndarray, labels: np.ndarray, cls: int) -> float:
    return float(images[labels == cls].mean())


# ------------------------------------------------------------------------------------------
# H&E tiles
# ------------------------------------------------------------------------------------------


def test_class_names_and_palette() -> None:
    assert syn.CLASS_NAMES == (
        "background",
        "dermis_ecm",
        "epidermis",
        "sebaceous_gland",
        "hair_follicle",
        "blood_vessel",
        "fat",
    )
    assert syn.CLASS_COLOURS.shape == (len(syn.CLASS_NAMES), 3)
    assert syn.CLASS_COLOURS.dtype == np.uint8
    assert len({tuple(c) for c in syn.CLASS_COLOURS.tolist()}) == len(syn.CLASS_NAMES)
    labels = np.arange(len(syn.CLASS_NAMES)).reshape(1, -1)
    np.testing.assert_array_equal(syn.label_to_rgb(labels)[0], syn.CLASS_COLOURS)


def test_tile_is_deterministic_for_a_seed() -> None:
    a = syn.make_tile(np.random.default_rng(7), 96)
    b = syn.make_tile(np.random.default_rng(7), 96)
    c = syn.make_tile(np.random.default_rng(8), 96)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("size", [48, 100, 128])
def test_tile_shapes_dtypes_ranges(size: int) -> None:
    image, labels = syn.make_tile(np.random.default_rng(size), size)
    assert image.shape == (size, size, 3) and image.dtype == np.float32
    assert labels.shape == (size, size) and labels.dtype == np.int64
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert labels.min() >= 0 and labels.max() < len(syn.CLASS_NAMES)
    assert image.std() > 0.05  # a picture, not a flat colour


def test_tile_is_tissue_then_render() -> None:
    """The two steps behind make_tile (paint the tissue, then stain it) are usable alone."""
    image, labels = syn.make_tile(np.random.default_rng(5), 64)
    rng = np.random.default_rng(5)
    canvas = draw_tissue(rng, 64)
    np.testing.assert_array_equal(canvas.labels, labels)
    assert canvas.conc.shape == (len(STAINS), 64, 64)
    rendered = Staining.draw(rng).apply(rng, canvas.conc, blur_passes=1)
    np.testing.assert_array_equal(rendered, image)


def test_tile_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        syn.make_tile(np.random.default_rng(0), 8)


def test_dataset_stacks_tiles_from_one_generator() -> None:
    images, labels = syn.make_dataset(seed=3, count=2, size=64)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32
    assert labels.shape == (2, 64, 64) and labels.dtype == np.int64
    rng = np.random.default_rng(3)
    for i in range(2):
        image, label = syn.make_tile(rng, 64)
        np.testing.assert_array_equal(images[i], image)
        np.testing.assert_array_equal(labels[i], label)


def test_every_class_appears_and_tiles_are_mixed(tiles: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = tiles
    counts = np.bincount(labels.ravel(), minlength=len(syn.CLASS_NAMES))
    assert (counts > 0).all(), dict(zip(syn.CLASS_NAMES, counts.tolist(), strict=True))
    present = np.array([np.bincount(t.ravel(), minlength=len(counts)) > 0 for t in labels])
    assert present.sum(axis=1).mean() >= 3
    # Each class shows up in a fair share of tiles, not in one lucky tile.
    assert (present.mean(axis=0) >= 0.25).all(), present.mean(axis=0)


def test_colour_statistics_look_like_h_and_e(tiles: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = tiles
    epi = images[labels == syn.EPIDERMIS].mean(axis=0)
    ecm = images[labels == syn.DERMIS].mean(axis=0)
    # Hematoxylin-rich epidermis: darker and bluer (purple) than the eosin-pink dermis.
    assert epi.mean() < ecm.mean() - 0.1
    assert epi[2] - epi[0] > ecm[2] - ecm[0] + 0.1
    # The dermis is pink: red above blue above green.
    assert ecm[0] > ecm[2] > ecm[1]
    # Glass is the brightest class on average.
    glass = _brightness(images, labels, syn.BACKGROUND)
    others = [_brightness(images, labels, c) for c in range(1, len(syn.CLASS_NAMES))]
    assert glass > max(others)
    assert glass > 0.85


# ------------------------------------------------------------------------------------------
# Shortcut data
# ------------------------------------------------------------------------------------------


def test_marker_box_is_a_small_square_in_the_top_left_corner() -> None:
    assert syn.MARKER_CORNER == "top-left"
    for size in (32, 64, 128):
        y0, y1, x0, x1 = syn.marker_box(size)
        assert 0 < y0 < y1 and 0 < x0 < x1
        assert y1 - y0 == x1 - x0
        assert y1 <= size // 4 and x1 <= size // 4
    assert syn.marker_box(64) == (2, 8, 2, 8)


def test_add_marker_stamps_a_copy() -> None:
    image = np.full((64, 64, 3), 0.5, dtype=np.float32)
    stamped = syn.add_marker(image)
    assert (image == 0.5).all()  # input untouched
    y0, y1, x0, x1 = syn.marker_box(64)
    np.testing.assert_array_equal(
        stamped[y0:y1, x0:x1], np.broadcast_to(syn.MARKER_COLOUR, (6, 6, 3))
    )
    outside = np.ones((64, 64), bool)
    outside[y0:y1, x0:x1] = False
    assert (stamped[outside] == 0.5).all()
    batch = syn.add_marker(np.zeros((2, 64, 64, 3), dtype=np.uint8))
    assert batch.dtype == np.uint8
    assert (batch[:, y0:y1, x0:x1] == np.array(syn.MARKER_COLOUR) * 255).all()


@pytest.mark.parametrize("leak", [False, True])
@pytest.mark.parametrize("label", [0, 1])
def test_shortcut_sample(label: int, leak: bool) -> None:
    rng = np.random.default_rng(10 * label + leak)
    for _ in range(4):
        image, out_label, lesion, marker = syn.make_shortcut_sample(rng, 64, label=label, leak=leak)
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert out_label == label
        assert lesion.shape == marker.shape == (64, 64)
        assert lesion.dtype == marker.dtype == np.bool_
        assert marker.any() == (leak and label == 1)
        assert lesion.any() == (label == 1)
        # The lesion stays clear of the marker corner (even where no marker is stamped).
        y0, y1, x0, x1 = syn.marker_box(64)
        assert not lesion[y0:y1, x0:x1].any()
        assert not (lesion & marker).any()
        is_marker_colour = (image == np.asarray(syn.MARKER_COLOUR, np.float32)).all(axis=-1)
        np.testing.assert_array_equal(is_marker_colour, marker)
        if label == 1:
            # The lesion is darker and more purple than the tissue around it.
            assert image[lesion].mean() < image[~lesion & ~marker].mean() - 0.05


def test_shortcut_sample_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="label"):
        syn.make_shortcut_sample(np.random.default_rng(0), 64, label=2, leak=False)


def test_shortcut_dataset() -> None:
    leaky = syn.make_shortcut_dataset(seed=4, count=12, size=48, leak=True)
    clean = syn.make_shortcut_dataset(seed=4, count=12, size=48, leak=False)
    assert set(leaky) == {"images", "labels", "lesion_masks", "marker_masks"}
    assert leaky["images"].shape == (12, 48, 48, 3) and leaky["images"].dtype == np.float32
    assert leaky["labels"].shape == (12,) and leaky["labels"].dtype == np.int64
    assert leaky["lesion_masks"].dtype == leaky["marker_masks"].dtype == np.bool_
    assert (np.bincount(leaky["labels"], minlength=2) == 6).all()  # balanced
    has_marker = leaky["marker_masks"].any(axis=(1, 2))
    np.testing.assert_array_equal(has_marker, leaky["labels"] == 1)
    assert not clean["marker_masks"].any()
    np.testing.assert_array_equal(leaky["lesion_masks"].any(axis=(1, 2)), leaky["labels"] == 1)
    # Same seed: the same patches, the marker the only difference.
    np.testing.assert_array_equal(leaky["labels"], clean["labels"])
    np.testing.assert_array_equal(leaky["lesion_masks"], clean["lesion_masks"])
    same = ~leaky["marker_masks"]
    np.testing.assert_array_equal(leaky["images"][same], clean["images"][same])
    again = syn.make_shortcut_dataset(seed=4, count=12, size=48, leak=True)
    np.testing.assert_array_equal(again["images"], leaky["images"])
