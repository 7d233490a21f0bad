"""Atomic file writing (:mod:`camlens.atomic`): replace semantics, no leftovers, failures that
leave the old file intact, deterministic JSON / PNG / NPZ bytes, and the append-only log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camlens.atomic import (
    NPZ_LEVEL,
    ZIP_DATE_TIME,
    append_line,
    atomic_open,
    json_text,
    partial_path,
    read_lines,
    save_npz,
    save_png,
    write_bytes,
    write_json,
    write_text,
)
from camlens.report.atomic import write_text_atomic

POSIX = os.name == "posix"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- atomic_open ------------------------------------------------------------------------------
def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content, longer than the new one")
    with atomic_open(target, "wb") as handle:
        handle.write(b"new")
        assert target.read_bytes().startswith(b"old")  # not visible before the block ends
    assert target.read_bytes() == b"new"
    assert names(tmp_path) == ["out.bin"]


def test_temporary_is_hidden_in_the_same_folder_and_unique(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    with atomic_open(target, "w") as one, atomic_open(target, "w") as two:
        temporaries = names(tmp_path)
        assert len(temporaries) == 2 and "summary.json" not in temporaries
        for name in temporaries:
            assert name.startswith(".summary.json.") and name.endswith(".partial")
            assert f".{os.getpid()}-" in name
        one.write("one")
        two.write("two")
    assert target.read_text() == "one"  # the last to finish (the outer one) wins, whole
    assert names(tmp_path) == ["summary.json"]
    assert partial_path(target) != partial_path(target)
    assert partial_path(target).parent == tmp_path
    long = partial_path(tmp_path / ("x" * 250))
    assert len(long.name) < 200


def test_text_mode_is_utf8_and_keeps_line_ends_as_asked(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    with atomic_open(target, "w", newline="") as handle:
        handle.write("é,ü\r\n")
    assert target.read_bytes() == "é,ü\r\n".encode()
    with atomic_open(target, "w", encoding="latin-1") as handle:
        handle.write("é")
    assert target.read_bytes() == b"\xe9"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_in_block_keeps_old_file(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(error), atomic_open(target, "w") as handle:
        handle.write("half of the new")
        raise error
    assert target.read_text() == "old"
    assert names(tmp_path) == ["out.txt"]


def test_exception_in_block_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "new.bin", "wb") as handle:
        handle.write(b"x" * 100_000)
        raise KeyboardInterrupt
    assert names(tmp_path) == []


def test_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()  # the final name is a folder
    with pytest.raises(OSError):
        write_bytes(tmp_path / "taken", b"data")
    assert names(tmp_path) == ["taken"]
    with pytest.raises(FileNotFoundError):
        write_bytes(tmp_path / "no-such-folder" / "f", b"data")


def test_bad_modes_are_refused(tmp_path: Path) -> None:
    for mode in ("a", "r", "w+", "x", "ab"):
        with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "f", mode):
            pass
    with (
        pytest.raises(ValueError, match="encoding"),
        atomic_open(tmp_path / "f", "wb", encoding="utf-8"),
    ):
        pass
    assert names(tmp_path) == []


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "a", b"1")
        append_line(tmp_path / "log", "1")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "log").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
def test_killed_process_leaves_old_file_under_the_final_name(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    script = (
        "import os, signal, sys\n"
        "from camlens.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1], 'w') as handle:\n"
        "    handle.write('half' * 10000)\n"
        "    handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert run.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    leftovers = [n for n in names(tmp_path) if n != "report.html"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".partial")  # never the final name


# -- whole files -------------------------------------------------------------------------------
def test_write_text_encodes_before_touching_anything(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    write_text(target, "a\r\nb\n")
    assert target.read_bytes() == b"a\r\nb\n"
    with pytest.raises(UnicodeEncodeError):
        write_text(target, "lone surrogate \ud800")
    assert target.read_bytes() == b"a\r\nb\n"
    assert names(tmp_path) == ["page.html"]
    write_text_atomic(target, "via the report's name")  # the report keeps its old name
    assert target.read_text() == "via the report's name"


def test_write_json(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    data = {
        "z": 1,
        "a": [1.5, float("nan"), float("inf"), -float("inf")],
        "név": "é ✓",
        "np": {"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True)},
        "arr": np.arange(3, dtype=np.int16),
        "nan32": np.float32("nan"),
        "tuple": (1, None),
    }
    write_json(target, data)
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert '"név": "é ✓"' in text  # not \u-escaped
    assert "NaN" not in text and "Infinity" not in text
    assert text.startswith('{\n  "z": 1,\n  "a": [')  # insertion order, indent 2
    assert json.loads(text) == {
        "z": 1,
        "a": [1.5, None, None, None],
        "név": "é ✓",
        "np": {"f": 0.5, "i": 3, "b": True},
        "arr": [0, 1, 2],
        "nan32": None,
        "tuple": [1, None],
    }
    first = target.read_bytes()
    write_json(target, data)
    assert target.read_bytes() == first
    with pytest.raises(TypeError, match="set"):
        write_json(target, {"s": {1, 2}})
    assert target.read_bytes() == first
    assert names(tmp_path) == ["summary.json"]
    assert json_text({"a": [1, float("nan")], "b": "x"}, indent=None) == '{"a":[1,null],"b":"x"}'


def test_save_png_round_trip_and_determinism(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pictures = {
        "rgb": Image.fromarray(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)),
        "grey": Image.fromarray(rng.integers(0, 256, (4, 9), dtype=np.uint8)),
        "rgba": Image.fromarray(rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)),
    }
    for name, picture in pictures.items():
        target = tmp_path / f"{name}.png"
        save_png(target, picture)
        with Image.open(target) as loaded:
            assert loaded.format == "PNG" and loaded.mode == picture.mode
            assert np.array_equal(np.asarray(loaded), np.asarray(picture))
        first = target.read_bytes()
        save_png(target, picture)
        assert target.read_bytes() == first
    assert names(tmp_path) == ["grey.png", "rgb.png", "rgba.png"]


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    with_nan = rng.standard_normal((3, 4)).astype(np.float32)
    with_nan[1, 2] = np.nan
    return {
        "maps": rng.random((2, 3, 8, 8), dtype=np.float32),
        "scores": np.array([0.25, -1.5]),
        "class": np.asarray(7),  # 0-d
        "masks": rng.random((5, 6)) > 0.5,
        "fortran": np.asfortranarray(rng.integers(-9, 9, (3, 5), dtype=np.int64)),
        "half": np.arange(6, dtype=np.float16).reshape(2, 3),
        "empty": np.zeros((0, 4), np.uint8),
        "nan": with_nan,
        "strided": np.arange(20, dtype=np.int32)[::3],
    }


@pytest.mark.parametrize("compress", [False, True, "non-float"])
def test_save_npz_round_trip_is_exact(tmp_path: Path, compress) -> None:
    arrays = _arrays()
    target = tmp_path / "raw.npz"
    save_npz(target, arrays, compress=compress)
    with np.load(target, allow_pickle=False) as loaded:
        assert loaded.files == list(arrays)  # the given order
        for name, array in arrays.items():
            got = loaded[name]
            assert got.dtype == array.dtype and got.shape == array.shape, name
            assert got.tobytes() == array.tobytes(), name  # NaN included, bit for bit
    assert names(tmp_path) == ["raw.npz"]


@pytest.mark.parametrize("compress", [False, True, "non-float"])
def test_save_npz_is_deterministic(tmp_path: Path, compress) -> None:
    save_npz(tmp_path / "one.npz", _arrays(), compress=compress)
    save_npz(tmp_path / "two.npz", _arrays(), compress=compress)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [f"{n}.npy" for n in _arrays()]
        assert {i.date_time for i in infos} == {ZIP_DATE_TIME}
        wanted = {True: {zipfile.ZIP_DEFLATED}, False: {zipfile.ZIP_STORED}}.get(
            compress, {zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED}
        )
        assert {i.compress_type for i in infos} == wanted


def test_save_npz_compress_is_smaller_and_refuses_objects(tmp_path: Path) -> None:
    zeros = {"z": np.zeros((64, 64), np.float32)}
    save_npz(tmp_path / "plain.npz", zeros)
    save_npz(tmp_path / "small.npz", zeros, compress=True)
    assert (tmp_path / "small.npz").stat().st_size < (tmp_path / "plain.npz").stat().st_size / 10
    with pytest.raises(ValueError):
        save_npz(tmp_path / "objects.npz", {"o": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="names"):
        save_npz(tmp_path / "objects.npz", {"": np.zeros(1)})
    assert names(tmp_path) == ["plain.npz", "small.npz"]


# -- append-only log ---------------------------------------------------------------------------
def test_append_line_several_lines(tmp_path: Path) -> None:
    log = tmp_path / "manifest.jsonl"
    records = [{"key": f"img{i}", "ok": True, "name": "é\u2028x"} for i in range(5)]
    for record in records:
        append_line(log, json_text(record, indent=None))
    assert log.read_bytes().count(b"\n") == 5 and log.read_bytes().endswith(b"\n")
    assert [json.loads(line) for line in read_lines(log)] == records
    assert read_lines(tmp_path / "missing.jsonl") == []
    assert names(tmp_path) == ["manifest.jsonl"]


def test_append_line_refuses_line_breaks(tmp_path: Path) -> None:
    for text in ("a\nb", "a\r", "\n"):
        with pytest.raises(ValueError):
            append_line(tmp_path / "log", text)
    assert names(tmp_path) == []


def test_partial_last_line_is_ignored_then_cut_off(tmp_path: Path) -> None:
    log = tmp_path / "manifest.jsonl"
    append_line(log, '{"key": 1}')
    append_line(log, '{"key": 2}')
    with log.open("ab") as handle:  # a crash in the middle of a third append
        handle.write(b'{"key": 3, "trunc')
    assert read_lines(log) == ['{"key": 1}', '{"key": 2}']
    append_line(log, '{"key": 3}')  # the resumed run
    assert log.read_bytes() == b'{"key": 1}\n{"key": 2}\n{"key": 3}\n'
    assert read_lines(log) == ['{"key": 1}', '{"key": 2}', '{"key": 3}']


def test_partial_only_line_and_long_tail_are_cut_off(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"no newline at all")
    assert read_lines(log) == []
    append_line(log, "first")
    assert log.read_bytes() == b"first\n"
    tail = b"x" * 10_000  # longer than one read-back chunk
    log.write_bytes(b"a\n" + tail)
    append_line(log, "b")
    assert log.read_bytes() == b"a\nb\n"
    log.write_bytes(b"y" * 10_000)
    append_line(log, "c")
    assert log.read_bytes() == b"c\n"


def test_an_interrupt_inside_the_open_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    """Ctrl-C can land after ``open`` created the temporary file but before it returned."""
    import builtins

    import camlens.atomic as atomic

    real_open = builtins.open

    def interrupted(path, mode="r", *args, **kwargs):
        real_open(path, mode, *args, **kwargs).close()  # the file now exists
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "open", interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes(tmp_path / "out.bin", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_name_that_already_exists_is_never_removed(tmp_path, monkeypatch) -> None:
    import camlens.atomic as atomic

    taken = tmp_path / ".taken.partial"
    taken.write_bytes(b"someone else's")
    monkeypatch.setattr(atomic, "partial_path", lambda path: taken)
    with pytest.raises(FileExistsError):
        atomic.write_bytes(tmp_path / "out.bin", b"x")
    assert taken.read_bytes() == b"someone else's"


def test_save_npz_compresses_what_compresses(tmp_path: Path) -> None:
    """``"non-float"`` deflates integer and boolean entries only; ``True`` deflates every
    entry at level NPZ_LEVEL (the level reaches entries written from a ZipInfo)."""
    arrays = {"mask": np.zeros((64, 64), bool), "map": np.linspace(0, 1, 4096, dtype=np.float32)}
    save_npz(tmp_path / "mixed.npz", arrays, compress="non-float")
    save_npz(tmp_path / "all.npz", arrays, compress=True)
    with zipfile.ZipFile(tmp_path / "mixed.npz") as archive:
        kinds = {info.filename: info.compress_type for info in archive.infolist()}
    assert kinds == {"mask.npy": zipfile.ZIP_DEFLATED, "map.npy": zipfile.ZIP_STORED}
    with zipfile.ZipFile(tmp_path / "all.npz") as archive:
        raw = archive.read("map.npy")
        stored = archive.getinfo("map.npy").compress_size
    expected = zlib.compressobj(NPZ_LEVEL, zlib.DEFLATED, -15)
    assert stored == len(expected.compress(raw) + expected.flush())
    with pytest.raises(ValueError, match="compress must be"):
        save_npz(tmp_path / "bad.npz", arrays, compress="yes")
