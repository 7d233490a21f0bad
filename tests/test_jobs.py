"""`camlens explain` as a job: failures isolated per image, options checked up front, exit
codes scripts can trust, atomic and resumable outputs, a lock on --out, shards merged by
`camlens report`. Each test names the problem it guards against."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.cli import main
from camlens.jobs.folder import RunFolder
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

def half():
    return seg().half()

def broken():
    raise RuntimeError("no checkpoint server")
"""


def _image(path: Path, height: int, width: int, seed: int) -> None:
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "mymodel.py").write_text(MODEL_FILE)
    (tmp_path / "syntax.py").write_text("def seg(:\n")
    images = tmp_path / "imgs"
    images.mkdir()
    for number in range(1, 6):
        _image(images / f"tile_{number}.png", 64, 64, number)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _explain(*extra: str, model: str = "mymodel.py:seg", images: str = "imgs") -> list[str]:
    return ["explain", images, "--model", model, "--layer", "encoder.layer4", "--method",
            "hirescam", "--batch-size", "2", "--quiet", *extra]  # fmt: skip


def _outputs(out: Path) -> dict[str, bytes]:
    """Every per-image output file (raw maps and pictures), by relative path."""
    files = [*out.glob("raw/*.npz"), *out.glob("images/**/*.png")]
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(files)}


def test_a_bad_image_is_skipped_and_the_run_goes_on(workspace: Path, capsys) -> None:
    """Before: a 1×1 tile or an unreadable file ended the run in a traceback, leaving no
    summary and no report, and later images were never reached."""
    _image(workspace / "imgs" / "tile_0_tiny.png", 1, 1, 0)
    (workspace / "imgs" / "tile_3_broken.png").write_text("not a png")
    status = main(_explain("--out", "out"))
    assert status == 1
    err = capsys.readouterr().err
    assert "tile_0_tiny.png" in err and "--pad auto" in err  # the reason and a hint
    assert "tile_3_broken.png" in err
    summary = json.loads((workspace / "out" / "summary.json").read_text())
    assert [Path(i["file"]).name for i in summary["images"]] == [
        f"tile_{n}.png" for n in range(1, 6)
    ]
    assert {Path(f["input"]).name for f in summary["failed"]} == {
        "tile_0_tiny.png",
        "tile_3_broken.png",
    }
    page = (workspace / "out" / "report.html").read_text()
    assert "Skipped inputs" in page and "tile_5.png" in page


def test_pad_auto_explains_sizes_the_model_cannot_take(workspace: Path) -> None:
    """A 300×200 image fed to a DeepLabV3+ (stride 16): skipped without --pad, explained
    with --pad auto, maps cropped back to 300×200, the padding reported."""
    _image(workspace / "odd.png", 300, 200, 9)
    assert main(_explain("--out", "plain", images="odd.png")) == 1
    assert main(_explain("--out", "padded", "--pad", "auto", images="odd.png")) == 0
    raw = np.load(workspace / "padded" / "raw" / "odd.npz")
    assert raw["hirescam_maps"].shape[-2:] == (300, 200)
    assert raw["predicted"].shape == (300, 200)
    assert list(raw["padding"]) != [0, 0, 0, 0]
    assert "padded" in (workspace / "padded" / "report.html").read_text()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--device", "cuda"], "no CUDA"),
        (["--device", "mps"], "MPS is not available"),
        (["--device", "tpu9"], "--device"),
        (["--size", "0", "0"], "--size"),
        (["--size", "100000", "100000"], "--size"),
        (["--std", "0", "0", "0"], "--std must be positive"),
        (["--mean", "nan", "0", "0"], "--mean must be finite"),
        (["--batch-size", "0"], "--batch-size"),
        (["--class", "2,-1,-4"], "class ids are 0 or more"),
        (["--class", "7"], "the model has 3 classes"),
        (["--shard", "2/2"], "--shard"),
        (["--pad", "zero"], "pad"),
        (["--option", "pool_size=2"], "not an option"),
        (["--resume", "--overwrite"], "pass one"),
        (["--layer", "encoder.layer9"], "closest"),
    ],
)
def test_usage_errors_exit_2_before_any_output(
    workspace: Path, capsys, arguments: list[str], message: str
) -> None:
    """Before: tracebacks and exit 1 (the code for "some images skipped"), or a mid-run
    exit after writing files."""
    assert main(_explain("--out", "out", *arguments)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (workspace / "out").exists()  # nothing created


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("mymodel.py:broken", "no checkpoint server"),
        ("syntax.py:seg", "SyntaxError"),
        ("mymodel.py:nothing", "has no callable"),
    ],
)
def test_factories_that_fail_exit_2(workspace: Path, capsys, model: str, message: str) -> None:
    assert main(_explain("--out", "out", model=model)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_zero_byte_weights_and_out_that_is_a_file(workspace: Path, capsys) -> None:
    """Before: a zero-byte weights file crashed camlens's own error handler."""
    (workspace / "empty.pth").write_bytes(b"")
    assert main(_explain("--out", "out", "--weights", "empty.pth")) == 2
    assert "is empty" in capsys.readouterr().err
    (workspace / "afile").write_text("x")
    assert main(_explain("--out", "afile")) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(_explain("--out", "/proc/camlens-out")) == 2
    assert "cannot write into --out" in capsys.readouterr().err


def test_other_commands_check_their_numbers(workspace: Path, capsys) -> None:
    assert main(["demo", "--tiles", "0", "--out", "demo"]) == 2
    evaluate = ["evaluate", "imgs", "--model", "mymodel.py:seg", "--layer", "encoder.layer4"]
    assert main([*evaluate, "--steps", "0", "--out", "ev"]) == 2
    assert main([*evaluate, "--size", "0", "0", "--out", "ev"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_float16_model_is_explained(workspace: Path, capsys) -> None:
    """Before: a float16 model printed a traceback."""
    status = main(_explain("--out", "out", model="mymodel.py:half"))
    err = capsys.readouterr().err
    assert status == 0 and "Traceback" not in err  # inputs take the model's dtype
    raw = np.load(workspace / "out" / "raw" / "tile_1.npz")
    assert np.isfinite(raw["hirescam_maps"]).all()


def test_out_is_claimed_locked_resumed_and_overwritten(workspace: Path, capsys) -> None:
    """Before: two runs into one --out corrupted each other; a reused --out kept the old
    run's orphans; there was no way to resume."""
    assert main(_explain("--out", "out")) == 0
    first = _outputs(workspace / "out")
    assert len(first) >= 5
    assert main(_explain("--out", "out")) == 2  # the same run again: resume or overwrite?
    assert "--resume" in capsys.readouterr().err
    assert main(_explain("--out", "out", "--method", "gradcam")) == 2  # another run's folder
    assert "other settings" in capsys.readouterr().err
    manifest = (workspace / "out" / "manifest.jsonl").read_text()
    assert main(_explain("--out", "out", "--resume")) == 0  # nothing left to do
    assert (workspace / "out" / "manifest.jsonl").read_text() == manifest
    (workspace / "out" / "orphan.txt").write_text("from an older run")
    assert main(_explain("--out", "out", "--overwrite")) == 0
    assert not (workspace / "out" / "orphan.txt").exists()
    assert _outputs(workspace / "out") == first  # deterministic outputs
    (workspace / "mine").mkdir()
    (workspace / "mine" / "thesis.tex").write_text("precious")
    assert main(_explain("--out", "mine", "--overwrite")) == 2  # never clears foreign files
    assert (workspace / "mine" / "thesis.tex").exists()
    with RunFolder(workspace / "out"):  # another process is writing there
        assert main(_explain("--out", "out", "--resume")) == 2
    assert "another camlens run" in capsys.readouterr().err


def test_resume_redoes_only_what_the_manifest_lacks(workspace: Path) -> None:
    assert main(_explain("--out", "full")) == 0
    assert main(_explain("--out", "part")) == 0
    manifest = workspace / "part" / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:2]) + lines[2][:20])  # two done, a line cut by a crash
    (workspace / "part" / "summary.json").unlink()
    assert main(_explain("--out", "part", "--resume")) == 0
    entries = [json.loads(line) for line in manifest.read_text().splitlines()[2:]]  # tail cut
    assert len(entries) == 3  # only the three missing images were redone
    assert _outputs(workspace / "part") == _outputs(workspace / "full")
    summary = json.loads((workspace / "part" / "summary.json").read_text())
    assert summary["complete"] and len(summary["images"]) == 5


def test_shards_merge_into_the_single_run(workspace: Path, capsys) -> None:
    assert main(_explain("--out", "single")) == 0
    assert main(_explain("--out", "sharded", "--shard", "0/2")) == 1  # the other half remains
    assert "not explained yet" in capsys.readouterr().err
    assert main(_explain("--out", "sharded", "--shard", "1/2")) == 0
    assert main(["report", "sharded"]) == 0
    assert _outputs(workspace / "sharded") == _outputs(workspace / "single")
    single = json.loads((workspace / "single" / "summary.json").read_text())
    merged = json.loads((workspace / "sharded" / "summary.json").read_text())
    assert merged["images"] == single["images"] and merged["complete"]
    assert main(["report", "imgs"]) == 2


def test_long_and_hostile_file_names(workspace: Path) -> None:
    """Before: a 254-byte file name with --class crashed on a too-long output name."""
    folder = workspace / "names"
    folder.mkdir()
    long_name = "x" * 250 + ".png"
    _image(folder / long_name, 64, 64, 1)
    _image(folder / "=HYPERLINK(1).png", 64, 64, 2)
    assert main(_explain("--out", "out", "--class", "0,1", images="names")) == 0
    assert all(len(path.name) < 100 for path in (workspace / "out" / "raw").iterdir())


def test_interrupt_leaves_a_partial_report_and_exit_130(workspace: Path) -> None:
    """Before: Ctrl-C printed a KeyboardInterrupt traceback and left no report."""
    for number in range(6, 40):
        _image(workspace / "imgs" / f"tile_{number}.png", 64, 64, number)
    command = [sys.executable, "-m", "camlens.cli", *_explain("--out", "out", "--batch-size", "1")]
    process = subprocess.Popen(command, cwd=workspace, stderr=subprocess.PIPE, text=True)
    manifest = workspace / "out" / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        manifest.exists() and manifest.read_text().count("\n") >= 2
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    summary = json.loads((workspace / "out" / "summary.json").read_text())
    assert not summary["complete"] and summary["remaining"] > 0
    assert "Partial report" in (workspace / "out" / "report.html").read_text()
    assert not list((workspace / "out").rglob("*.partial"))


@pytest.mark.slow
def test_killed_five_times_then_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """200 images; SIGKILL at random points five times, then --resume: the same bytes as a
    run that was never interrupted."""
    (tmp_path / "mymodel.py").write_text(MODEL_FILE)
    images = tmp_path / "imgs"
    images.mkdir()
    for number in range(200):
        _image(images / f"img_{number:03d}.png", 32, 32, number)
    base = [sys.executable, "-m", "camlens.cli", "explain", "imgs", "--model", "mymodel.py:seg",
            "--layer", "encoder.layer4", "--method", "hirescam", "--batch-size", "4",
            "--quiet"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--out", "clean"], cwd=tmp_path, env=environment, check=True)
    manifest = tmp_path / "killed" / "manifest.jsonl"
    rng = np.random.default_rng(0)
    killed_midway = 0
    for attempt in range(5):
        flags = ["--resume"] if attempt else []
        before = manifest.read_text().count("\n") if manifest.exists() else 0
        target = before + int(rng.integers(5, 30))  # kill after this many more images ...
        process = subprocess.Popen(
            [*base, "--out", "killed", *flags], cwd=tmp_path, env=environment
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if manifest.exists() and manifest.read_text().count("\n") >= target:
                break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.2)))  # ... and at a random moment after that
        process.kill()
        killed_midway += process.wait() == -signal.SIGKILL
    assert killed_midway == 5  # every kill landed mid-run
    finished = subprocess.run([*base, "--out", "killed", "--resume"], cwd=tmp_path, env=environment)
    assert finished.returncode == 0
    clean, killed = _outputs(tmp_path / "clean"), _outputs(tmp_path / "killed")
    assert len(clean) >= 200 and killed == clean
    summary = (tmp_path / "killed" / "summary.json").read_bytes()
    assert summary == (tmp_path / "clean" / "summary.json").read_bytes()
    assert not list((tmp_path / "killed").rglob("*.partial"))


def test_deeplab_needs_the_padding_this_suite_assumes() -> None:
    """The stride-16 tiny DeepLabV3+ fails on a 20×20 input (what the skip test relies on)."""
    with pytest.raises(RuntimeError):
        tiny_deeplabv3plus(num_classes=3).eval()(torch.zeros(1, 3, 20, 20))


def test_evaluate_is_a_job_too_and_its_csv_is_safe(workspace: Path, capsys) -> None:
    """evaluate shares the runner: a bad image is skipped, the run resumes and shards, and
    file names that a spreadsheet would run as formulas are neutralised in metrics.csv
    (before: `=`/`@` names went verbatim into the CSV)."""
    _image(workspace / "=HYPERLINK(1).png", 64, 64, 7)  # a cell starting with "="
    (workspace / "imgs" / "@broken.png").write_text("not a png")
    evaluate = ["evaluate", "imgs", "=HYPERLINK(1).png", "--model", "mymodel.py:seg",
                "--layer", "encoder.layer4", "--method", "gradcam", "--steps", "4",
                "--quiet"]  # fmt: skip
    assert main([*evaluate, "--out", "ev"]) == 1
    assert "@broken.png" in capsys.readouterr().err
    text = (workspace / "ev" / "metrics.csv").read_text()
    assert "\n'=HYPERLINK(1).png," in text and "\n=HYPERLINK" not in text
    metrics = json.loads((workspace / "ev" / "metrics.json").read_text())
    assert metrics["complete"] and {Path(r["file"]).name for r in metrics["rows"]} >= {
        "=HYPERLINK(1).png",
        "tile_1.png",
    }
    assert main([*evaluate, "--out", "ev", "--resume"]) == 1  # nothing redone, same result
    assert json.loads((workspace / "ev" / "metrics.json").read_text())["rows"] == metrics["rows"]
    assert main([*evaluate, "--out", "sharded", "--shard", "0/2"]) == 1
    assert main([*evaluate, "--out", "sharded", "--shard", "1/2"]) == 1
    assert main(["report", "sharded"]) == 1  # merged; the broken image stays skipped
    merged = json.loads((workspace / "sharded" / "metrics.json").read_text())
    key = lambda row: (row["file"], row["class_id"])  # noqa: E731
    assert sorted(merged["rows"], key=key) == sorted(metrics["rows"], key=key)


def test_a_symlink_loop_in_the_folder_is_skipped(workspace: Path, capsys) -> None:
    """Before: a symlink loop in the input folder ended in a traceback."""
    images = workspace / "imgs"
    (images / "loop_a.png").symlink_to("loop_b.png")
    (images / "loop_b.png").symlink_to("loop_a.png")
    (images / "gone.png").symlink_to("nowhere.png")
    assert main(_explain("--out", "out")) == 1
    err = capsys.readouterr().err
    assert "loop_a.png: symlink loop" in err and "gone.png" in err and "Traceback" not in err
    summary = json.loads((workspace / "out" / "summary.json").read_text())
    assert len(summary["images"]) == 5
