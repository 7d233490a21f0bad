"""The embedded demo: shipped weights (weights_only, small, still as good as recorded) and the
`camlens demo` run end to end, including catching the shortcut model."""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from camlens.cli import main
from camlens.demo.models import WEIGHT_FILES, load_demo_model, recorded_metrics
from camlens.demo.train import evaluate_segmenter, evaluate_shortcut

WEIGHTS = resources.files("camlens.demo") / "weights"


def test_shipped_weights_are_small_state_dicts() -> None:
    total = 0
    for filename in WEIGHT_FILES.values():
        with resources.as_file(WEIGHTS / filename) as path:
            total += path.stat().st_size
            state = torch.load(path, map_location="cpu", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert total <= 10 * 2**20, f"shipped weights take {total / 2**20:.1f} MiB"


def test_segmenter_still_reaches_recorded_miou() -> None:
    recorded = recorded_metrics()["segmenter"]
    measured = evaluate_segmenter(load_demo_model("segmenter"), **recorded["validation"])
    assert measured["miou"] == pytest.approx(recorded["miou"], abs=2e-3)
    assert measured["miou"] > 0.7  # a segmenter worth explaining


@pytest.mark.parametrize("name", ["shortcut_leaky", "shortcut_control"])
def test_shortcut_models_reach_recorded_figures(name: str) -> None:
    recorded = recorded_metrics()[name]
    measured = evaluate_shortcut(load_demo_model(name), **recorded["test"])
    for key in ("accuracy_with_leak", "accuracy_without_marker", "marker_flips_negatives"):
        assert measured[key] == pytest.approx(recorded[key], abs=5e-3), key
    if recorded["trained_with_leak"]:  # it learned the shortcut
        assert measured["marker_flips_negatives"] > 0.9
        assert measured["accuracy_without_marker"] < 0.7
    else:  # it learned the lesion
        assert measured["marker_flips_negatives"] < 0.1
        assert measured["accuracy_without_marker"] > 0.9


def test_demo_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--tiles", "2", "--quiet"]) == 0
    assert "report.html" in capsys.readouterr().out
    markup = (out / "report.html").read_text(encoding="utf-8")
    for src in re.findall(r'<img src="([^"]+)"', markup):
        assert (out / src).is_file(), src
    page = html.unescape(markup)
    assert "Tile 2" in page and "Tile 3" not in page
    # the same tiles through `camlens explain`, as a job, with its own outputs
    summary = json.loads((out / "job" / "summary.json").read_text(encoding="utf-8"))
    assert summary["complete"] and len(summary["images"]) == 2 and not summary["failed"]
    assert (out / "job" / "report.html").is_file() and (out / "job" / "manifest.jsonl").is_file()
    assert "The same tiles as a job" in page
    assert "mass in mask" in page
    # the shortcut check flags the leaky model and clears the control
    assert re.search(r"leaky: shortcut", page)
    assert re.search(r"control: lesion", page)
    assert "'leaky' looks at the marker" in page
    assert "'control' looks at the lesion" in page
    # and so does the dataset audit, for the lesion class, with both methods
    assert page.count("lesion: SHORTCUT SUSPECTED") == 2
    assert re.search(
        r"audit: control · Grad-CAM\s*lesion: not flagged", re.sub("<[^>]+>", " ", page)
    )
