"""``summary.json`` and ``report.html`` of a job, built from its manifest(s) alone.

Called at the end of a run, after an interruption (a partial report that says so), and by
``camlens report OUT`` — which also merges the manifests of every shard that wrote into
``OUT``. Nothing here needs the model or the images: each finished item's manifest entry
holds its summary record and its report section as data, pointing at the files it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camlens.atomic import write_json
from camlens.jobs.folder import read_manifests
from camlens.report import Report

__all__ = ["Totals", "build_outputs"]

#: The manifest fields that summary.json does not repeat.
_INTERNAL = ("sections", "status", "key", "index")


@dataclass(frozen=True)
class Totals:
    """What the manifests hold: items explained, inputs skipped (with their reasons), and
    items not yet done."""

    done: int
    failed: list[dict[str, str]]
    remaining: int

    @property
    def skipped(self) -> int:
        return len(self.failed)


def build_outputs(
    out: Path,
    identity: Mapping[str, Any],
    *,
    missing: Sequence[tuple[str, str]] = (),
    expected: int | None = None,
    interrupted: bool = False,
) -> Totals:
    """Write ``summary.json`` and ``report.html`` into ``out`` from its manifests.

    Args:
        identity: the run's ``run.json`` content (command and settings).
        missing: inputs that named no file (``("pattern", "matched nothing")``).
        expected: how many items the run has in all, to say how many are still to do.
        interrupted: the run was stopped; the report says it is partial.
    """
    out = Path(out)
    entries = sorted(read_manifests(out).values(), key=lambda entry: entry.get("index", 0))
    done = [entry for entry in entries if entry.get("status") == "done"]
    skipped = [entry for entry in entries if entry.get("status") != "done"]
    settings = dict(identity.get("settings", {}))
    failed = [{"input": name, "error": reason} for name, reason in missing]
    failed += [{"input": entry["source"], "error": entry.get("reason", "")} for entry in skipped]
    remaining = None if expected is None else max(expected - len(entries), 0)
    summary = {
        "command": identity.get("command"),
        "model": settings.get("model"),
        "weights": settings.get("weights"),
        "layers": settings.get("layers"),
        "methods": settings.get("methods"),
        "complete": not interrupted and not remaining,
        "images": [_image_record(entry) for entry in done],
        "failed": failed,
    }
    if remaining:
        summary["remaining"] = remaining
    write_json(out / "summary.json", summary)
    _write_report(out, settings, done, failed, interrupted=interrupted, remaining=remaining)
    return Totals(len(done), failed, remaining or 0)


def _image_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An image's ``summary.json`` record: its file first, then what the manifest holds."""
    record = {"file": entry["source"]}
    record.update((k, v) for k, v in entry.items() if k not in _INTERNAL and k != "source")
    return record


def _write_report(
    out: Path,
    settings: Mapping[str, Any],
    done: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, str]],
    *,
    interrupted: bool,
    remaining: int | None,
) -> None:
    methods = ", ".join(settings.get("methods") or [])
    report = Report("camlens explain", subtitle=f"{settings.get('model')} · {methods}", out_dir=out)
    if interrupted or remaining:
        about = report.section("Partial report")
        about.callout(
            f"This run was {'interrupted' if interrupted else 'not finished'}: "
            f"{len(done)} image(s) explained"
            + (f", {remaining} still to do" if remaining else "")
            + ". Run the same command with --resume to finish it.",
            "warning",
        )
    for entry in done:
        for section in entry.get("sections", []):
            report.add_section_data(section)
    if failed:
        section = report.section("Skipped inputs")
        section.table(["input", "reason"], [[item["input"], item["error"]] for item in failed])
    report.write()
