"""Tests for camlens.image: file loading, preprocessing and the pytorch-grad-cam-compatible drawing.

Expected colour-table values were read from OpenCV (opencv-python-headless 4.14 and 5.0 give
identical tables): ``cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)``.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.errors import ImageLoadError, InputShapeError, NonFiniteError
from camlens.image import (
    COLORMAP_JET,
    COLORMAP_NAMES,
    COLORMAP_VIRIDIS,
    SIGNED_NEGATIVE_RGB,
    SIGNED_POSITIVE_RGB,
    apply_colormap,
    colormap_lut,
    label_palette,
    load_image,
    make_grid,
    mask_to_rgb,
    overlay,
    preprocess_image,
    save_image,
    scale_to_unit,
    show_cam_on_image,
    signed_heatmap,
)

F32 = np.float32


def _unit(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _write_png16(path: Path, samples: np.ndarray, color_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 48/64-bit colour PNGs)."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------------------


def test_load_rgb_matches_the_usual_float32_recipe(tmp_path: Path) -> None:
    pixels = np.array([[[0, 128, 255], [10, 20, 30]]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    out = load_image(tmp_path / "rgb.png")
    assert out.dtype == np.float32 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out, pixels.astype(F32) / F32(255))


def test_load_rgba_composites_over_white(tmp_path: Path) -> None:
    pixels = np.array([[[200, 100, 0, 128], [50, 60, 70, 255], [1, 2, 3, 0]]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    a = 128 / 255
    expected = [
        [200 / 255 * a + 1 - a, 100 / 255 * a + 1 - a, 1 - a],
        [50 / 255, 60 / 255, 70 / 255],
        [1.0, 1.0, 1.0],
    ]
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    # An opaque pixel gets exactly the RGB numbers.
    np.testing.assert_array_equal(out[0, 1], pixels[0, 1, :3].astype(F32) / F32(255))


def test_load_la_composites_over_white(tmp_path: Path) -> None:
    Image.frombytes("LA", (2, 1), bytes([100, 128, 200, 255])).save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    a = 128 / 255
    np.testing.assert_allclose(out[0, 0], [100 / 255 * a + 1 - a] * 3, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [200 / 255] * 3, atol=1e-7)


def test_load_grey_is_replicated(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(tmp_path / "l.png")
    out = load_image(tmp_path / "l.png")
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0], [[0] * 3, [0.2] * 3, [1] * 3], atol=1e-7)


def test_load_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0])
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    image.save(tmp_path / "p.png")
    assert _mode(tmp_path / "p.png") == "P"
    np.testing.assert_array_equal(load_image(tmp_path / "p.png")[0], [[1, 0, 0], [1, 1, 1]])


def test_load_one_bit(tmp_path: Path) -> None:
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "b.png")
    assert _mode(tmp_path / "b.png") == "1"
    np.testing.assert_array_equal(load_image(tmp_path / "b.png")[0], [[0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize(("name", "dtype"), [("g16.png", "<u2"), ("g16b.tif", ">u2")])
def test_load_sixteen_bit_grey_scales_by_65535(tmp_path: Path, name: str, dtype: str) -> None:
    values = np.array([[0, 300, 40000, 65535]], dtype=dtype)
    Image.fromarray(values).save(tmp_path / name)
    assert _mode(tmp_path / name) in ("I;16", "I;16B")
    out = load_image(tmp_path / name)
    np.testing.assert_allclose(out[0, :, 0], [0, 300 / 65535, 40000 / 65535, 1], rtol=1e-6)
    assert out[0, 1, 0] > 0  # 300 would be lost (0) with an 8-bit reduction
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_load_mode_i_in_range_and_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert _mode(tmp_path / "i.tif") == "I"
    np.testing.assert_allclose(load_image(tmp_path / "i.tif")[0, :, 1], [0, 1000 / 65535, 1])

    Image.fromarray(np.array([[-5, 70000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.warns(UserWarning, match="clipped"):
        out = load_image(tmp_path / "wide.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1])


def test_load_float_tiff(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=F32)).save(tmp_path / "f.tif")
    assert _mode(tmp_path / "f.tif") == "F"
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[0, :, 0], [0, 0.25, 1])

    Image.fromarray(np.array([[-1.0, 0.5, 2.0]], dtype=F32)).save(tmp_path / "wide.tif")
    with pytest.warns(UserWarning, match=r"clipped to \[0, 1\]"):
        out = load_image(tmp_path / "wide.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 0.5, 1])

    Image.fromarray(np.array([[np.nan, 0.5]], dtype=F32)).save(tmp_path / "nan.tif")
    with pytest.raises(ImageLoadError, match=r"nan\.tif"):
        load_image(tmp_path / "nan.tif")


def test_load_48_bit_png_is_reduced_to_8_bits_by_pillow(tmp_path: Path) -> None:
    samples = np.array([[[65535, 257, 255], [0, 32768, 65280]]], dtype=np.uint16)
    _write_png16(tmp_path / "rgb48.png", samples, color_type=2)
    out = load_image(tmp_path / "rgb48.png")
    # Pillow keeps the high byte: 257 -> 1, 255 -> 0, 32768 -> 128.
    np.testing.assert_array_equal(out, (samples >> 8).astype(F32) / F32(255))

    rgba = np.concatenate([samples, np.full((1, 2, 1), 65535, np.uint16)], axis=2)
    _write_png16(tmp_path / "rgba64.png", rgba, color_type=6)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba64.png"), out)


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)  # left half red
    pixels[:, 16:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (32, 16, 3)
    top, bottom = out[2:14].mean(axis=(0, 1)), out[18:30].mean(axis=(0, 1))
    assert top[0] > 0.8 and top[2] < 0.2  # the left (red) half is now on top
    assert bottom[2] > 0.8 and bottom[0] < 0.2


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match=r"nope\.png") as info:
        load_image(missing)
    assert "no such file" in str(info.value)
    assert isinstance(info.value, OSError)


def test_load_non_image_and_directory_and_truncated(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ImageLoadError, match=r"notes\.txt.*not an image"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"cut\.png"):
        load_image(str(tmp_path / "cut.png"))


# --------------------------------------------------------------------------------------
# preprocess_image
# --------------------------------------------------------------------------------------


def test_preprocess_uint8_defaults() -> None:
    out = preprocess_image(np.array([[[0, 128, 255]]], dtype=np.uint8))
    assert out.shape == (1, 3, 1, 1) and out.dtype == torch.float32
    # x / 255, then (x - 0.5) / 0.5
    np.testing.assert_allclose(out.flatten().numpy(), [-1.0, 128 / 255 * 2 - 1, 1.0], atol=1e-7)


def test_preprocess_float_taken_as_is_and_imagenet_stats() -> None:
    img = np.array([[[0.25, 0.5, 1.0], [0.0, 0.0, 0.0]]])  # float64, [1, 2, 3]
    out = preprocess_image(img)
    assert out.dtype == torch.float64 and out.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [-0.5, 0.0, 1.0])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = preprocess_image(img.astype(F32), mean=mean, std=std)
    assert out.dtype == torch.float32
    expected = [(0.25 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1.0 - 0.406) / 0.225]
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), expected, rtol=1e-6)


def test_preprocess_grey() -> None:
    grey = np.array([[0, 255, 51]], dtype=np.uint8)
    out = preprocess_image(grey)
    assert out.shape == (1, 3, 1, 3)
    torch.testing.assert_close(out[0, 0], out[0, 2])
    np.testing.assert_allclose(out[0, 1, 0].numpy(), [-1, 1, -0.6], atol=1e-6)
    assert preprocess_image(grey, mean=[0.5], std=[0.5]).shape == (1, 1, 1, 3)


def test_preprocess_errors() -> None:
    with pytest.raises(InputShapeError):
        preprocess_image(np.zeros((2, 2, 4), dtype=np.uint8))
    with pytest.raises(TypeError):
        preprocess_image(np.zeros((2, 2, 3), dtype=np.int16))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        preprocess_image(torch.zeros(2, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std"):
        preprocess_image(np.zeros((2, 2, 3), dtype=F32), std=(0.5, 0.0, 0.5))


# --------------------------------------------------------------------------------------
# Colour maps and show_cam_on_image
# --------------------------------------------------------------------------------------

# BGR entries of cv2.COLORMAP_JET at a few rows (the corners of its piecewise-linear curves
# and the half-way rows, where rounding is decided by OpenCV's float32 arithmetic).
JET_BGR = {
    0: (128, 0, 0),
    31: (252, 0, 0),
    32: (255, 0, 0),
    63: (255, 124, 0),
    96: (254, 255, 2),
    127: (130, 255, 126),
    128: (126, 255, 130),
    159: (1, 255, 254),
    160: (0, 252, 255),
    191: (0, 128, 255),
    224: (0, 0, 252),
    255: (0, 0, 128),
}

# First 16 hex digits of sha256 over each full OpenCV table (uint8 [256, 3], BGR).
OPENCV_TABLE_SHA256 = {
    "autumn": "0efcea330d43e24b",
    "bone": "a996b1a95095966d",
    "jet": "7d50956401c66a4d",
    "winter": "2429d3757103c02c",
    "rainbow": "532d9c9e48b2571a",
    "ocean": "84295c4ef25f1c31",
    "summer": "d967bf0212d908a1",
    "spring": "bfed92bfaf658b31",
    "cool": "32add3c559655571",
    "hsv": "dc36e9109587b329",
    "pink": "cab2183efb6680f9",
    "hot": "ba3719310cfbec3d",
    "parula": "269933adfd08b4ad",
    "magma": "e1be1558d4aa52fd",
    "inferno": "9c23e2944db7da09",
    "plasma": "452f724de9565149",
    "viridis": "d8fb0ffd6222af15",
    "cividis": "bbcbbad4b09dc98b",
    "twilight": "bb66fc6024a5b2b2",
    "twilight_shifted": "025f7b52f52ffe53",
    "turbo": "75ab0fbff47e2346",
    "deepgreen": "b7c7814eaa880d27",
}


def test_jet_table_rows_match_opencv() -> None:
    bgr = colormap_lut(COLORMAP_JET)[:, ::-1]
    for row, colour in JET_BGR.items():
        assert tuple(bgr[row]) == colour, row


@pytest.mark.parametrize("code", range(len(COLORMAP_NAMES)))
def test_every_table_equals_opencv(code: int) -> None:
    name = COLORMAP_NAMES[code]
    table = np.ascontiguousarray(colormap_lut(code)[:, ::-1])
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert hashlib.sha256(table.tobytes()).hexdigest()[:16] == OPENCV_TABLE_SHA256[name]


def test_other_tables_ends_and_middle() -> None:
    expected_bgr = {  # rows 0, 128, 255
        "hot": [(0, 0, 0), (0, 65, 255), (255, 255, 255)],
        "bone": [(0, 0, 0), (144, 123, 112), (255, 255, 255)],
        "viridis": [(84, 1, 68), (140, 145, 33), (37, 231, 253)],
        "inferno": [(4, 0, 0), (84, 55, 188), (164, 255, 252)],
        "magma": [(4, 0, 0), (121, 55, 183), (191, 253, 252)],
        "plasma": [(135, 8, 13), (120, 71, 204), (33, 249, 240)],
        "turbo": [(59, 18, 48), (60, 252, 164), (3, 4, 122)],
    }
    for name, rows in expected_bgr.items():
        got = colormap_lut(name)[[0, 128, 255], ::-1]
        assert [tuple(r) for r in got] == rows, name


def test_colormap_names_codes_and_user_tables() -> None:
    np.testing.assert_array_equal(colormap_lut("viridis"), colormap_lut(COLORMAP_VIRIDIS))
    np.testing.assert_array_equal(colormap_lut("COLORMAP_VIRIDIS"), colormap_lut(16))
    np.testing.assert_array_equal(colormap_lut(np.int64(2)), colormap_lut("Jet"))
    user_bgr = np.ascontiguousarray(colormap_lut("hot")[:, ::-1])
    np.testing.assert_array_equal(colormap_lut(user_bgr.reshape(256, 1, 3)), colormap_lut("hot"))
    with pytest.raises(ValueError, match="viridis"):
        colormap_lut("virdis")
    with pytest.raises(ValueError, match="code"):
        colormap_lut(99)
    with pytest.raises(TypeError):
        colormap_lut(True)
    with pytest.raises(InputShapeError):
        colormap_lut(np.zeros((10, 3), np.uint8))
    assert not colormap_lut("jet").flags.writeable


def _example() -> tuple[np.ndarray, np.ndarray]:
    img = np.array(
        [[[0.2, 0.2, 0.2], [0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [0.4, 0.6, 0.8]]], dtype=F32
    )
    mask = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=F32)
    return img, mask


def test_show_cam_on_image_by_hand() -> None:
    img, mask = _example()
    # Rows uint8(255 * mask) = 0, 255, 127, 63; JET in RGB: (0,0,128), (128,0,0),
    # (126,255,130), (0,124,255). cam = 0.7 * heat / 255 + 0.3 * img; its maximum is 1
    # (green of the white pixel), then uint8(255 * cam / max) truncates:
    #   (0,0): 0.3*0.2*255 = 15.3; blue 0.7*128 + 15.3 = 104.9
    #   (0,1): 0.7*128 = 89.6
    #   (1,0): 0.7*126 + 76.5 = 164.7; 255; 0.7*130 + 76.5 = 167.5
    #   (1,1): 0.3*0.4*255 = 30.6; 0.7*124 + 45.9 = 132.7; 178.5 + 61.2 = 239.7
    expected = [[[15, 15, 104], [89, 0, 0]], [[164, 255, 167], [30, 132, 239]]]
    out = show_cam_on_image(img, mask, use_rgb=True, image_weight=0.3)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, expected)
    # Accepts [1, H, W] masks and torch tensors alike.
    again = show_cam_on_image(torch.from_numpy(img), mask[None], use_rgb=True, image_weight=0.3)
    np.testing.assert_array_equal(again, expected)


def test_show_cam_on_image_bgr_default_and_division_by_max() -> None:
    black = np.zeros((1, 1, 3), dtype=F32)
    cold = np.zeros((1, 1), dtype=F32)
    # cam = 0.5 * JET[0] / 255 = blue 0.25 only, which the division by the max lifts to 255.
    np.testing.assert_array_equal(show_cam_on_image(black, cold), [[[255, 0, 0]]])  # BGR
    np.testing.assert_array_equal(show_cam_on_image(black, cold, use_rgb=True), [[[0, 0, 255]]])
    # A blend that is black everywhere gives black, not NaN.
    bone = show_cam_on_image(black, cold, colormap="bone")
    np.testing.assert_array_equal(bone, np.zeros((1, 1, 3), np.uint8))


def test_show_cam_on_image_colormap_by_name() -> None:
    img, mask = _example()
    by_name = show_cam_on_image(img, mask, colormap="viridis")
    np.testing.assert_array_equal(by_name, show_cam_on_image(img, mask, colormap=16))
    assert not np.array_equal(by_name, show_cam_on_image(img, mask))


def test_show_cam_on_image_errors() -> None:
    img, mask = _example()
    with pytest.raises(ValueError, match=r"range \[0, 1\]"):
        show_cam_on_image(img * 255, mask)
    for weight in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="image_weight"):
            show_cam_on_image(img, mask, image_weight=weight)
    with pytest.raises(InputShapeError, match="2x2"):
        show_cam_on_image(img, np.zeros((3, 3), F32))
    with pytest.raises(NonFiniteError):
        show_cam_on_image(img, np.full((2, 2), np.nan, F32))


def test_apply_colormap_rows_and_shape() -> None:
    values = (np.arange(256) + 0.5) / 255
    np.testing.assert_array_equal(apply_colormap(values), colormap_lut("jet"))
    out = apply_colormap(np.zeros((2, 3, 4)), colormap="turbo")
    assert out.shape == (2, 3, 4, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0, 0]) == (48, 18, 59)
    # Out-of-range values are clipped to the ends of the table.
    np.testing.assert_array_equal(apply_colormap([-3.0, 7.0]), colormap_lut("jet")[[0, 255]])


def test_signed_heatmap_colours() -> None:
    out = signed_heatmap(np.array([[-2.0, 0.0, 2.0]]))
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == SIGNED_NEGATIVE_RGB
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(out[0, 2]) == SIGNED_POSITIVE_RGB
    # A fixed limit: values beyond it saturate, half of it is half-way to white.
    limited = signed_heatmap(torch.tensor([4.0, 1.0]), limit=2.0)
    assert tuple(limited[0]) == SIGNED_POSITIVE_RGB
    np.testing.assert_allclose(limited[1], (np.array(SIGNED_POSITIVE_RGB) + 255) / 2, atol=0.5)
    np.testing.assert_array_equal(signed_heatmap(np.zeros((2, 2))), np.full((2, 2, 3), 255))
    with pytest.raises(ValueError, match="limit"):
        signed_heatmap(np.ones(3), limit=0)
    with pytest.raises(NonFiniteError):
        signed_heatmap(np.array([np.inf]))


def test_overlay_plain_blend() -> None:
    img = np.zeros((2, 2, 3), dtype=F32)
    heat = np.zeros((2, 2, 3), dtype=np.uint8)
    heat[..., 0] = 255
    out = overlay(img, heat, alpha=0.2)
    np.testing.assert_array_equal(out, np.broadcast_to([51, 0, 0], (2, 2, 3)))
    with pytest.raises(InputShapeError):
        overlay(img, heat[:1])
    with pytest.raises(ValueError):
        overlay(img, heat, alpha=2)


def test_mask_to_rgb_and_palette() -> None:
    out = mask_to_rgb(np.array([[0, 1], [2, 3]]))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [128, 128, 0]]])
    assert len(np.unique(label_palette(256), axis=0)) == 256
    custom = mask_to_rgb(torch.tensor([1, 0]), palette=[(1, 2, 3), (4, 5, 6)])
    np.testing.assert_array_equal(custom, [[4, 5, 6], [1, 2, 3]])
    with pytest.raises(ValueError, match="palette"):
        mask_to_rgb(np.array([300]))
    with pytest.raises(TypeError):
        mask_to_rgb(np.array([0.5]))


# --------------------------------------------------------------------------------------
# Grids, files, scaling
# --------------------------------------------------------------------------------------


def test_make_grid_shapes_and_placement() -> None:
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    grey = np.full((15, 5), 0.5)
    flags = np.ones((8, 8), dtype=bool)

    row = make_grid([rgb, grey, flags])
    assert row.shape == (15 + 2 * 4, 20 + 5 + 8 + 4 * 4, 3) and row.dtype == np.uint8
    # rgb is centred vertically in the 15-pixel row: offset (15 - 10) // 2 = 2.
    np.testing.assert_array_equal(row[4 + 2 : 4 + 12, 4:24], rgb)
    np.testing.assert_array_equal(row[4:19, 28:33], np.full((15, 5, 3), 128))

    grid = make_grid([rgb, grey, flags], labels=["a", "b", "c"], ncols=2, label_height=12)
    # Columns: max(20, 8) and 5 wide; rows: 15 and 8 tall, each with a 12-pixel label.
    assert grid.shape == (15 + 8 + 2 * 12 + 3 * 4, 20 + 5 + 3 * 4, 3)
    assert grid[4:16, 4:24].min() < 128  # some dark text in the first label strip
    np.testing.assert_array_equal(grid[4 + 12 + 2 : 4 + 12 + 12, 4:24], rgb)

    auto = make_grid([rgb], labels=["two\nlines"])
    assert auto.shape[0] > make_grid([rgb], labels=["one"]).shape[0] > 10 + 8
    with pytest.raises(InputShapeError):
        make_grid([rgb, grey], labels=["only one"])


def test_save_image_round_trip(tmp_path: Path) -> None:
    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    path = save_image(tmp_path / "rgb.png", rgb)
    assert path == tmp_path / "rgb.png"
    with Image.open(path) as written:
        np.testing.assert_array_equal(np.asarray(written), rgb)

    save_image(tmp_path / "grey", np.array([[0.0, 0.5, 1.0]]))
    with Image.open(tmp_path / "grey") as grey:
        assert grey.format == "PNG" and grey.mode == "L"
        np.testing.assert_array_equal(np.asarray(grey), [[0, 128, 255]])

    rgba = np.zeros((1, 1, 4), dtype=np.uint8)
    save_image(tmp_path / "rgba.png", rgba)
    assert _mode(tmp_path / "rgba.png") == "RGBA"


def test_scale_to_unit() -> None:
    zeros = scale_to_unit(np.zeros((3, 3)))
    assert zeros.dtype == np.float32 and not np.isnan(zeros).any() and not zeros.any()
    cam = np.array([1.0, 2.0, 3.0], dtype=F32)
    # pytorch-grad-cam's numbers: (x - min) / (1e-7 + max(x - min)), float32 throughout.
    shifted = cam - np.min(cam)
    np.testing.assert_array_equal(scale_to_unit(cam), shifted / (1e-7 + np.max(shifted)))
    batch = np.stack([np.full((2, 2), 5.0), np.array([[0.0, 1.0], [2.0, 4.0]])])
    per_map = scale_to_unit(batch, axis=(-2, -1))
    np.testing.assert_array_equal(per_map[0], np.zeros((2, 2)))
    np.testing.assert_allclose(per_map[1], [[0, 0.25], [0.5, 1]], atol=1e-6)
    with pytest.raises(NonFiniteError):
        scale_to_unit(np.array([np.nan, 1.0]))
