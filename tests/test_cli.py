"""The command line: `camlens explain` on users' models and files, `camlens methods`, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.cli import main
from camlens.files import collect_images, natural_key
from camlens.loading import ModelLoadError, load_labels, load_weights
from camlens.models import tiny_deeplabv3plus

MODEL_FILE = """
import torch
from camlens.models import tiny_deeplabv3plus, tiny_resnet

def seg():
    torch.manual_seed(0)
    return tiny_deeplabv3plus(num_classes=3)

def cls():
    torch.manual_seed(0)
    return tiny_resnet(num_classes=3)
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "mymodel.py").write_text(MODEL_FILE)
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for number in (10, 2, 1):
        pixels = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"tile_{number}.png")
    (images / "broken.png").write_text("not a png")
    (tmp_path / "labels.json").write_text(json.dumps(["background", "tissue", "gland"]))
    torch.manual_seed(0)
    torch.save(tiny_deeplabv3plus(num_classes=3).state_dict(), tmp_path / "seg.pth")
    return tmp_path


def test_explain_segmentation_end_to_end(workspace: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(workspace)
    status = main(
        [
            "explain",
            "imgs",
            "--model",
            "mymodel.py:seg",
            "--weights",
            "seg.pth",
            "--layer",
            "encoder.layer4",
            "--method",
            "hirescam,gradcam",
            "--labels",
            "labels.json",
            "--class",
            "all",
            "--batch-size",
            "2",
            "--out",
            "out",
            "--quiet",
        ]
    )
    assert status == 1  # one unreadable image: skipped, reported, non-zero exit
    err = capsys.readouterr().err
    assert "skipped imgs/broken.png" in err
    summary = json.loads((workspace / "out" / "summary.json").read_text())
    assert [Path(i["file"]).name for i in summary["images"]] == [
        "tile_1.png",
        "tile_2.png",
        "tile_10.png",
    ]
    assert summary["failed"][0]["input"].endswith("broken.png")
    records = summary["images"][0]["records"]
    assert {r["class_name"] for r in records} == {"background", "tissue", "gland"}
    assert {r["method"] for r in records} == {"hirescam", "gradcam"}
    raw = np.load(workspace / "out" / "raw" / "tile_1.npz")
    assert raw["hirescam_maps"].shape == (3, 64, 64)
    assert raw["hirescam_layer0"].shape == (3, 4, 4)
    assert raw["hirescam_layer0"].min() < 0 < raw["hirescam_layer0"].max()  # signed
    page = (workspace / "out" / "report.html").read_text()
    assert "tile_10.png" in page and "Skipped inputs" in page
    assert any(p.name.endswith("hirescam.png") for p in (workspace / "out" / "images").rglob("*"))


def test_explain_classification(workspace: Path, monkeypatch) -> None:
    monkeypatch.chdir(workspace)
    status = main(
        [
            "explain",
            "imgs/tile_1.png",
            "imgs/tile_2.png",
            "--model",
            "mymodel.py:cls",
            "--layer",
            "layer3",
            "--class",
            "gland,0",
            "--labels",
            "labels.json",
            "--out",
            "out",
            "--quiet",
        ]
    )
    assert status == 0
    summary = json.loads((workspace / "out" / "summary.json").read_text())
    pairs = [(Path(i["file"]).name, r["class_id"]) for i in summary["images"] for r in i["records"]]
    assert sorted(pairs) == [
        ("tile_1.png", 0),
        ("tile_1.png", 2),
        ("tile_2.png", 0),
        ("tile_2.png", 2),
    ]
    assert (workspace / "out" / "raw" / "tile_1-class2.npz").exists()


def test_unknown_layer_lists_close_names(workspace: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workspace)
    status = main(
        [
            "explain",
            "imgs",
            "--model",
            "mymodel.py:seg",
            "--layer",
            "encoder.layr4",
            "--out",
            "out",
            "--quiet",
        ]
    )
    assert status == 2
    assert "closest: 'encoder.layer4'" in capsys.readouterr().err


def test_bad_weights_and_model_specs(workspace: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workspace)
    assert (
        main(
            [
                "explain",
                "imgs",
                "--model",
                "mymodel.py:seg",
                "--weights",
                "labels.json",
                "--layer",
                "encoder.layer4",
                "--out",
                "o",
                "--quiet",
            ]
        )
        == 2
    )
    assert "weights-only checkpoint" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                "imgs",
                "--model",
                "mymodel.py:nope",
                "--layer",
                "x",
                "--out",
                "o",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no callable 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                "nothing-here",
                "--model",
                "mymodel.py:seg",
                "--layer",
                "encoder.layer4",
                "--out",
                "o",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no such file or folder" in capsys.readouterr().err


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    torch.save(tiny_deeplabv3plus(num_classes=5).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ModelLoadError, match="of another shape"):
        load_weights(tiny_deeplabv3plus(num_classes=3), tmp_path / "w.pth")
    torch.save({"state_dict": tiny_deeplabv3plus(num_classes=3).state_dict()}, tmp_path / "c.pt")
    load_weights(tiny_deeplabv3plus(num_classes=3), tmp_path / "c.pt")  # checkpoint dict
    torch.save(tiny_deeplabv3plus(num_classes=3), tmp_path / "whole.pt")  # a pickled module
    with pytest.raises(ModelLoadError, match="weights-only"):
        load_weights(tiny_deeplabv3plus(num_classes=3), tmp_path / "whole.pt")


def test_labels_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"0": "bg", "2": "gland"}')
    assert load_labels(tmp_path / "a.json") == ["bg", "class 1", "gland"]
    (tmp_path / "b.json").write_text('{"bad": 1')
    with pytest.raises(ModelLoadError, match="JSON"):
        load_labels(tmp_path / "b.json")


def test_natural_order_and_globs(tmp_path: Path) -> None:
    for name in ("tile_10.png", "tile_2.png", "Tile_1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    files, problems = collect_images([str(tmp_path / "*.png"), str(tmp_path / "missing.png")])
    assert [f.name for f in files] == ["Tile_1.png", "tile_2.png", "tile_10.png"]
    assert problems == [(str(tmp_path / "missing.png"), "no such file or folder")]
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_help_and_methods(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    help_text = capsys.readouterr().out
    for option in (
        "--model",
        "--weights",
        "--layer",
        "--method",
        "--class",
        "--size",
        "--batch-size",
        "--device",
        "--out",
    ):
        assert option in help_text
    assert main(["methods"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
              if line and not line.startswith(" ")}  # fmt: skip
    assert "hirescam" in listed
    assert "re-runs the model" in listed["scorecam"]
    assert "re-runs the model" not in listed["kpcacam"]  # a runner that only reads activations
    for name in ("camlens.guided_gradcam", "camlens.DeepFeatureFactorization", "SESS",
                 "camlens.wrappers.noise_tunnel", "RefineCAM", "camlens.FinerCAM"):  # fmt: skip
        assert any(name in line for line in listed.values()), name


def test_help_states_each_default_once(capsys) -> None:
    for command in ("explain", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())  # undo the line wrapping
        assert "(default: native)" in help_text and "(default: 4)" in help_text
        assert "native) (default: None)" not in help_text
        assert "cls) (default: None)" not in help_text


def test_python_m_camlens_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "camlens.cli", "methods"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hirescam" in done.stdout
