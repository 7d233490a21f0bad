"""Output keys that every file system takes, and CSV cells safe from formula injection."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from camlens.jobs import names
from camlens.jobs.names import MAX_KEY_LENGTH, output_keys, safe_csv_cell

VALID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _check_valid(keys: list[str]) -> None:
    for key in keys:
        assert VALID.fullmatch(key), key
        assert len(key) <= MAX_KEY_LENGTH
        assert not key.endswith(".")
        assert key.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT9"}


def test_plain_stems_are_kept() -> None:
    paths = ["slides/a.png", Path("slides/b_2.tif"), "c.d.jpeg", "/abs/UPPER-case.png"]
    assert output_keys(paths) == ["a", "b_2", "c.d", "UPPER-case"]


def test_same_stem_in_two_folders_gets_hashes() -> None:
    keys = output_keys(["a/x.png", "b/x.png", "y.png"])
    assert keys == [f"x-{_sha('a/x.png')}", f"x-{_sha('b/x.png')}", "y"]


def test_case_insensitive_uniqueness() -> None:
    keys = output_keys(["Scan.png", "scan.tif"])
    assert keys == [f"Scan-{_sha('Scan.png')}", f"scan-{_sha('scan.tif')}"]
    assert len({key.lower() for key in keys}) == 2


def test_sanitised_names_get_hashes() -> None:
    paths = ["a b.png", "été.png", ".hidden.png", "-rf.png", "=cmd|x.png", "dots..png", ".png"]
    keys = output_keys(paths)
    assert keys == [
        f"a_b-{_sha('a b.png')}",
        f"_t_-{_sha('été.png')}",
        f"_hidden-{_sha('.hidden.png')}",
        f"_rf-{_sha('-rf.png')}",
        f"_cmd_x-{_sha('=cmd|x.png')}",
        f"dots_-{_sha('dots..png')}",
        f"_png-{_sha('.png')}",
    ]
    _check_valid(keys)
    assert output_keys([""]) == [f"unnamed-{_sha('')}"]


def test_windows_reserved_names() -> None:
    paths = ["con.png", "NUL.tar.gz", "dir/Com1.png", "lpt9.x.y.png", "console.png", "COM10.png"]
    keys = output_keys(paths)
    _check_valid(keys)
    assert keys[:4] == [
        f"_con-{_sha('con.png')}",
        f"_NUL.tar-{_sha('NUL.tar.gz')}",
        f"_Com1-{_sha('dir/Com1.png')}",
        f"_lpt9.x.y-{_sha('lpt9.x.y.png')}",
    ]
    assert keys[4:] == ["console", "COM10"]


def test_long_names_are_truncated_with_a_hash() -> None:
    long = "p" * 250 + ".png"  # a 254-byte file name
    other = "q" * 65 + ".png"
    exact = "r" * 64 + ".png"
    keys = output_keys([long, other, exact])
    assert keys[0] == "p" * 55 + "-" + _sha(long)
    assert keys[1] == "q" * 55 + "-" + _sha(other)
    assert keys[2] == "r" * 64
    _check_valid(keys)
    # room for the suffixes outputs append, within 255 bytes
    assert len(f"{keys[0]}-{'c' * 40}-gradcam++.png".encode()) < 255


def test_keys_do_not_depend_on_order_or_process() -> None:
    paths = ["b/x.png", "a/x.png", "z.png", "Z.tif", "n.png"]
    keys = dict(zip(paths, output_keys(paths), strict=True))
    reordered = list(reversed(paths))
    assert dict(zip(reordered, output_keys(reordered), strict=True)) == keys
    module = Path(names.__file__)  # run alone: names.py imports nothing of camlens or torch
    code = (
        f"import runpy; keys = runpy.run_path({str(module)!r})['output_keys']({paths!r}); "
        "print('|'.join(keys))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert other.stdout.strip().split("|") == output_keys(paths)


def test_duplicates_and_collisions_with_hashed_keys() -> None:
    assert output_keys(["a.png", "a.png"]) == ["a", "a"]  # the same input, the same key
    hashed = f"x-{_sha('a/x.png')}"
    # a file whose plain stem equals another path's hashed key is hashed as well
    paths = ["a/x.png", "b/x.png", f"{hashed}.png"]
    keys = output_keys(paths)
    assert keys[:2] == [hashed, f"x-{_sha('b/x.png')}"]
    assert keys[2] == f"{hashed}-{_sha(paths[2])}"
    assert len({key.lower() for key in keys}) == 3


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            '=HYPERLINK("http://evil.example","x").png',
            '\'=HYPERLINK("http://evil.example","x").png',
        ),
        ("@SUM(1)", "'@SUM(1)"),
        ("-2+3", "'-2+3"),
        ("+A1", "'+A1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("-inf", "'-inf"),
        ("-0.5", "-0.5"),
        ("+3", "+3"),
        ("-1e-3", "-1e-3"),
        ("-.5", "-.5"),
        ("slide-01.png", "slide-01.png"),
        ("", ""),
        (-0.5, -0.5),
        (3, 3),
        (None, None),
    ],
)
def test_safe_csv_cell(cell: object, expected: object) -> None:
    assert safe_csv_cell(cell) == expected


def test_safe_cells_round_trip_through_csv() -> None:
    row = ['=HYPERLINK("x")', "-0.25", 0.5, "a,b"]
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe_csv_cell(cell) for cell in row])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == [
        '\'=HYPERLINK("x")',
        "-0.25",
        "0.5",
        "a,b",
    ]
