"""`camlens explain --engine ray` and `camlens.distributed.explain_dataset` on a real local Ray
cluster: the same bytes as the local run, a killed worker recovered, an interrupted run
resumed, the Python API over a Ray Dataset, and usage errors in one line.

Marked `ray`: `make test-ray` installs the extra and runs them (CI does); `make test` does not.
Each test starts one small local cluster (a few seconds) and shuts it down. Workers run one
torch thread, and so does the local reference: CPU kernels split their sums by thread, so
the maps are the same bytes only with the same number of threads.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.cli import main

pytestmark = pytest.mark.ray

MODEL_FILE = """
import os
import signal
import time

import torch
from camlens.models import tiny_deeplabv3plus

DRIVER = {driver}
MARKER = {marker!r}


def seg():
    torch.manual_seed(0)
    return tiny_deeplabv3plus(num_classes=3)


def _real(inputs):
    return bool(inputs.abs().sum() > 0)  # the driver's probe is a batch of zeros


def killer():
    '''Kills the worker process it runs in, once, on its first real batch.'''
    model = seg()

    def hook(module, args):
        if os.getpid() != DRIVER and _real(args[0]) and not os.path.exists(MARKER):
            open(MARKER, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    model.register_forward_pre_hook(hook)
    return model


def slow():
    '''A quarter of a second per batch, so that a run can be interrupted midway.'''
    model = seg()

    def hook(module, args):
        if _real(args[0]):
            time.sleep(0.25)

    model.register_forward_pre_hook(hook)
    return model
"""

IMAGES = 12


def _explain(out: str, *extra: str, model: str = "mymodel.py:seg") -> list[str]:
    return ["explain", "imgs", "--model", model, "--layer", "encoder.layer4", "--method",
            "hirescam", "--batch-size", "2", "--quiet", "--out", out, *extra]  # fmt: skip


RAY = ("--engine", "ray", "--workers", "2", "--threads-per-worker", "1")


def _raw(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((out / "raw").glob("*.npz"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of images, the model file, and the local run's outputs in `local/`."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "mymodel.py").write_text(
        MODEL_FILE.format(driver=os.getpid(), marker=str(root / "killed.marker"))
    )
    (root / "imgs").mkdir()
    for number in range(IMAGES):
        pixels = np.random.default_rng(number).random((64, 64, 3)) * 255
        Image.fromarray(pixels.astype(np.uint8)).save(root / "imgs" / f"tile_{number:02d}.png")
    threads = torch.get_num_threads()
    cwd = Path.cwd()
    torch.set_num_threads(1)
    os.chdir(root)
    try:
        assert main(_explain("local")) == 0
    finally:
        torch.set_num_threads(threads)
        os.chdir(cwd)
    return root


@pytest.fixture
def workspace(reference: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The reference folder as the working directory; a home and a temp folder of the
    test's own, to see what Ray leaves there."""
    monkeypatch.chdir(reference)
    (tmp_path / "home").mkdir()
    temp = tempfile.mkdtemp(prefix="cl-", dir="/tmp")  # short: Ray's socket paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", temp)
    (tmp_path / "tmp").symlink_to(temp)
    yield reference
    shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_run_writes_the_local_runs_bytes(workspace: Path, tmp_path: Path) -> None:
    """Batches of the plan, not images, go to the workers: the same images go through the
    model together, so raw maps and summary.json are byte-identical to the local run. Ray
    leaves nothing in the home or the temp folder."""
    assert main(_explain("on-ray", *RAY)) == 0
    local, ray = workspace / "local", workspace / "on-ray"
    assert len(_raw(ray)) == IMAGES and _raw(ray) == _raw(local)
    assert (ray / "summary.json").read_bytes() == (local / "summary.json").read_bytes()
    assert len((ray / "manifest.jsonl").read_text().splitlines()) == IMAGES  # one writer
    assert json.loads((ray / "run.json").read_text()) == json.loads(
        (local / "run.json").read_text()
    )
    assert not list((tmp_path / "home").iterdir())  # no ~/.ray
    assert not list((tmp_path / "tmp").iterdir())  # the cluster's temp folder is removed
    assert main(_explain("on-ray", *RAY)) == 2  # the same rules for --out as locally


def test_a_killed_worker_is_recovered(workspace: Path) -> None:
    """A worker SIGKILLed on its first real batch: Ray restarts it and gives its batches
    again; every image is explained, the same bytes, and no half-written file is left."""
    marker = workspace / "killed.marker"
    marker.unlink(missing_ok=True)
    assert main(_explain("killed", *RAY, model="mymodel.py:killer")) == 0
    assert marker.exists()  # a worker did die
    assert _raw(workspace / "killed") == _raw(workspace / "local")
    assert not list((workspace / "killed").rglob("*.partial"))
    summary = json.loads((workspace / "killed" / "summary.json").read_text())
    assert summary["complete"] and len(summary["images"]) == IMAGES


def test_resume_after_an_interrupted_ray_run(workspace: Path) -> None:
    """Ctrl-C on the driver: exit 130, a partial report, Ray shut down; `--resume` (on Ray
    again) explains only what the manifest lacks and ends with the local run's bytes."""
    out = workspace / "interrupted"
    command = [sys.executable, "-m", "camlens.cli",
               *_explain(str(out), *RAY, model="mymodel.py:slow")]  # fmt: skip
    process = subprocess.Popen(command, cwd=workspace, stderr=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    before = manifest.read_text().count("\n")
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["complete"] and 2 <= before < IMAGES
    assert main(_explain(str(out), *RAY, "--resume", model="mymodel.py:slow")) == 0
    assert manifest.read_text().count("\n") == IMAGES  # only the missing ones were added
    assert _raw(out) == _raw(workspace / "local")
    assert json.loads((out / "summary.json").read_text())["complete"]


def test_the_python_api_takes_a_ray_dataset(workspace: Path) -> None:
    """`explain_dataset` over a Ray Dataset with a `path` column, in a Ray this process
    started: the same maps as the local run, and the totals."""
    from camlens.distributed import Cluster, ClusterOptions, explain_dataset

    with Cluster(ClusterOptions()) as cluster:
        data = cluster.ray.data
        paths = [{"path": str(path)} for path in sorted((workspace / "imgs").glob("*.png"))]
        totals = explain_dataset(
            data.from_items(paths),
            out=workspace / "api",
            model="mymodel.py:seg",
            layers="encoder.layer4",
            methods="hirescam",
            batch_size=2,
            workers=1,
            threads_per_worker=1,
        )
        assert cluster.ray.is_initialized()  # the caller's Ray is left running
    assert (totals.done, totals.failed, totals.remaining) == (IMAGES, [], 0)
    assert _raw(workspace / "api") == _raw(workspace / "local")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--device", "cuda"], "--gpus-per-worker"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker must be 0 or more"),
        (["--gpus-per-worker", "1"], "has no GPU"),  # checked on the started cluster
    ],
)
def test_usage_errors_exit_2_in_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    if torch.cuda.is_available() and "no GPU" in message:
        pytest.skip("this machine has a GPU")
    assert main(_explain("refused", "--engine", "ray", *arguments)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_slide_on_ray_is_the_local_slide(workspace: Path, tmp_path: Path) -> None:
    """`camlens slide --engine ray`: the tiles' batches go to the workers, each opening the
    slide itself; the driver stitches. Stitched maps, class map and summary are the local
    run's bytes; the manifest has one line per tile."""
    from camlens.demo.models import demo_weights
    from camlens.demo.slide import write_synthetic_slide

    slide = tmp_path / "slide.tiff"
    write_synthetic_slide(slide, 1024, 768, mpp=0.5, seed=5)

    def command(out: str, *extra: str) -> list[str]:
        return ["slide", str(slide), "--model", "camlens.demo.models:segmenter", "--weights",
                str(demo_weights("segmenter")), "--layer", "encoder.layer4", "--method",
                "hirescam", "--mpp", "1", "--tile", "128", "--overlap", "16", "--downsample",
                "2", "--no-viewer", "--quiet", "--out", str(tmp_path / out), *extra]  # fmt: skip

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(command("local")) == 0
    finally:
        torch.set_num_threads(threads)
    assert main(command("on-ray", *RAY)) == 0
    local, ray = tmp_path / "local", tmp_path / "on-ray"
    maps = sorted(path.name for path in (local / "maps").glob("*.npy"))
    assert len(maps) == 8  # 7 classes and the class map
    for name in maps:
        assert (ray / "maps" / name).read_bytes() == (local / "maps" / name).read_bytes(), name
    summary = json.loads((local / "summary.json").read_text())
    assert json.loads((ray / "summary.json").read_text()) == summary
    lines = (ray / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == summary["tiles"]["done"] > 4
