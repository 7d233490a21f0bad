"""The HTML report writer: structure, escaping, safe file names, determinism, rendering.

The structural tests parse the page with :mod:`html.parser`; the slow test renders it in a
real headless Chromium (skipped when ``/usr/bin/chromium`` is not installed).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
from collections.abc import Callable
from fnmatch import fnmatch
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.errors import CamlensError, ImageLoadError, InputShapeError, NonFiniteError
from camlens.report import STYLE, Report, ReportError, format_value, slugify

EVIL = "<script>alert(1)</script>"
QUOTES = "&\"'"
CHROMIUM = Path("/usr/bin/chromium")

# Elements that never have an end tag (HTML "void elements").
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class PageParser(HTMLParser):
    """Collects what the tests check, and the tag-balance errors it meets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id") is not None:
            self.ids.append(str(found["id"]))
        if tag == "a" and found.get("href") is not None:
            self.hrefs.append(str(found["href"]))
        if tag == "img":
            self.imgs.append(found)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")  # we write HTML, not XHTML
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def parse(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return parser


def rgb_image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def build(out_dir: Path) -> Report:
    """A small report that uses every block, with hostile labels everywhere."""
    report = Report(f"Demo {EVIL}", subtitle=f"sub {QUOTES}", out_dir=out_dir)
    top = report.section(f"Tile 3: {EVIL}")
    top.paragraph(f"text {EVIL} {QUOTES}")
    top.key_values({f"key {EVIL}": f"value {QUOTES}", "mass": 0.8312, "n": 3, "gone": None})
    row = top.figure_row(caption=f"Class: {EVIL}")
    row.figure(rgb_image(), caption=f"HiResCAM {EVIL}", note=f"note {QUOTES}")
    row.figure(rgb_image(seed=1)[..., 0], caption="grey", name="../../evil")
    row.figure(np.eye(6, dtype=bool), caption="../../evil", width=120, pixelated=True)
    top.table(
        ["method", f"score {EVIL}", "count"],
        [["HiResCAM", 0.123456, 3], [f"Grad {QUOTES}", float("nan"), None]],
        caption=f"Table {EVIL}",
    )
    sub = top.subsection("Class 2: sebaceous gland")
    sub.callout(f"Looks at the marker {EVIL}", kind="warning")
    sub.subsection("Deeper")
    again = report.section(f"Tile 3: {EVIL}")  # same title: the anchor must still be unique
    again.callout("fine", kind="ok").preformatted("a\n  b")
    report.section("toc")  # a title that collides with the page's own ids
    return report


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


def test_page_is_balanced_and_well_formed(tmp_path: Path) -> None:
    path = build(tmp_path / "out").write()
    assert path == tmp_path / "out" / "report.html"
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # UTF-8, or this raises
    assert text.startswith("<!doctype html>\n")
    assert '<html lang="en">' in text
    assert '<meta charset="utf-8">' in text
    page = parse(text)
    assert page.errors == []
    assert page.stack == [], f"unclosed: {page.stack}"
    assert page.tags.count("html") == page.tags.count("head") == page.tags.count("body") == 1
    assert page.tags.count("h1") == 1


def test_toc_links_resolve_and_ids_are_unique(tmp_path: Path) -> None:
    report = build(tmp_path / "out")
    page = parse(report.write().read_text(encoding="utf-8"))
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    fragments = [h[1:] for h in page.hrefs if h.startswith("#")]
    assert fragments, "no table of contents"
    assert set(fragments) <= set(page.ids)
    anchors = [s.anchor for s in report.sections]
    nested = [c.anchor for c in report.sections[0].subsections]
    # one TOC entry per section and per subsection, in order
    toc_order = list(dict.fromkeys(fragments))
    assert toc_order == [anchors[0], *nested, "deeper", *anchors[1:]]
    for anchor in [*anchors, *nested]:
        assert anchor.replace("-", "").isalnum() and anchor.islower()
    assert anchors[0] != anchors[1]
    assert "toc" not in anchors


def test_every_image_exists_with_size_and_alt(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build(out)
    page = parse(report.write().read_text(encoding="utf-8"))
    assert len(page.imgs) == 3
    for img in page.imgs:
        src = str(img["src"])
        assert not src.startswith(("/", "file:", "http")), src
        file = out / unquote(src)
        assert file.is_file(), src
        assert int(str(img["width"])) > 0 and int(str(img["height"])) > 0
        assert img["alt"]
    figures = report.sections[0]._blocks[2].figures  # type: ignore[attr-defined]
    first, _, small = figures
    assert (first.pixel_width, first.pixel_height) == (32, 24)
    assert (first.width, first.height) == (256, 192)  # the report's default width, aspect kept
    assert (small.width, small.height, small.pixelated) == (120, 120, True)
    text = report.path.read_text(encoding="utf-8")
    assert "32×24 px" in text and "6×6 px" in text
    assert 'class="fig pixelated"' in text


def test_no_network_and_no_script(tmp_path: Path) -> None:
    text = build(tmp_path / "out").write().read_text(encoding="utf-8")
    page = parse(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert "url(" not in text


# --------------------------------------------------------------------------------------
# Escaping and file names
# --------------------------------------------------------------------------------------


def test_user_text_is_escaped(tmp_path: Path) -> None:
    text = build(tmp_path / "out").write().read_text(encoding="utf-8")
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert QUOTES not in text
    assert "&amp;&quot;&#x27;" in text
    page = parse(text)
    shown = "".join(page.data)
    assert f"Demo {EVIL}" in shown  # escaped on the wire, intact for the reader
    assert f"Grad {QUOTES}" in shown


def test_file_names_cannot_escape_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    report = build(out)
    report.write()
    source = tmp_path / "src" / f"x <b>{QUOTES}.png"
    source.parent.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(source)
    row = report.section("more").figure_row()
    copied = row.figure(source, caption="../../../../evil")
    named = row.figure(np.zeros((3, 3)), name="../" * 8 + "etc/passwd", caption="/abs/path")
    for figure in (copied, named):
        assert figure.path.resolve().parent == (out / "images").resolve()
        assert figure.path.name.replace("-", "").replace(".", "").isalnum()
    everything = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    outside = {p for p in everything if not p.is_relative_to(out.resolve())}
    assert outside == {source.resolve()}
    assert not any("evil" in p.name and not p.is_relative_to(out.resolve()) for p in everything)


def test_linked_file_name_is_escaped_and_url_encoded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = tmp_path / "shared"
    folder.mkdir()
    weird = folder / f"a{QUOTES} <b> #1%.png"
    Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(weird)
    report = Report("t", out_dir=out)
    figure = report.section("s").figure_row().figure(weird, caption=weird.name, copy=False)
    assert figure.path == weird
    assert figure.src.startswith("../shared/")
    assert unquote(figure.src) == f"../shared/{weird.name}"
    assert "#" not in figure.src and " " not in figure.src and '"' not in figure.src
    page = parse(report.write().read_text(encoding="utf-8"))
    (img,) = page.imgs
    assert (out / unquote(str(img["src"]))).resolve() == weird.resolve()
    assert img["alt"] == weird.name


def test_file_already_inside_out_dir_is_not_copied(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "maps").mkdir(parents=True)
    inside = out / "maps" / "m.png"
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(inside)
    report = Report("t", out_dir=out)
    figure = report.section("s").figure_row().figure(inside)
    assert figure.src == "maps/m.png"
    assert not (out / "images").exists()


def test_slugify() -> None:
    assert slugify("Tile 3: tile_3.png") == "tile-3-tile-3-png"
    assert slugify("Übersicht der Größen") == "ubersicht-der-groen"
    assert slugify("../../evil") == "evil"
    assert slugify("<>", "x") == "x"
    assert slugify("512×512") == "512x512"
    assert len(slugify("a" * 500)) <= 48


# --------------------------------------------------------------------------------------
# Values, inputs, determinism
# --------------------------------------------------------------------------------------


def test_number_formatting() -> None:
    assert format_value(float("nan")) == ("–", "na")
    assert format_value(np.float32("nan")) == ("–", "na")
    assert format_value(None) == ("–", "na")
    assert format_value(0.123456) == ("0.123", "num")
    assert format_value(np.float64(2.5), "{:.1%}") == ("250.0%", "num")
    assert format_value(7) == ("7", "num")
    assert format_value(np.int64(-7)) == ("-7", "num")
    assert format_value(True) == ("True", "text")
    assert format_value(math.inf) == ("∞", "num")
    assert format_value(-math.inf) == ("−∞", "num")
    assert format_value("x") == ("x", "text")


def test_table_cells(tmp_path: Path) -> None:
    report = Report("t", out_dir=tmp_path)
    report.section("s").table(
        ["name", "a", "b"],
        [["x", 1.0, float("nan")], ["y", 0.5, 2.0]],
        number_format={"b": "{:.1f}"},
    )
    text = report.render()
    assert '<td class="num">1.000</td>' in text
    assert '<td class="na" title="not available">–</td>' in text
    assert '<td class="num">2.0</td>' in text
    assert '<th scope="col" class="num">a</th>' in text  # numeric column: right-aligned
    assert '<th scope="row">x</th>' in text
    assert ">nan<" not in text.lower()


def test_image_inputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = Report("t", out_dir=out)
    row = report.section("s").figure_row(width=64)
    tiff = tmp_path / "in.tif"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tiff)
    figures = [
        row.figure(np.zeros((4, 5, 3), np.uint8)),
        row.figure(np.ones((4, 5, 1), np.float32)),
        row.figure(np.zeros((4, 5, 4), np.uint8)),
        row.figure(np.arange(20, dtype=np.int64).reshape(4, 5)),
        row.figure(torch.rand(4, 5, 3)),
        row.figure(Image.new("RGB", (5, 4))),
        row.figure(tiff),
    ]
    for figure in figures[:-1]:
        assert (figure.pixel_width, figure.pixel_height) == (5, 4)
        assert (figure.width, figure.height) == (64, 51)
        with Image.open(figure.path) as saved:
            assert saved.format == "PNG" and saved.size == (5, 4)
    assert figures[-1].path.suffix == ".png" and figures[-1].pixel_width == 20
    with Image.open(figures[1].path) as grey:
        assert np.asarray(grey).max() == 255


def test_bad_inputs_raise_camlens_errors(tmp_path: Path) -> None:
    report = Report("t", out_dir=tmp_path)
    section = report.section("s")
    row = section.figure_row()
    with pytest.raises(InputShapeError, match="permute"):
        row.figure(np.zeros((3, 8, 9), np.float32))
    with pytest.raises(InputShapeError):
        row.figure(np.zeros((0, 4)))
    with pytest.raises(InputShapeError, match="mask_to_rgb"):
        row.figure(np.full((2, 2), 300))
    with pytest.raises(NonFiniteError):
        row.figure(np.full((2, 2), np.nan))
    with pytest.raises(ImageLoadError):
        row.figure(tmp_path / "missing.png")
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(ImageLoadError):
        row.figure(tmp_path / "not.png")
    with pytest.raises(ReportError):
        row.figure(np.zeros((2, 2)), width=0)
    with pytest.raises(ReportError):
        section.callout("x", kind="loud")  # type: ignore[arg-type]
    with pytest.raises(ReportError, match="row 1"):
        section.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ReportError):
        section.table(["a"], [[1]], number_format={"z": "{}"})
    with pytest.raises(ReportError):
        Report("t", out_dir=tmp_path, filename="../x.html")
    with pytest.raises(ReportError):
        Report("t", out_dir=tmp_path, image_dir="..")
    assert issubclass(ReportError, CamlensError) and issubclass(ReportError, ValueError)


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = build(tmp_path / "one").write()
    second = build(tmp_path / "two").write()
    assert first.read_bytes() == second.read_bytes()
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*"))
    assert one == two
    for rel in one:
        if (tmp_path / "one" / rel).is_file():
            assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    again = build(tmp_path / "one").write()  # rewriting in place gives the same bytes too
    assert again.read_bytes() == second.read_bytes()


def test_empty_report(tmp_path: Path) -> None:
    page = parse(Report("empty", out_dir=tmp_path).write().read_text(encoding="utf-8"))
    assert page.errors == [] and page.stack == []
    assert "nav" not in page.tags


# --------------------------------------------------------------------------------------
# Package data and the atomic write
# --------------------------------------------------------------------------------------

ASSETS = Path(__file__).resolve().parents[1] / "src" / "camlens" / "report" / "assets"


def test_style_sheet_is_package_data_and_inlined(tmp_path: Path) -> None:
    css = (resources.files("camlens.report") / "assets" / "report.css").read_text("utf-8")
    assert css.startswith(":root {") and css.endswith("}\n")
    assert css == STYLE
    text = Report("t", out_dir=tmp_path).render()
    assert f"<style>\n{css}</style>" in text


def test_assets_are_listed_as_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = ASSETS.parents[3] / "pyproject.toml"
    if not (pyproject.is_file() and ASSETS.is_dir()):
        pytest.skip("not a source checkout")
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["camlens"]
    assets = sorted(p for p in ASSETS.rglob("*") if p.is_file())
    assert {p.name for p in assets} >= {"report.css", "page.html"}
    for asset in assets:
        relative = asset.relative_to(ASSETS.parents[1]).as_posix()  # report/assets/...
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_write_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build(out)
    report.write()
    assert sorted(p.name for p in out.iterdir()) == ["images", "report.html"]


def test_failed_write_keeps_old_page_and_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    Report("old", out_dir=out).write()
    old = (out / "report.html").read_bytes()
    broken = Report("lone surrogate \ud800", out_dir=out)  # renders, but is not UTF-8
    with pytest.raises(UnicodeEncodeError):
        broken.write()
    assert (out / "report.html").read_bytes() == old
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_failed_rename_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)  # the page's name is taken by a folder
    with pytest.raises(OSError):
        Report("t", out_dir=out).write()
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert (out / "report.html").is_dir()


# --------------------------------------------------------------------------------------
# Sections as data: to_data, add_section_data, per-item image folders
# --------------------------------------------------------------------------------------


def build_full(out: Path, shared: Path) -> Report:
    """:func:`build`, plus figures from files (copied, converted, inside ``out_dir``, linked
    in place outside it), deeper nesting, an explicit anchor, and ids claimed in an order
    that differs from the page's order."""
    report = build(out)
    shared.mkdir(parents=True, exist_ok=True)
    outside = shared / f"outside {QUOTES}.png"
    Image.fromarray(np.full((5, 7, 3), 40, np.uint8)).save(outside)
    tiff = shared / "scan.tif"
    Image.fromarray(np.full((6, 4), 99, np.uint8)).save(tiff)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    inside = out / "maps" / "inside.png"
    Image.fromarray(np.zeros((3, 9), np.uint8)).save(inside)

    files = report.section(f"Files {EVIL}", anchor="files")
    row = files.figure_row(caption=None, width=90, pixelated=True)
    row.figure(outside, caption=f"copied {EVIL}", alt=f"alt {EVIL}")
    row.figure(tiff, caption=None, note="converted to PNG")
    row.figure(inside, caption="inside out_dir", pixelated=False)
    row.figure(outside, caption="linked in place", copy=False, width=33)
    row.figure(Image.new("RGBA", (4, 2), (1, 2, 3, 4)), caption="", note=f"{QUOTES}")
    files.figure_row()  # empty, no caption: renders nothing, must still round-trip
    files.figure_row(caption="empty row with a caption")
    level1 = files.subsection("Level 1")
    level2 = level1.subsection("Level 2")
    level2.subsection("Level 3").paragraph("deep").table([], [[1, "a"], [2.5, None]])
    level2.key_values([])
    level1.callout("no label", kind="danger", title="")
    level1.link(f"a viewer {EVIL}", "slide/run/viewer.html")
    # the same title again: ids are claimed in creation order, not page order
    late = report.section("Level 1")
    report.sections[0].subsection("Level 1").preformatted("claimed last, shown early")
    late.paragraph("after")
    return report


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _round_trip(report: Report, out: Path) -> Report:
    fresh = Report(report.title, subtitle=report.subtitle, out_dir=out)
    for section in report.sections:
        text = json.dumps(section.to_data(), allow_nan=False)
        fresh.add_section_data(json.loads(text))
    return fresh


def test_sections_round_trip_as_data_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build_full(out, tmp_path / "shared")
    original = report.write().read_bytes()
    before = _files(tmp_path)

    rebuilt = _round_trip(report, out)
    assert rebuilt.render() == report.render()
    assert [s.anchor for s in rebuilt.sections] == [s.anchor for s in report.sections]
    assert _files(tmp_path) == before  # nothing written, copied or re-encoded
    rebuilt.write()
    assert (out / "report.html").read_bytes() == original

    page = parse(original.decode("utf-8"))
    assert page.errors == [] and page.stack == []
    assert len(page.ids) == len(set(page.ids))
    assert len(page.imgs) == 3 + 5
    for img in page.imgs:
        assert (out / unquote(str(img["src"]))).is_file()


def test_section_data_is_json_with_relative_posix_paths(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build_full(out, tmp_path / "shared")
    data = [section.to_data() for section in report.sections]
    assert json.loads(json.dumps(data, allow_nan=False)) == data  # JSON types only
    first = data[0]
    assert first["version"] == 1 and first["title"] == f"Tile 3: {EVIL}"
    assert first["anchor"] == report.sections[0].anchor
    types = [block["type"] for block in first["blocks"]]
    assert types == ["paragraph", "key_values", "figure_row", "table", "section", "section"]
    assert first["blocks"][1]["items"][1] == ["mass", "0.831", "num"]
    assert first["blocks"][3]["rows"][1][1] == ["–", "na"]
    figure = first["blocks"][2]["figures"][0]
    assert figure == {
        "path": "images/001-hirescam-script-alert-1-script.png",
        "pixel_width": 32,
        "pixel_height": 24,
        "width": 256,
        "caption": f"HiResCAM {EVIL}",
        "note": f"note {QUOTES}",
        "alt": f"HiResCAM {EVIL}",
        "pixelated": False,
    }
    files = next(d for d in data if d["anchor"] == "files")["blocks"][0]
    assert (files["width"], files["pixelated"], files["caption"]) == (90, True, None)
    paths = [f["path"] for f in files["figures"]]
    assert paths[2] == "maps/inside.png"
    assert paths[3] == f"../shared/outside {QUOTES}.png"  # linked in place, outside out_dir
    assert all("\\" not in p and not p.startswith("/") for p in paths)
    nested = first["blocks"][4]
    assert nested["type"] == "section" and nested["blocks"][0]["type"] == "callout"
    assert nested["blocks"][1] == {
        "type": "section",
        "title": "Deeper",
        "anchor": "deeper",
        "blocks": [],
    }


def test_hostile_text_survives_the_round_trip_escaped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = Report("t", out_dir=out)
    section = report.section(EVIL, anchor=EVIL)
    section.figure_row(caption=EVIL).figure(rgb_image(), caption=EVIL, note=EVIL, alt=EVIL)
    section.table([EVIL], [[EVIL]], caption=EVIL)
    data = json.loads(json.dumps(section.to_data()))
    data["anchor"] = f'x" onmouseover="{EVIL}'  # a tampered id is re-slugified, not trusted
    rebuilt = Report("t", out_dir=out)
    rebuilt.add_section_data(data)
    text = rebuilt.render()
    assert EVIL not in text and "onmouseover" not in text.replace("x-onmouseover", "")
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    shown = "".join(parse(text).data)
    assert shown.count(EVIL) >= 4
    assert rebuilt.sections[0].anchor == "x-onmouseover-script-alert-1-script"


def test_rebuilt_ids_stay_unique_in_a_merged_page(tmp_path: Path) -> None:
    out = tmp_path / "out"
    one = Report("one", out_dir=out)
    one.section("Image").subsection("Details")
    merged = Report("all", out_dir=out)
    merged.section("toc")  # the page's own ids and taken ones are never reused
    for _ in range(3):
        merged.add_section_data(json.loads(json.dumps(one.sections[0].to_data())))
    anchors = [s.anchor for s in merged.sections]
    nested = [s.subsections[0].anchor for s in merged.sections[1:]]
    assert anchors == ["toc-2", "image", "image-2", "image-3"]
    assert nested == ["details", "details-2", "details-3"]
    page = parse(merged.render())
    assert len(page.ids) == len(set(page.ids))


def _item_report(out: Path, key: str) -> Report:
    """What a job does per input: a small report of its own, images in ``images/<key>``."""
    report = Report("item", out_dir=out, image_dir=f"images/{key}")
    section = report.section(f"Image: {key}.png")
    row = section.figure_row(caption="class 1")
    row.figure(rgb_image(seed=len(key)), caption="image")
    row.figure(rgb_image(seed=7)[..., 1], caption="HiResCAM")
    section.key_values({"score": 0.5})
    return report


def test_per_item_image_folders_are_numbered_per_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    items = {key: _item_report(out, key) for key in ("a", "bb")}
    expected = ["001-image.png", "002-hirescam.png"]
    for key in items:
        assert sorted(p.name for p in (out / "images" / key).iterdir()) == expected
    data = {key: json.dumps(r.sections[0].to_data()) for key, r in items.items()}
    assert json.loads(data["a"])["blocks"][0]["figures"][1]["path"] == "images/a/002-hirescam.png"
    # the same item again (a resumed run, another shard): same names, same bytes, same data
    first = _files(out / "images" / "a")
    again = _item_report(out, "a")
    assert json.dumps(again.sections[0].to_data()) == data["a"]
    assert {k: v[0] for k, v in _files(out / "images" / "a").items()} == {
        k: v[0] for k, v in first.items()
    }

    final = Report("job", out_dir=out)
    for key in ("a", "bb"):
        final.add_section_data(json.loads(data[key]))
    before = _files(out)
    final.section("Summary").figure_row().figure(rgb_image(), caption="image")
    added = sorted(set(_files(out)) - set(before))
    assert added == ["images/001-image.png"]  # the job's own images: no clash with items
    srcs = [str(img["src"]) for img in parse(final.render()).imgs]
    assert srcs[:4] == [f"images/{k}/{n}" for k in ("a", "bb") for n in expected]


def test_rebuilt_figures_are_not_overwritten_by_new_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = Report("t", out_dir=out)
    old.section("s").figure_row().figure(rgb_image(seed=1), caption="x")
    rebuilt = Report("t", out_dir=out)
    rebuilt.add_section_data(old.sections[0].to_data())
    kept = (out / "images" / "001-x.png").read_bytes()
    new = rebuilt.section("more").figure_row().figure(rgb_image(seed=2), caption="x")
    assert new.path.name == "002-x.png"
    assert (out / "images" / "001-x.png").read_bytes() == kept


def test_image_dir_may_be_a_relative_folder_path(tmp_path: Path) -> None:
    report = Report("t", out_dir=tmp_path, image_dir="images/tile-3")
    figure = report.section("s").figure_row().figure(np.zeros((2, 2)), caption="m")
    assert figure.path == tmp_path / "images" / "tile-3" / "001-m.png"
    assert figure.src == "images/tile-3/001-m.png"
    for bad in ("images/../x", "/abs", "a//b", "a\\b", "images/", " a", "", "./a"):
        with pytest.raises(ReportError):
            Report("t", out_dir=tmp_path, image_dir=bad)


def test_malformed_section_data_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = Report("t", out_dir=out)
    section = report.section("s")
    section.figure_row().figure(np.zeros((2, 2)), caption="m")
    section.table(["a"], [[1]])
    good = json.loads(json.dumps(section.to_data()))

    def broken(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
        data = copy.deepcopy(good)
        change(data)
        return data

    cases = [
        (broken(lambda d: d.pop("title")), "missing 'title'"),
        (broken(lambda d: d.update(version=99)), "version 99"),
        (broken(lambda d: d["blocks"].append({"type": "script"})), "unknown block type"),
        (broken(lambda d: d["blocks"][0]["figures"][0].update(width=0)), r"figures\[0\]\.width"),
        (broken(lambda d: d["blocks"][0]["figures"][0].update(path="/etc/passwd")), "relative"),
        (broken(lambda d: d["blocks"][1]["rows"][0][0].__setitem__(1, "evil")), "kind"),
        (broken(lambda d: d["blocks"][1]["rows"].append([])), "cells"),
        (broken(lambda d: d["blocks"].append({"type": "callout", "kind": "ok"})), "missing .text."),
        ([good], "must be a dict"),
    ]
    fresh = Report("t", out_dir=out)
    for data, message in cases:
        with pytest.raises(ReportError, match=message):
            fresh.add_section_data(data)
    missing = broken(lambda d: d["blocks"][0]["figures"][0].update(path="images/gone.png"))
    with pytest.raises(ImageLoadError):
        fresh.add_section_data(missing)
    assert fresh.sections == []


def test_images_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    report = Report("t", out_dir=out)
    row = report.section("s").figure_row()
    row.figure(np.zeros((2, 2)), caption="kept")

    def killed(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half an image")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        row.figure(np.zeros((2, 2)), caption="killed")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["001-kept.png"]


# --------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra,
        url,
    ]
    try:
        return subprocess.run(command, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in 120 s: {' '.join(command)}")


@pytest.mark.slow
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(
            "chromium not installed: apt-get install chromium to run the browser render test"
        )
    out = tmp_path / "out"
    report = build(out)
    green = np.zeros((200, 200, 3), np.uint8)
    green[..., 1] = 200  # a colour the page itself never uses: seeing it proves images load
    report.sections[0].figure_row(caption="probe").figure(green, caption="probe")
    # put the probe first so it is inside the 1200×900 window
    report.sections[0]._blocks.insert(0, report.sections[0]._blocks.pop())
    url = report.write().resolve().as_uri()

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1200,900")
    assert shot.is_file(), run.stderr.decode(errors="replace")[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 10, "blank screenshot"
    probe = (np.abs(pixels - np.array([0, 200, 0])).max(axis=-1) <= 4).sum()
    assert probe > 0.5 * 200 * 200, f"probe image not rendered ({probe} green pixels)"

    dump = _chromium(tmp_path, url, "--dump-dom")
    dom = dump.stdout.decode("utf-8", errors="replace")
    assert "<title>Demo &lt;script&gt;alert(1)&lt;/script&gt;</title>" in dom
    assert "<script>" not in dom
    assert dom.count("<img ") == 4
    assert 'id="toc"' in dom


def test_links_go_only_to_files_beside_the_report(tmp_path: Path) -> None:
    report = Report("links", out_dir=tmp_path)
    section = report.section("Links")
    section.link("viewer <b>", "slide/viewer.html?x=1&y=2")
    page = report.render()
    assert '<a href="slide/viewer.html?x=1&amp;y=2">viewer &lt;b&gt;</a>' in page
    for bad in ("javascript:alert(1)", "https://example.org/x", "/etc/passwd", ""):
        with pytest.raises(ReportError, match="relative path"):
            section.link("x", bad)
    data = section.to_data()
    data["blocks"][0]["href"] = "javascript:alert(1)"
    with pytest.raises(ReportError, match="href"):
        Report("again", out_dir=tmp_path).add_section_data(data)
