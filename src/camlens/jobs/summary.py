"""``summary.json`` and ``report.html`` of a job, built from its manifest(s) alone.

Called at the end of a run, after an interruption (a partial report that says so), and by
``camlens report OUT`` — which also merges the manifests of every shard that wrote into
``OUT``. Nothing here needs the model or the images: each finished item's manifest entry
holds its summary record and its report section as data, pointing at the files it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from camlens.atomic import write_json
from camlens.jobs.folder import Totals, read_manifests
from camlens.report import Report

__all__ = ["build_outputs", "partial_notice", "split_entries"]

#: The manifest fields that summary.json does not repeat.
_INTERNAL = ("sections", "status", "key", "index")


def split_entries(
    out: Path, missing: Sequence[tuple[str, str]], expected: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, str]], int]:
    """The manifests of ``out`` as ``(done entries in input order, failed inputs with their
    reasons, how many items are still to do)``."""
    entries = sorted(read_manifests(out).values(), key=lambda entry: entry.get("index", 0))
    done = [entry for entry in entries if entry.get("status") == "done"]
    failed = [{"input": name, "error": reason} for name, reason in missing]
    failed += [
        {"input": entry["source"], "error": entry.get("reason", "")}
        for entry in entries
        if entry.get("status") != "done"
    ]
    remaining = 0 if expected is None else max(expected - len(entries), 0)
    return done, failed, remaining


def partial_notice(report: Report, done: int, remaining: int, *, interrupted: bool) -> None:
    """A first section saying that the report is partial, when it is."""
    if interrupted or remaining:
        about = report.section("Partial report")
        about.callout(
            f"This run was {'interrupted' if interrupted else 'not finished'}: "
            f"{done} image(s) done"
            + (f", {remaining} still to do" if remaining else "")
            + ". Run the same command with --resume to finish it (or `camlens report OUT` "
            "once every shard has run).",
            "warning",
        )


def skipped_section(report: Report, failed: Sequence[Mapping[str, str]]) -> None:
    """The inputs that were skipped, with their reasons."""
    if failed:
        section = report.section("Skipped inputs")
        section.table(["input", "reason"], [[item["input"], item["error"]] for item in failed])


def build_outputs(
    out: Path,
    identity: Mapping[str, Any],
    *,
    missing: Sequence[tuple[str, str]] = (),
    expected: int | None = None,
    interrupted: bool = False,
) -> Totals:
    """Write ``summary.json`` and ``report.html`` of an explain run into ``out``.

    Args:
        identity: the run's ``run.json`` content (command and settings).
        missing: inputs that named no file (``("pattern", "matched nothing")``).
        expected: how many items the run has in all, to say how many are still to do.
        interrupted: the run was stopped; the report says it is partial.
    """
    out = Path(out)
    done, failed, remaining = split_entries(out, missing, expected)
    settings = dict(identity.get("settings", {}))
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
    methods = ", ".join(settings.get("methods") or [])
    report = Report("camlens explain", subtitle=f"{settings.get('model')} · {methods}", out_dir=out)
    partial_notice(report, len(done), remaining, interrupted=interrupted)
    for entry in done:
        for section in entry.get("sections", []):
            report.add_section_data(section)
    skipped_section(report, failed)
    report.write()
    return Totals(len(done), failed, remaining)


def _image_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An image's ``summary.json`` record: its file first, then what the manifest holds."""
    record = {"file": entry["source"]}
    record.update((k, v) for k, v in entry.items() if k not in _INTERNAL and k != "source")
    return record
