"""Methods that re-run the model say in advance when they will take long: after the first
chunk, an estimate of the whole run (and what to try) as a ``SlowRunWarning`` pointing at the
user's line; the familiar classes show a progress bar with the ETA by default."""

from __future__ import annotations

import re
import time
import warnings

import pytest
import torch
from torch import nn

import camlens.methods.perturbation as perturbation
from camlens import AblationCAM, ScoreCAM
from camlens.errors import SlowRunWarning
from camlens.models import tiny_resnet
from camlens.targets import ClassifierOutputTarget

PAUSE = 0.02  # seconds per re-run copy: dominates the tiny model's own time


def slow_model() -> nn.Module:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3).eval()

    def pause(module, args):
        time.sleep(PAUSE * args[0].shape[0])

    model.fc.register_forward_pre_hook(pause)
    return model


@pytest.mark.parametrize("family", [ScoreCAM, AblationCAM])
def test_a_long_run_is_announced_with_its_estimate(monkeypatch, family) -> None:
    monkeypatch.setattr(perturbation, "SLOW_RUN_SECONDS", 0.0)
    model = slow_model()
    cam = family(model=model, target_layers=[model.layer4], batch_size=8, progress=False)
    x = torch.randn(1, 3, 32, 32)
    started = time.perf_counter()
    with pytest.warns(SlowRunWarning, match=r"re-runs of the model") as caught:
        cam(x, [ClassifierOutputTarget(1)])
    elapsed = time.perf_counter() - started
    assert caught[0].filename == __file__  # the user's line, not camlens's
    channels = model.layer4[-1].conv2.out_channels
    text = str(caught[0].message)
    assert "top_k" in text and "GPU" in text
    runs = int(re.search(r"for (\d+) re-runs", text).group(1))
    assert 8 < runs <= channels  # ScoreCAM runs equal (e.g. dead) channels once
    per_copy = float(re.search(r"\(([\d.e-]+) s each", text).group(1))
    # the first chunk's rate predicts the whole run (within 30 %, plus fixed costs)
    assert per_copy * runs == pytest.approx(elapsed, rel=0.3, abs=0.05)


def test_short_runs_stay_quiet_and_progress_is_on_by_default() -> None:
    model = slow_model()
    cam = ScoreCAM(model=model, target_layers=[model.layer4])
    assert cam.options["progress"] is True
    assert (
        ScoreCAM(model=model, target_layers=[model.layer4], progress=False).options["progress"]
        is False
    )
    assert AblationCAM(model=model, target_layers=[model.layer4]).options["progress"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cam(torch.randn(1, 3, 32, 32), [ClassifierOutputTarget(1)])
