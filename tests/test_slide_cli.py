"""`camlens slide` from the command line: a run writes the viewer and the summary; user
mistakes exit 2 with one line before any tile is read; a bad slide among several is
skipped and the others go on (exit 1); a missing extra says what to install."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camlens.cli import main
from camlens.demo.classes import CLASS_NAMES
from camlens.demo.models import demo_weights
from camlens.demo.slide import write_synthetic_slide
from camlens.slide.pyramid import write_pyramidal_tiff


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slides")
    write_synthetic_slide(folder / "a.tiff", 1024, 768, mpp=0.5, seed=5)
    with Image.open(folder / "a.tiff") as image:
        pixels = np.asarray(image.convert("RGB"))
    write_pyramidal_tiff(folder / "no-mpp.tiff", pixels, mpp=None)
    (folder / "broken.svs").write_bytes(b"not a slide at all")
    (folder / "labels.json").write_text(json.dumps(list(CLASS_NAMES)))
    return folder


def _slide(folder: Path, *extra: str, inputs: tuple[str, ...] = ("a.tiff",)) -> list[str]:
    return ["slide", *[str(folder / name) for name in inputs], "--model",
            "camlens.demo.models:segmenter", "--weights", str(demo_weights("segmenter")),
            "--layer", "encoder.layer4", "--method", "gradcam", "--labels",
            str(folder / "labels.json"), "--tile", "128", "--overlap", "16", "--downsample",
            "2", "--quiet", *extra]  # fmt: skip


def test_a_slide_run_writes_the_viewer_and_the_summary(slides, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_slide(slides, "--mpp", "1.0", "--out", str(out))) == 0
    assert str(out / "viewer.html") in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resolution"]["level"] == 1 and summary["resolution"]["mpp"] == 1.0
    assert [c["class_name"] for c in summary["classes"]] == list(CLASS_NAMES)
    assert {m["method"] for m in summary["maps"]} == {"gradcam"}
    assert len(summary["maps"]) == len(CLASS_NAMES)
    for entry in summary["maps"]:
        assert (out / entry["file"]).is_file() and (out / entry["heatmap"]).is_file()
    page = (out / "viewer.html").read_text()
    assert "dermis_ecm" in page and "viewer-assets/openseadragon.min.js" in page
    # the same command again is refused, and --resume finishes at once
    assert main(_slide(slides, "--mpp", "1.0", "--out", str(out))) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_slide(slides, "--mpp", "1.0", "--out", str(out), "--resume")) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--mpp", "1", "--level", "1"), "pass one"),
        (("--overlap", "15"), "even"),
        (("--downsample", "3"), "multiples"),
        (("--class", "present"), "present"),
        (("--tissue", "nowhere.geojson"), "--tissue"),
        (("--min-tissue", "2"), "--min-tissue"),
        (("--mpp", "0.25"), "does not upsample"),
        (("--option", "gradcam.nonsense=1"), "nonsense"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(slides, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(_slide(slides, "--out", str(out), *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (out / "tiles").exists()


def test_a_slide_without_mpp_needs_a_choice(slides, tmp_path, capsys):
    command = _slide(slides, "--out", str(tmp_path / "out"), inputs=("no-mpp.tiff",))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "no MPP metadata" in err and "--level" in err and "--slide-mpp" in err
    assert main([*command, "--level", "1"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["resolution"]["mpp"] is None
    assert all(c["area_mm2"] is None for c in summary["classes"])
    declared = _slide(slides, "--out", str(tmp_path / "declared"), "--slide-mpp", "0.5",
                      "--mpp", "1", inputs=("no-mpp.tiff",))  # fmt: skip
    assert main(declared) == 0


def test_a_bad_slide_among_several_is_skipped(slides, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(_slide(slides, "--mpp", "1", "--out", str(out), "--no-viewer",
                         inputs=("broken.svs", "a.tiff")))  # fmt: skip
    assert status == 1
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.svs" in captured.err
    assert (out / "a" / "summary.json").is_file()
    assert not (out / "a" / "viewer.html").exists()


def test_a_missing_extra_says_what_to_install(slides, tmp_path, capsys, monkeypatch):
    import camlens.slide.extras as extras

    real = extras.importlib.import_module

    def without_openslide(name: str, *args):
        if name == "openslide":
            raise ImportError("No module named 'openslide'")
        return real(name, *args)

    monkeypatch.setattr(extras.importlib, "import_module", without_openslide)
    assert main(_slide(slides, "--mpp", "1", "--out", str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert 'pip install "camlens[slide]"' in err and "Traceback" not in err
