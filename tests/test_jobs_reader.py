"""camlens.jobs.reader: sizes from headers, the pixel limit, reading, the bounded stream."""

from __future__ import annotations

import random
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from camlens.errors import ImageLoadError
from camlens.image import load_image
from camlens.jobs.reader import (
    DEFAULT_MAX_PIXELS,
    MAX_SIZE_SIDE,
    ImageTooLargeError,
    probe_size,
    read_image,
    stream,
)

try:
    from camlens.cli.job import load_resized
except ImportError:  # the CLI moved on; the numbers it always produced, restated

    def load_resized(path: Path, size: tuple[int, int] | None) -> np.ndarray:
        image = load_image(path)
        if size is not None and tuple(image.shape[:2]) != tuple(size):
            resized = Image.fromarray((image * 255).round().astype(np.uint8)).resize(
                (size[1], size[0]), Image.BILINEAR
            )
            image = np.asarray(resized, dtype=np.float32) / 255
        return image


RNG = np.random.default_rng(0)
H, W = 30, 50  # not square, so a swap of the sides shows


# -- helpers ---------------------------------------------------------------------------------------
def _refuse_to_decode(self: ImageFile.ImageFile) -> None:
    raise AssertionError(f"pixels of {self.format} decoded")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding pixels fails loudly: what runs under this fixture reads headers only."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", _refuse_to_decode)


def _probe_header_only(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[int, int]:
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", _refuse_to_decode)
        return probe_size(path)


def _chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data))


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        found.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return found


def _blank_png(path: Path, height: int, width: int) -> Path:
    """A valid 1-bit all-black PNG, written without Pillow: big images cost a few KB."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(bytes((1 + (width + 7) // 8) * height), 1)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows)
    path.write_bytes(png + _chunk(b"IEND", b""))
    return path


def _save(path: Path, mode: str) -> Path:
    if mode == "I;16":
        Image.fromarray(RNG.integers(0, 65536, (H, W), dtype=np.uint16)).save(path)
    elif mode == "F":
        Image.fromarray(RNG.random((H, W), dtype=np.float32)).save(path)
    else:
        rgba = Image.fromarray(RNG.integers(0, 256, (H, W, 4), dtype=np.uint8))
        image = rgba.convert("RGB").convert("P") if mode == "P" else rgba.convert(mode)
        image.save(path)
    return path


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _wait_for_threads(count: int, timeout: float = 2.0) -> int:
    deadline = time.monotonic() + timeout
    while threading.active_count() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


# -- limits ---------------------------------------------------------------------------------------
def test_limits_are_sane() -> None:
    assert 7680 * 4320 <= DEFAULT_MAX_PIXELS < 12000 * 12000  # 8K frames in, the 11 GB PNG out
    assert DEFAULT_MAX_PIXELS <= Image.MAX_IMAGE_PIXELS  # default decodes never lift Pillow's
    assert MAX_SIZE_SIDE == 16384


# -- probe_size -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGB", ".png"), ("RGBA", ".png"), ("L", ".png"), ("LA", ".png"), ("P", ".png"),
     ("1", ".png"), ("I;16", ".png"), ("RGB", ".jpg"), ("F", ".tif"), ("RGB", ".webp")],
)  # fmt: skip
def test_probe_is_the_decoded_shape(
    tmp_path: Path, mode: str, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / f"image{suffix}", mode)
    probed = _probe_header_only(monkeypatch, path)
    assert probed == load_image(path).shape[:2] == (H, W)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_follows_exif_orientation(
    tmp_path: Path, orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (W, H), "red").save(path, exif=_exif(orientation))
    probed = _probe_header_only(monkeypatch, path)
    assert probed == load_image(path).shape[:2]
    assert probed == ((W, H) if orientation >= 5 else (H, W))


@pytest.mark.parametrize("where", ["before", "after"])
def test_probe_reads_png_orientation_before_or_after_the_pixels(
    tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow reads a PNG's trailing eXIf only when decoding; the probe skips to it."""
    path = tmp_path / "rotated.png"
    Image.new("RGB", (W, H), "blue").save(path, exif=_exif(6))
    chunks = _chunks(path.read_bytes())
    if where == "after":
        exif = next(chunk for chunk in chunks if chunk[0] == b"eXIf")
        chunks.remove(exif)
        chunks.insert(-1, exif)  # just before IEND
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(*chunk) for chunk in chunks))
    probed = _probe_header_only(monkeypatch, path)
    assert probed == load_image(path).shape[:2] == (W, H)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not an image at all", "not an image format that Pillow recognises"),
        ("header cut", "damaged or truncated"),
        (None, "no such file"),
        ("directory", "directory"),
    ],
)
def test_unreadable_files_give_a_reason(
    tmp_path: Path, content: bytes | str | None, reason: str, no_decoding: None
) -> None:
    path = tmp_path / "bad.png"
    if content == "header cut":
        Image.new("RGB", (W, H)).save(path)
        path.write_bytes(path.read_bytes()[:20])  # inside IHDR
    elif content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as caught:
        probe_size(path)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, ImageTooLargeError)


def test_damage_after_the_header_is_found_when_decoding(tmp_path: Path) -> None:
    path = _save(tmp_path / "cut.png", "RGB")
    path.write_bytes(path.read_bytes()[:-600])  # inside the pixel data
    assert probe_size(path) == (H, W)
    with pytest.raises(ImageLoadError, match=r"cut\.png"):
        read_image(path, None)


def test_an_image_over_the_limit_is_refused_from_its_header(
    tmp_path: Path, no_decoding: None
) -> None:
    """400 Mpx in a 200 KB file: over camlens's limit and over twice Pillow's (its error)."""
    path = _blank_png(tmp_path / "huge.png", 20000, 20000)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    for refuse in (lambda: probe_size(path), lambda: read_image(path, (224, 224))):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            start = time.perf_counter()
            with pytest.raises(ImageTooLargeError) as caught:
                refuse()
            elapsed = time.perf_counter() - start
        assert elapsed < 0.5
        assert not seen  # no DecompressionBombWarning, no other warning
    error = caught.value
    assert (error.height, error.width, error.max_pixels) == (20000, 20000, DEFAULT_MAX_PIXELS)
    message = str(error)
    for part in ("huge.png", "20000 × 20000 = 400 Mpx", "33.6 Mpx", "--max-pixels", "slide"):
        assert part in message
    assert isinstance(error, ImageLoadError)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):  # what Pillow alone would have done
        Image.open(path)


def test_the_limit_is_the_callers(tmp_path: Path, no_decoding: None) -> None:
    path = tmp_path / "zeros.png"
    Image.new("1", (5000, 4000)).save(path)  # W × H
    assert path.stat().st_size < 20_000
    assert probe_size(path) == (4000, 5000)  # 20 Mpx: under the default limit
    with pytest.raises(ImageTooLargeError, match="4000 × 5000 = 20 Mpx exceeds the limit"):
        probe_size(path, max_pixels=4000 * 5000 - 1)


def test_pillows_own_check_never_stops_an_admitted_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Pillow's limit below the image (as with --max-pixels above 89 Mpx), an admitted
    image decodes without Pillow's warning or error, in several threads at once, and
    Pillow's setting is back as it was afterwards."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # H × W = 1500 > 2 × 500: an error
    path = _save(tmp_path / "image.png", "RGBA")
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)  # Pillow alone
    results = list(stream([path] * 16, lambda p: read_image(p, None), workers=4, prefetch=8))
    assert all(isinstance(image, np.ndarray) for _, image in results)
    assert Image.MAX_IMAGE_PIXELS == 500
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    np.testing.assert_array_equal(results[0][1], load_image(path))


# -- read_image -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("size", [None, (H, W), (16, 20), (64, 96)])
def test_read_image_has_the_numbers_of_load_resized(
    tmp_path: Path, mode: str, size: tuple[int, int] | None
) -> None:
    path = _save(tmp_path / "image.png", mode)
    image = read_image(path, size)
    expected = load_resized(path, size)
    assert image.dtype == np.float32
    assert image.shape == (*(size or (H, W)), 3)
    np.testing.assert_array_equal(image, expected)


# -- stream ----------------------------------------------------------------------------------------
def test_stream_yields_in_input_order_with_errors_in_place() -> None:
    def read(task: int) -> int:
        time.sleep(random.Random(task).uniform(0, 0.01))
        if task % 7 == 3:
            raise ValueError(f"bad {task}")
        return task * 10

    out = list(stream(range(40), read, workers=3, prefetch=5))
    assert [task for task, _ in out] == list(range(40))
    for task, result in out:
        if task % 7 == 3:
            assert isinstance(result, ValueError) and str(result) == f"bad {task}"
        else:
            assert result == task * 10


@pytest.mark.parametrize(("workers", "prefetch"), [(2, 4), (1, 1), (3, 2)])
def test_stream_bounds_the_results_ahead_of_the_consumer(workers: int, prefetch: int) -> None:
    lock = threading.Lock()
    started = consumed = 0
    ahead: list[int] = []
    pulled = 0

    def tasks() -> Iterator[int]:
        nonlocal pulled
        for task in range(30):
            pulled += 1
            yield task

    def read(task: int) -> int:
        nonlocal started
        with lock:
            started += 1
            ahead.append(started - consumed)
        return task

    for _task, _result in stream(tasks(), read, workers=workers, prefetch=prefetch):
        with lock:
            consumed += 1
        assert pulled <= consumed + prefetch  # the tasks are pulled lazily
        time.sleep(0.005)  # a slow consumer: the readers run ahead as far as allowed
    assert max(ahead) <= prefetch + min(workers, prefetch)
    assert prefetch <= max(ahead) <= prefetch + 1
    assert started == consumed == 30


def _slow(task: int, started: list[int]) -> int:
    started.append(task)
    time.sleep(0.02)
    return task


@pytest.mark.parametrize("how", ["break", "error", "interrupt", "close"])
def test_stopping_early_leaves_no_thread(how: str) -> None:
    before = threading.active_count()
    started: list[int] = []
    tasks = range(1000)
    if how == "close":
        items = stream(tasks, lambda t: _slow(t, started), workers=2, prefetch=4)
        next(items)
        assert threading.active_count() > before
        items.close()
    elif how == "break":
        for task, _ in stream(tasks, lambda t: _slow(t, started), workers=2, prefetch=4):
            if task == 2:
                break
    else:
        raised = RuntimeError if how == "error" else KeyboardInterrupt
        with pytest.raises(raised):
            for task, _ in stream(tasks, lambda t: _slow(t, started), workers=2, prefetch=4):
                if task == 2:
                    raise raised("consumer stops")
    assert _wait_for_threads(before) == before
    assert len(started) <= 3 + 4 + 2  # the tasks not yet started were cancelled


def test_stream_reraises_a_base_exception_from_read_and_stops() -> None:
    before = threading.active_count()

    def read(task: int) -> int:
        if task == 5:
            raise SystemExit("read gave up")
        return task

    seen = []
    with pytest.raises(SystemExit):
        for task, _ in stream(range(100), read):
            seen.append(task)
    assert seen == list(range(5))
    assert _wait_for_threads(before) == before


def test_stream_checks_its_arguments_at_once_and_starts_threads_lazily() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        stream([1], str, workers=0)
    with pytest.raises(ValueError, match="at least 1"):
        stream([1], str, prefetch=0)
    before = threading.active_count()
    unused = stream(range(10), str)
    assert threading.active_count() == before
    del unused
    assert list(stream([], str)) == []
