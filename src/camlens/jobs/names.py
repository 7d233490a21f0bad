"""Output names for a job's inputs, and CSV cells that a spreadsheet will not run.

:func:`output_keys` gives each input path a short name that every common file system takes;
the outputs of one input are ``<key>.png``, ``<key>-<class>-<method>.png`` and so on.
:func:`safe_csv_cell` keeps a file name such as ``=HYPERLINK(...).png`` from becoming a
formula when a results table is opened in a spreadsheet.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path, PurePath

__all__ = ["MAX_KEY_LENGTH", "output_keys", "safe_csv_cell"]

#: Longest output key: room for suffixes such as ``-<class>-<method>.png`` within the
#: 255-byte file-name limit of ext4, APFS and NTFS.
MAX_KEY_LENGTH = 64

#: Names Windows reserves for devices, whatever follows their first dot (``NUL.tar.gz``).
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{device}{n}" for device in ("COM", "LPT") for n in range(10)]
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FALLBACK = "unnamed"


def _sanitise(stem: str) -> str:
    """Only ``[A-Za-z0-9._-]``, no leading dot or dash, no trailing dot (Windows drops it),
    not a reserved device name, never empty."""
    name = _UNSAFE.sub("_", stem)
    name = re.sub(r"^[.-]+", lambda m: "_" * len(m.group()), name)
    name = re.sub(r"\.+$", lambda m: "_" * len(m.group()), name)
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    return name or _FALLBACK


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _with_hash(name: str, text: str, digits: int) -> str:
    stem = name[: MAX_KEY_LENGTH - 1 - digits].rstrip(".")
    return f"{stem or _FALLBACK}-{_digest(text)[:digits]}"


def output_keys(paths: Sequence[str | Path]) -> list[str]:
    """One output name per path: a file stem valid on Linux, macOS and Windows.

    Each key has only ``[A-Za-z0-9._-]`` (other characters become ``_``), no leading dot or
    dash, no trailing dot, at most :data:`MAX_KEY_LENGTH` characters, and is never a Windows
    device name (``CON``, ``NUL``, ``COM1``...). It is the path's sanitised stem
    (``slides/a b.png`` → ``a_b``) when that stem needed no change and is unique in the list,
    ignoring case (macOS and Windows file systems do); otherwise the stem, truncated, then
    ``-`` and the first 8 hex digits of the SHA-1 of the path as given (``str(path)``, UTF-8):
    ``a/x.png`` and ``b/x.png`` become ``x-<hash>`` and ``x-<other hash>``.

    A key depends only on its path and on which other paths are in the list — not on their
    order, the process or the machine. Equal paths get equal keys; distinct paths get keys
    distinct ignoring case (a plain stem that happens to equal another path's hashed key is
    hashed too; in the ~2⁻³² case of two hashed keys colliding, both use all 40 digits).
    """
    texts = [str(path) for path in paths]
    distinct = sorted(set(texts))
    names = {text: _sanitise(PurePath(text).stem) for text in distinct}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    digits: dict[str, int] = {}  # texts whose key carries a hash, and how many digits
    for text, name in names.items():
        plain = name == PurePath(text).stem and len(name) <= MAX_KEY_LENGTH
        if not plain or counts[name.lower()] > 1:
            digits[text] = 8
    while True:
        keys = {
            text: _with_hash(name, text, digits[text]) if text in digits else name
            for text, name in names.items()
        }
        groups: dict[str, list[str]] = {}
        for text, key in keys.items():
            groups.setdefault(key.lower(), []).append(text)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            return [keys[text] for text in texts]
        for group in clashes:
            plain = [text for text in group if text not in digits]
            for text in plain or group:
                digits[text] = 8 if plain else 40


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text) is not None


def safe_csv_cell(value: object) -> object:
    """``value`` made safe for a CSV cell that a spreadsheet may open (OWASP "CSV injection").

    A string starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
    leading ``'``, so spreadsheets show it as text instead of evaluating it
    (``=HYPERLINK(...)`` → ``'=HYPERLINK(...)``, ``-2+3`` → ``'-2+3``). A string that is a
    plain decimal number (``-0.5``, ``+3``, ``-1e-3``) stays as it is, and so does any value
    that is not a string. Quoting of commas and quotes is the CSV writer's job.
    """
    if not isinstance(value, str) or not value or value[0] not in "=+-@\t\r":
        return value
    return value if _is_number(value) else "'" + value
