"""`camlens evaluate` and the evaluation engine: tables, JSON/CSV, report, timings."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from camlens.cli import main
from camlens.evaluation import CLASSIFICATION_METRICS, evaluate

from .test_cli import workspace  # noqa: F401  (fixture)


def test_evaluate_segmentation_cli(workspace: Path, monkeypatch, capsys) -> None:  # noqa: F811
    monkeypatch.chdir(workspace)
    status = main(
        [
            "evaluate",
            "imgs/tile_1.png",
            "imgs/tile_2.png",
            "--model",
            "mymodel.py:seg",
            "--weights",
            "seg.pth",
            "--layer",
            "encoder.layer4",
            "--labels",
            "labels.json",
            "--steps",
            "8",
            "--sanity",
            "--out",
            "ev",
            "--quiet",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "pointing_game" in printed and "seconds per step" in printed
    data = json.loads((workspace / "ev" / "metrics.json").read_text())
    assert data["task"] == "seg"
    for row in data["rows"]:
        shares = [row["inside"], row["near"], row["far"]]
        if not any(np.isnan(shares)):
            assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    with open(workspace / "ev" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(data["rows"]) > 0
    assert {r["file"] for r in rows} == {"imgs/tile_1.png", "imgs/tile_2.png"}
    assert "Metrics" in (workspace / "ev" / "report.html").read_text()
    assert set(data["seconds"]) == {"explain", "localisation", "deletion", "insertion"}
    assert set(data["sanity"]) == {"gradcam", "hirescam"}
    assert all(isinstance(v["flagged"], bool) for v in data["sanity"].values())
    assert "sanity check, gradcam" in printed


def test_evaluate_classifier_engine() -> None:
    torch.manual_seed(0)
    from camlens.models import tiny_resnet

    model = tiny_resnet(num_classes=3)
    result = evaluate(
        model, torch.randn(2, 3, 32, 32), ["gradcam", "hirescam"], "layer3", task="cls", steps=6
    )
    assert len(result.rows) == 4
    for row in result.rows:
        for metric in CLASSIFICATION_METRICS:
            assert metric in row
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    means = result.means()
    assert {m["method"] for m in means} == {"gradcam", "hirescam"}
    assert set(result.seconds) == {"explain", "deletion", "insertion", "road", "confidence"}
    with pytest.raises(ValueError, match="task"):
        evaluate(model, torch.randn(1, 3, 32, 32), ["gradcam"], "layer3", task="detection")


def test_evaluate_writes_each_file_once_atomically(workspace: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(workspace)
    replaced: list[str] = []
    read: list[str] = []
    replace, read_text = os.replace, Path.read_text

    def recording_replace(source, target) -> None:
        assert Path(source).parent == Path(target).parent  # a rename within the folder
        replaced.append(Path(target).name)
        replace(source, target)

    def recording_read_text(path: Path, *args, **kwargs) -> str:
        read.append(path.name)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(Path, "read_text", recording_read_text)
    arguments = ["evaluate", "imgs/tile_1.png", "--model", "mymodel.py:seg", "--layer"]
    arguments += ["encoder.layer4", "--steps", "4", "--sanity", "--out", "ev", "--quiet"]
    assert main(arguments) == 0
    assert replaced.count("metrics.json") == 1 and replaced.count("metrics.csv") == 1
    assert "metrics.json" not in read  # written from memory, never read back
    data = json.loads(read_text(workspace / "ev" / "metrics.json"))
    assert set(data["sanity"]) == {"gradcam", "hirescam"} and data["rows"]
    assert sorted(p.name for p in (workspace / "ev").iterdir() if p.is_file()) == [
        ".camlens-lock",
        "manifest.jsonl",
        "metrics.csv",
        "metrics.json",
        "report.html",
        "run.json",
        "sanity.json",
    ]
