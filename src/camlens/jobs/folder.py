"""The output folder of a job: who may write into it, what run it belongs to, what is done.

* **Lock.** A run (or one shard of a run) holds an exclusive ``flock`` on its own lock file in
  ``--out`` for as long as it runs; a second process for the same shard is refused at once.
  The operating system drops the lock when the process ends, however it ends (``kill -9``
  included), so a killed run never blocks its own ``--resume``.
* **Identity.** ``run.json`` records the command and the settings that decide the outputs
  (model, weights, layers, methods, options, classes, preprocessing, batch plan, number of
  shards). A folder that holds another run's files is refused unless the user asks for
  ``--resume`` (same settings: continue) or ``--overwrite`` (clear it first); a folder that
  is not a camlens output at all is never cleared.
* **Manifest.** One JSON line per finished item, appended and flushed with ``fsync``
  (:func:`camlens.atomic.append_line`): the record of what is complete. Each shard has its
  own manifest; readers merge them and ignore a partial last line (a crash mid-append).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from camlens.atomic import append_line, write_json
from camlens.errors import CamlensError

try:  # POSIX; on other systems the lock is advisory only (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["UNSHARDED", "FolderError", "RunFolder", "Shard", "Totals", "read_manifests"]

RUN_FILE = "run.json"
MANIFEST_PREFIX = "manifest"
LOCK_PREFIX = ".camlens-lock"


class FolderError(CamlensError, RuntimeError):
    """``--out`` cannot be used as asked: locked by another run, holds another run's files,
    or is not writable."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard i/N``, 0-based): a stable share of the work."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/N"`` with ``0 ≤ i < N``."""
        index, slash, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not slash or shard is None or not 0 <= shard.index < shard.count:
            raise ValueError(
                f"--shard is written i/N with 0 ≤ i < N (e.g. 0/4 … 3/4), got {text!r}"
            )
        return shard

    @property
    def suffix(self) -> str:
        """``""`` for an unsharded run, else ``"-<i>-of-<N>"`` (file names)."""
        return "" if self.count == 1 else f"-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: The whole run in one process.
UNSHARDED = Shard()


class RunFolder:
    """``--out`` of one run or shard; use as a context manager (it holds the lock)."""

    def __init__(self, path: Path, shard: Shard = UNSHARDED) -> None:
        self.path = Path(path)
        self.shard = shard
        self._lock: IO[str] | None = None
        #: set once :meth:`claim` has accepted this run
        self.claimed = False

    # -- lock --------------------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.path / f"{LOCK_PREFIX}{self.shard.suffix}"

    def __enter__(self) -> RunFolder:
        self._make()
        handle = open(self.lock_file, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                which = "" if self.shard.count == 1 else f" (shard {self.shard})"
                raise FolderError(
                    f"another camlens run is writing into {self.path}{which}; wait for it to "
                    "finish, or choose another --out."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def check_writable(self) -> None:
        """Refuse, without creating anything, an ``--out`` that is a file or lies in a
        folder that cannot be written (the definitive test is :meth:`__enter__`'s)."""
        if self.path.exists() and not self.path.is_dir():
            raise FolderError(f"--out {self.path} is a file, not a folder; choose a folder.")
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise FolderError(
                f"cannot write into --out {self.path} ({existing} is not a writable folder); "
                "choose a writable folder."
            )

    def _make(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FolderError(f"--out {self.path} is a file, not a folder; choose a folder.")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".camlens-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise FolderError(
                f"cannot write into --out {self.path}: {error.strerror or error}; choose a "
                "writable folder."
            ) from None

    # -- identity ----------------------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    def recorded(self) -> dict[str, Any] | None:
        """The identity in ``run.json``, or ``None`` when there is none (or it is unreadable)."""
        try:
            return json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def claim(self, identity: Mapping[str, Any], *, resume: bool, overwrite: bool) -> None:
        """Make this folder the home of the run ``identity`` (call while holding the lock).

        Empty or new: the identity is written. Holding the same run: allowed with
        ``resume`` (continue) and for another shard of the same run; ``overwrite`` clears
        it first. Anything else is refused with what to do.
        """
        recorded = self.recorded()
        foreign = self._foreign_files()
        if overwrite:
            if foreign and recorded is None:
                raise FolderError(
                    f"--out {self.path} holds files that camlens did not write "
                    f"({', '.join(sorted(foreign)[:3])}, ...); refusing to clear it. Choose an "
                    "empty or new folder."
                )
            self._clear()
            recorded, foreign = None, []
        if recorded is None:
            if foreign:
                raise FolderError(
                    f"--out {self.path} is not empty ({', '.join(sorted(foreign)[:3])}, ...) "
                    "and holds no camlens run; choose an empty or new folder."
                )
            write_json(self.run_file, dict(identity))
            self.claimed = True
            return
        if dict(recorded) != json.loads(json.dumps(dict(identity))):
            changed = _differences(recorded, identity)
            raise FolderError(
                f"--out {self.path} holds a run with other settings ({changed}); "
                "--overwrite to replace it, or choose another --out."
            )
        if not resume and self.manifest_file.exists():
            raise FolderError(
                f"--out {self.path} already holds this run; pass --resume to finish it (done "
                "images are skipped) or --overwrite to start again."
            )
        self.claimed = True

    def remove_stale_partials(self) -> int:
        """Delete the temporary files (``.*.partial``) of writers that are no longer running
        — what a ``kill -9`` leaves; another shard's files being written are kept."""
        removed = 0
        for partial in self.path.rglob(".*.partial"):
            found = _PARTIAL_PID.search(partial.name)
            if found is None or _alive(int(found.group(1))):
                continue
            partial.unlink(missing_ok=True)
            removed += 1
        return removed

    def _foreign_files(self) -> list[str]:
        """Names in the folder other than lock files (this run's, or another shard's that
        started a moment earlier)."""
        return [e.name for e in self.path.iterdir() if not e.name.startswith(LOCK_PREFIX)]

    def _clear(self) -> None:
        """Remove everything but the lock files, refusing when another shard is running."""
        for entry in self.path.iterdir():
            if entry.name.startswith(LOCK_PREFIX):
                if entry != self.lock_file and _held(entry):
                    raise FolderError(
                        f"--overwrite: another camlens run is writing into {self.path}; wait "
                        "for it to finish."
                    )
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- manifest ----------------------------------------------------------------------------
    @property
    def manifest_file(self) -> Path:
        return self.path / f"{MANIFEST_PREFIX}{self.shard.suffix}.jsonl"

    def record(self, entry: Mapping[str, Any]) -> None:
        """Append one finished item to this shard's manifest (flushed to disk)."""
        append_line(self.manifest_file, json.dumps(entry, ensure_ascii=False, allow_nan=False))

    def entries(self) -> dict[str, dict[str, Any]]:
        """The latest manifest entry of each item, over every shard's manifest."""
        return read_manifests(self.path)


@dataclass(frozen=True)
class Totals:
    """What the manifests hold: items explained, inputs skipped (with their reasons), and
    items not yet done."""

    done: int
    failed: list[dict[str, str]]
    remaining: int
    #: what a command's builder wants to show besides (evaluate: its table of means)
    details: dict[str, Any] | None = None

    @property
    def skipped(self) -> int:
        return len(self.failed)


def read_manifests(path: Path) -> dict[str, dict[str, Any]]:
    """Per item key, its latest entry in the manifests under ``path`` (every shard)."""
    latest: dict[str, dict[str, Any]] = {}
    for manifest in sorted(Path(path).glob(f"{MANIFEST_PREFIX}*.jsonl")):
        for entry in _lines(manifest):
            latest[entry["key"]] = entry
    return latest


def _lines(manifest: Path) -> Iterator[dict[str, Any]]:
    """The complete JSON lines of ``manifest``; a partial last line (a crash) is ignored."""
    with open(manifest, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # cut off mid-write
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "key" in entry:
                yield entry


#: The writer's process id in :func:`camlens.atomic.partial_path` names.
_PARTIAL_PID = re.compile(r"\.(\d+)-\d+-[0-9a-f]+\.partial$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _held(lock_file: Path) -> bool:
    """Whether another process holds ``lock_file``."""
    if fcntl is None:
        return False
    with open(lock_file, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _differences(recorded: Mapping[str, Any], identity: Mapping[str, Any]) -> str:
    """The settings that differ, as ``name: old → new``."""
    new = json.loads(json.dumps(dict(identity)))
    old_settings = recorded.get("settings", {}) if isinstance(recorded, Mapping) else {}
    new_settings = new.get("settings", {})
    names = sorted(set(old_settings) | set(new_settings))
    changed = [
        f"{name}: {old_settings.get(name)!r} → {new_settings.get(name)!r}"
        for name in names
        if old_settings.get(name) != new_settings.get(name)
    ]
    if recorded.get("command") != new.get("command"):
        changed.insert(0, f"command: {recorded.get('command')!r} → {new.get('command')!r}")
    return "; ".join(changed) or "a different camlens version"
