"""Reading a job's images: sizes from the file headers, pixels in bounded reader threads.

A job reads images one batch ahead of the model, never the whole folder at once:

* :func:`probe_size` gives the ``(H, W)`` that :func:`camlens.image.load_image` will return,
  from the file header alone (no pixel is decoded), and refuses a file larger than the pixel
  limit with :class:`ImageTooLargeError` — so a 445 KB PNG of 12000 × 12000 pixels costs a
  millisecond instead of 189 s and 11 GB;
* :func:`read_image` probes, decodes and resizes one image, exactly as ``camlens explain``
  always has (bilinear through 8 bits);
* :func:`stream` runs any ``read(task)`` in a few threads, in input order, with a bounded
  number of results ahead of the consumer, so memory does not grow with the number of tasks.

Pillow's decompression-bomb check (``PIL.Image.MAX_IMAGE_PIXELS``, a warning above ~89 Mpx
and an error above twice that) is global to the process. camlens applies its own limit,
from the header, before Pillow sees the pixels; Pillow's check is switched off only while
camlens needs it off, by :func:`_pillow_bomb_check_off` (reference-counted across threads,
restored when the last reader leaves it): during each header probe (no pixel is decoded
there), and while decoding an image that camlens has already admitted but that is larger
than Pillow's own limit (only possible when ``max_pixels`` is raised above it). With the
default limit, decoding never touches Pillow's setting.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from camlens.errors import ImageLoadError
from camlens.image import load_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_SIZE_SIDE",
    "ImageTooLargeError",
    "probe_size",
    "read_image",
    "stream",
]

#: The largest image (H × W pixels) a job decodes unless told otherwise: 2**25 = 33,554,432,
#: e.g. 8192 × 4096. It admits what classifiers and segmenters are given — photos up to
#: 24 Mpx (6000 × 4000), 8K UHD frames (7680 × 4320 = 33.2 Mpx) — and refuses the
#: 12000 × 12000 PNG that took 11 GB, and whole-slide images, which must go through
#: ``camlens slide`` (tiles) instead. Memory: one such image is 384 MB as float32 RGB, and
#: decoding peaks at 24–56 bytes per pixel (RGB–RGBA, measured with ``load_image`` and the
#: 8-bit resize), 0.8–1.9 GB per reader thread. It is below Pillow's own warning threshold
#: (89.5 Mpx), so decoding never needs Pillow's setting changed unless the limit is raised.
DEFAULT_MAX_PIXELS: int = 2**25

#: The largest side ``--size`` accepts: 16384, the largest texture side of most GPUs and far
#: beyond any model input; a bound that catches typos (``--size 2240 2240`` for 224) before
#: a model sees a 2-gigapixel input. (The CLI also bounds H × W by the pixel limit.)
MAX_SIZE_SIDE: int = 16384

#: EXIF orientations whose transposition swaps height and width (``ImageOps.exif_transpose``
#: applies TRANSPOSE, ROTATE_270, TRANSVERSE and ROTATE_90 for them).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
#: PNG chunks that Pillow reads after the pixel data only when decoding, and that can carry
#: the orientation (eXIf; "Raw profile type exif" or XMP in text chunks).
_PNG_METADATA_CHUNKS = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt"})
_PNG_DATA_CHUNKS = frozenset({b"IDAT", b"fdAT"})

T = TypeVar("T")
R = TypeVar("R")


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the job's limit; refused from its header, undecoded.

    Attributes: ``path``, ``height``, ``width`` (as :func:`probe_size` reports them) and
    ``max_pixels`` (the limit it exceeds).
    """

    def __init__(self, path: Path, height: int, width: int, max_pixels: int) -> None:
        self.path = path
        self.height = height
        self.width = width
        self.max_pixels = max_pixels
        super().__init__(
            f"cannot load image '{path}': {height} × {width} = {_mpx(height * width)} exceeds "
            f"the limit of {_mpx(max_pixels)} ({max_pixels:,} pixels); resize it, raise "
            "--max-pixels, or use `camlens slide` for whole-slide images"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (process pools, Ray), like OSError
        return (type(self), (self.path, self.height, self.width, self.max_pixels))


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} Mpx"


# -- Pillow's global decompression-bomb limit -----------------------------------------------------
_pillow_lock = threading.Lock()
_pillow_holders = 0
_pillow_saved: int | None = None


@contextmanager
def _pillow_bomb_check_off() -> Iterator[None]:
    """Switch Pillow's decompression-bomb check off while inside, in any number of threads.

    The first thread in saves ``Image.MAX_IMAGE_PIXELS`` and sets it to ``None``; the last
    one out restores it (unless someone else changed it meanwhile), so nothing leaks and
    overlapping readers do not restore each other's ``None``. Other code that opens images
    in the same process during that window is not checked by Pillow; camlens's own readers
    have checked the size from the header already.
    """
    global _pillow_holders, _pillow_saved
    with _pillow_lock:
        if _pillow_holders == 0:
            _pillow_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _pillow_holders += 1
    try:
        yield
    finally:
        with _pillow_lock:
            _pillow_holders -= 1
            if _pillow_holders == 0 and Image.MAX_IMAGE_PIXELS is None:
                Image.MAX_IMAGE_PIXELS = _pillow_saved


def _pillow_limit() -> int | None:
    """Pillow's own limit as the user set it (not our temporary ``None``)."""
    with _pillow_lock:
        return _pillow_saved if _pillow_holders else Image.MAX_IMAGE_PIXELS


# -- sizes from headers ---------------------------------------------------------------------------
def probe_size(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """The ``(H, W)`` that :func:`camlens.image.load_image` will return, from the header only.

    Pillow's ``open`` reads the header; the EXIF orientation (5–8 swap the sides, as
    ``ImageOps.exif_transpose`` does) comes from the same metadata Pillow would use. For a
    PNG, metadata stored after the pixel data is found by skipping from chunk to chunk
    (Pillow's ``PngImageFile.getexif`` would decode the whole image to reach it). No pixel
    is decoded, so a job can plan its batches and refuse oversized or unreadable files
    before any work.

    Args:
        path: the image file.
        max_pixels: the largest H × W admitted.

    Raises:
        ImageTooLargeError: H × W exceeds ``max_pixels`` (checked before anything else is
            read; Pillow's decompression-bomb check never fires here).
        ImageLoadError: the file is missing, a directory, not an image Pillow recognises, or
            its header is truncated or corrupt. (Damage after the header is found when the
            pixels are decoded, by :func:`read_image`.)
    """
    file = Path(path)
    if not file.exists():
        raise ImageLoadError(f"cannot load image '{file}': no such file")
    if file.is_dir():
        raise ImageLoadError(f"cannot load image '{file}': it is a directory, not a file")
    try:
        with _pillow_bomb_check_off():  # only the header is read while it is off
            opened = Image.open(file)
        with opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageTooLargeError(file, height, width, max_pixels)
            orientation = _orientation(opened, file)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"cannot load image '{file}': not an image format that Pillow recognises "
            "(is it an image? convert it to PNG or JPEG)"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageLoadError(
            f"cannot load image '{file}': {str(exc) or type(exc).__name__} "
            "(the header is damaged or truncated: re-export or re-download the file)"
        ) from exc
    return (width, height) if orientation in _SWAPPING_ORIENTATIONS else (height, width)


def _orientation(opened: Image.Image, file: Path) -> int:
    """The EXIF orientation ``exif_transpose`` will see, without decoding pixels."""
    if isinstance(opened, PngImagePlugin.PngImageFile):
        opened.info.update(_png_trailing_metadata(file))
        exif = Image.Image.getexif(opened)  # the PNG override would decode first
    else:
        exif = opened.getexif()
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    return orientation if isinstance(orientation, int) else 1


def _png_trailing_metadata(file: Path) -> dict[Any, Any]:
    """The metadata Pillow reads from a PNG's chunks after the pixel data when it decodes.

    Pillow reads them in ``load_end`` (until ``IEND``, or the next animation frame);
    here the pixel chunks are skipped by seeking. A damaged tail ends the walk quietly:
    the size is known, and decoding will report the damage.
    """
    with open(file, "rb") as fp:
        fp.seek(8)  # the signature
        chunks = PngImagePlugin.PngStream(fp)
        after_data = False
        try:
            while True:
                cid, pos, length = chunks.read()
                if cid == b"IEND" or (after_data and cid == b"fcTL"):
                    break
                if after_data and cid in _PNG_METADATA_CHUNKS:
                    chunks.call(cid, pos, length)
                else:
                    fp.seek(length, os.SEEK_CUR)
                fp.seek(4, os.SEEK_CUR)  # the CRC
                after_data = after_data or cid in _PNG_DATA_CHUNKS
        except (OSError, ValueError, SyntaxError, EOFError, struct.error):
            pass
        return chunks.im_info


# -- pixels --------------------------------------------------------------------------------------
def read_image(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """One image as float32 ``(H, W, 3)`` in ``[0, 1]``, resized to ``size`` = (H, W) if given.

    The header is probed first (:func:`probe_size`), so a file over ``max_pixels`` is
    refused before it is decoded; then :func:`camlens.image.load_image` decodes it (EXIF
    orientation, transparency over white, 16-bit grey, ...); then, if ``size`` differs from
    the image's, it is resized bilinearly through 8 bits — the numbers ``camlens explain``
    has always produced (``cli.job.load_resized``).

    Raises:
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
        ImageLoadError: the file cannot be read or decoded (the message says why).
    """
    height, width = probe_size(path, max_pixels=max_pixels)
    pillow_limit = _pillow_limit()
    if pillow_limit is not None and height * width > pillow_limit:
        with _pillow_bomb_check_off():  # admitted by our limit, which was raised above Pillow's
            image = load_image(path)
    else:
        image = load_image(path)
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        resized = Image.fromarray((image * 255).round().astype(np.uint8)).resize(
            (size[1], size[0]), Image.BILINEAR
        )
        image = np.asarray(resized, dtype=np.float32) / 255
    return image


# -- bounded, ordered reader threads ---------------------------------------------------------------
def stream(
    tasks: Iterable[T],
    read: Callable[[T], R],
    *,
    workers: int = 2,
    prefetch: int = 4,
) -> Iterator[tuple[T, R | Exception]]:
    """``(task, read(task))`` for each task, in input order, read ahead in threads.

    ``read`` runs in up to ``workers`` threads (Pillow and NumPy release the GIL while they
    decode and convert, so reading overlaps the model's compute). At most ``prefetch`` tasks
    are queued, being read or read and waiting, besides the one being handed over; so peak
    memory is about ``prefetch + 2`` results (those, the one handed over and the consumer's
    previous one), whatever the number of tasks. ``tasks`` is consumed lazily. (Threads beyond
    ``prefetch`` would have nothing to read: ``min(workers, prefetch)`` threads run.)

    An exception raised by ``read`` is yielded in place of its result, so one bad file never
    stops the stream; a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
    ``SystemExit``) is re-raised. Closing the generator — a ``break``, an exception in the
    consumer, ``KeyboardInterrupt`` or ``close()`` — cancels the tasks not yet started and
    waits for the at most ``workers`` reads in progress, so no thread is left behind. The
    threads start at the first ``next()``.

    Raises:
        ValueError: ``workers`` or ``prefetch`` is below 1 (at once, not at the first item).
    """
    if workers < 1 or prefetch < 1:
        raise ValueError(f"workers and prefetch must be at least 1, got {workers}, {prefetch}")
    return _stream(iter(tasks), read, min(workers, prefetch), prefetch)


def _stream(
    tasks: Iterator[T], read: Callable[[T], R], workers: int, prefetch: int
) -> Iterator[tuple[T, R | Exception]]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camlens-reader")
    pending: deque[tuple[T, Future[R]]] = deque()

    def top_up() -> None:
        for task in islice(tasks, prefetch - len(pending)):
            pending.append((task, pool.submit(read, task)))

    try:
        top_up()
        while pending:
            task, future = pending.popleft()
            try:
                outcome: R | Exception = future.result()
            except Exception as error:
                outcome = error
            top_up()
            yield task, outcome
            del outcome  # the consumer's reference is the only one left
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
