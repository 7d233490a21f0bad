"""Writing files so that a reader sees either the old file or the whole new one, never half.

Every file camlens writes goes through this module (core layer: it imports nothing else of
camlens). Two ways of writing:

* **Whole files** (:func:`atomic_open` and the helpers on top of it): the bytes go to a
  temporary file in the same folder (``.<name>.<pid>-<n>-<random>.partial``), are flushed and
  ``fsync``-ed, and the temporary file is then renamed over the final name with
  :func:`os.replace` (atomic on one file system), after which the folder is ``fsync``-ed too
  (best effort), so the new name survives a power cut. If anything fails, including a
  ``KeyboardInterrupt`` inside the ``with`` block, the temporary file is removed and the
  final name is left as it was. A killed process (``SIGKILL``, power cut) can leave a
  ``.partial`` file behind, but never a truncated file under a final name.
* **Append-only logs** (:func:`append_line`, :func:`read_lines`): one line per record, each
  appended with one ``write`` call and ``fsync``-ed before returning. A crash can leave at
  most a partial *last* line (one without its ``"\\n"``): :func:`read_lines` ignores it, and
  the next :func:`append_line` cuts it off before appending, so a log that is resumed after a
  crash still holds only whole lines, plus at most a partial last one.

The writers are deterministic: the same data gives the same bytes, run after run (no time
stamps, no random content), given the same versions of Python, numpy, Pillow and zlib.

New files get the permissions of any new file (``0o666`` less the umask); a file that is
replaced does not keep its old permissions.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "NPZ_LEVEL",
    "ZIP_DATE_TIME",
    "append_line",
    "atomic_open",
    "json_text",
    "partial_path",
    "read_lines",
    "save_npz",
    "save_png",
    "write_bytes",
    "write_json",
    "write_text",
]

PathLike = str | os.PathLike

#: The time stamp of every entry of an archive written by :func:`save_npz` (the earliest
#: date a zip file can hold), so that the same arrays always give the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

#: Characters of a final name kept in its temporary name (file names are at most 255 bytes).
_MAX_STEM = 120

_calls = itertools.count(1)


def partial_path(path: PathLike) -> Path:
    """A fresh temporary name for writing ``path``: same folder, hidden, ``.partial`` at the end.

    ``.<name>.<pid>-<n>-<random>.partial``: unique per process (``pid``), per call (``n``) and
    across machines sharing a folder (8 random hex digits). Leftovers of killed runs can be
    found (and deleted) with the pattern ``.*.partial``.
    """
    path = Path(path)
    stem = path.name[:_MAX_STEM]
    return path.with_name(f".{stem}.{os.getpid()}-{next(_calls)}-{secrets.token_hex(4)}.partial")


def _sync_folder(folder: Path) -> None:
    """``fsync`` a folder so that a rename or a new name in it survives a crash (POSIX only;
    best effort: some systems and file systems cannot open or sync a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_open(
    path: PathLike,
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; when the block ends, make it ``path``.

    ``mode`` is ``"w"`` (text; ``encoding`` defaults to UTF-8, ``newline`` as for
    :func:`open`) or ``"wb"`` (bytes; no ``encoding`` or ``newline``). When the ``with``
    block ends normally, the file is flushed, ``fsync``-ed, closed and renamed over
    ``path`` (replacing any older file). When it ends with any exception (``KeyboardInterrupt``
    included), or the flush or rename fails, the temporary file is removed, ``path`` is left
    as it was and the exception propagates.

    ::

        with atomic_open(out / "metrics.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    if mode == "wb" and (encoding is not None or newline is not None):
        raise ValueError("encoding and newline apply to mode 'w' only")
    path = Path(path)
    partial = partial_path(path)
    handle: IO[Any] | None = None
    mine = True  # the temporary name is unique to this call: a file there is ours ...
    try:
        try:
            if mode == "wb":
                handle = open(partial, "xb")  # noqa: SIM115 - closed below, on every path
            else:
                handle = open(partial, "x", encoding=encoding or "utf-8", newline=newline)  # noqa: SIM115
        except FileExistsError:
            mine = False  # ... unless it was there before: never removed
            raise
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(partial, path)
    except BaseException:
        # Also when the open itself was interrupted (Ctrl-C after the file was created but
        # before ``handle`` was set), which used to leave the temporary file behind.
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()
        if mine:
            with contextlib.suppress(OSError):
                os.unlink(partial)
        raise
    _sync_folder(path.parent)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, line ends as given (no ``\\r\\n`` translation).

    The text is encoded before any file is touched: text that cannot be encoded (a lone
    surrogate) raises ``UnicodeEncodeError`` and leaves nothing behind.
    """
    write_bytes(path, text.encode(encoding))


def _plain(value: Any) -> Any:
    """``value`` with numpy values turned into Python ones, tuples into lists, and NaN and
    infinities into ``None``; refuses what has no deterministic JSON form."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(
        f"cannot write {type(value).__name__} as JSON (convert it to a str, number, list or "
        f"dict first): {value!r}"[:300]
    )


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as JSON text, the way :func:`write_json` writes it (without the final newline).

    Keys keep their insertion order (nothing is sorted); non-ASCII characters are written
    as they are (UTF-8 in the file); numpy scalars and arrays become numbers and lists;
    **NaN, infinity and -infinity become ``null``** (JSON has no such numbers, and strict
    readers refuse ``NaN``); sets and other objects raise ``TypeError``. ``indent=None``
    gives one compact line (``", "`` and ``": "`` separators become ``","`` and ``":"``),
    which is what a manifest line wants.
    """
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(
        _plain(obj), indent=indent, separators=separators, ensure_ascii=False, allow_nan=False
    )


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically as UTF-8 JSON (:func:`json_text`, ``indent=2``)
    with a final newline."""
    write_text(path, json_text(obj) + "\n")


def save_png(path: PathLike, image: Image.Image, *, compress_level: int = 6) -> None:
    """Save a PIL image to ``path`` atomically as PNG, deterministically (the same pixels,
    mode and ``compress_level`` give the same bytes). ``compress_level`` is zlib's 0–9:
    6 is Pillow's default; 1 encodes about twice as fast for somewhat larger files (the
    report's pictures, written per image in a job)."""
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG", compress_level=compress_level)


#: zlib level of compressed ``.npz`` entries: the fastest (float data barely compresses; a
#: job's 512² maps are 3 % larger at level 1 than at zlib's default 6, in 0.17 instead of
#: 0.27 s per image).
NPZ_LEVEL = 1


def save_npz(
    path: PathLike, arrays: Mapping[str, Any], *, compress: bool | Literal["non-float"] = False
) -> None:
    """Save named arrays to ``path`` atomically as an ``.npz`` archive :func:`numpy.load` reads.

    Unlike :func:`numpy.savez`, the output is deterministic: every entry is stamped
    :data:`ZIP_DATE_TIME` (not the current time) with fixed attributes, and entries come in
    the order of ``arrays``. ``compress=True`` deflates the entries (as
    :func:`numpy.savez_compressed`, but at zlib level :data:`NPZ_LEVEL`); ``"non-float"``
    deflates only integer and boolean entries (class masks, label maps: 50–100× smaller)
    and stores floating-point ones (a job's 512² float maps: 6.3 → 5.2 MB for 145 ms of
    CPU per image, the largest cost of writing one). Object arrays are refused (they would
    need pickle).
    """
    names = list(arrays)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"array names must be non-empty strings; got {name!r}")
    if compress not in (True, False, "non-float"):
        raise ValueError(f"compress must be True, False or 'non-float'; got {compress!r}")
    with (
        atomic_open(path, "wb") as handle,
        zipfile.ZipFile(handle, "w", allowZip64=True, compresslevel=NPZ_LEVEL) as archive,
    ):
        for name in names:
            value = np.asarray(arrays[name])
            deflate = compress is True or (compress == "non-float" and value.dtype.kind in "biu")
            compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.create_system = 3  # Unix, whatever the platform writing it
            info.external_attr = 0o644 << 16
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value, allow_pickle=False)
            # writestr, not open(info): only writestr applies a level to a ZipInfo entry
            archive.writestr(
                info, buffer.getbuffer(), compress_type=compression, compresslevel=NPZ_LEVEL
            )


def append_line(path: PathLike, text: str) -> None:
    """Append ``text`` and a ``"\\n"`` to ``path`` (created if missing) as one ``write`` call,
    then ``fsync`` it: when this returns, the line is on disk.

    For append-only logs such as a job's manifest: one JSON record per line, lines up to a
    few KB. ``text`` must not contain ``"\\n"`` or ``"\\r"``. A crash while writing can leave
    a partial last line (no ``"\\n"`` at its end), which readers must ignore
    (:func:`read_lines` does); this function first cuts such an unfinished tail off, since it
    was never acknowledged, so that the new line does not get glued to it. One writer per
    file: two processes appending to the same log is not supported.
    """
    if "\n" in text or "\r" in text:
        raise ValueError("a line must not contain '\\n' or '\\r'")
    data = (text + "\n").encode("utf-8")  # fails, if it does, before the file is touched
    path = Path(path)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags, 0o666)
    try:
        size = os.fstat(descriptor).st_size
        if size:
            _cut_unfinished_line(descriptor, size)
        written = os.write(descriptor, data)
        while written < len(data):  # a short write (rare: a signal, a full disk): finish it
            written += os.write(descriptor, data[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if size == 0:
        _sync_folder(path.parent)  # a new file: make its name durable too


def _cut_unfinished_line(descriptor: int, size: int) -> None:
    """Truncate an open file after its last ``"\\n"`` (to nothing if it has none)."""
    end = size
    chunk = 4096
    while end > 0:
        start = max(0, end - chunk)
        os.lseek(descriptor, start, os.SEEK_SET)
        block = os.read(descriptor, end - start)
        if end == size and block.endswith(b"\n"):
            return  # the usual case: the last line is whole
        cut = block.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(descriptor, start + cut + 1)
            return
        end = start
    os.ftruncate(descriptor, 0)


def read_lines(path: PathLike) -> list[str]:
    """The whole lines of an append-only log written by :func:`append_line`, in order.

    A partial last line (no final ``"\\n"``: a crash while appending) is left out; a missing
    file has no lines. Lines are split on ``"\\n"`` only (not on the other characters
    :meth:`str.splitlines` treats as line breaks, which JSON text may hold).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    whole = data[: data.rfind(b"\n") + 1]
    return [line.decode("utf-8") for line in whole.split(b"\n")[:-1]]
