"""ScoreCAM and AblationCAM against direct, unbatched implementations written here (one
forward pass per channel), and the guarantees of their batched re-runs: chunking, the three
ways AblationCAM re-runs a model, several targets from one set of re-runs, the borrowed
model, the division by the score, clear errors."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import InputShapeError, TargetError
from camlens.models import tiny_deeplabv3plus, tiny_resnet, tiny_vit
from camlens.reshape import tokens_to_grid
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget

from .conftest import GapLinearNet
from .test_borrowed import _mixed_mode_resnet

TIGHT = {"rtol": 1e-9, "atol": 1e-10}


# -- direct references: one forward pass per channel, nothing batched ------------------------
def _layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor):
    store = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.setdefault("out", out))
    with torch.no_grad():
        output = model(x)
    handle.remove()
    return output, store["out"].detach()


def _to_grid(raw: torch.Tensor) -> torch.Tensor:
    return tokens_to_grid(raw) if raw.dim() == 3 else raw


def _zero_channel(raw: torch.Tensor, channel: int) -> torch.Tensor:
    raw = raw.clone()
    if raw.dim() == 3:  # ViT tokens: the channel at the patch tokens, not the class token
        raw[:, 1:, channel] = 0
    else:
        raw[:, channel] = 0
    return raw


def _out(output):
    return output["out"] if isinstance(output, dict) else output


def reference_scorecam(model, layer, x, target, channels=None) -> torch.Tensor:
    """Wang et al. 2020, written out: (h, w) map of one image ``x`` (1, C, H, W)."""
    _, raw = _layer_output(model, layer, x)
    activations = _to_grid(raw)[0]
    channels = range(activations.shape[0]) if channels is None else channels
    scores = []
    for k in channels:
        up = F.interpolate(
            activations[None, k : k + 1], size=x.shape[2:], mode="bilinear", align_corners=True
        )
        mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
        with torch.no_grad():
            scores.append(target(_out(model(x * mask))[0]))
    weights = torch.zeros(activations.shape[0], dtype=activations.dtype)
    weights[list(channels)] = torch.softmax(torch.stack(scores), dim=0)
    return (weights[:, None, None] * activations).sum(0)


def reference_ablationcam(model, layer, x, target, channels=None) -> torch.Tensor:
    """Desai & Ramaswamy 2020 with the score's magnitude as denominator: (h, w) map."""
    output, raw = _layer_output(model, layer, x)
    activations = _to_grid(raw)[0]
    score = target(_out(output)[0])
    channels = range(activations.shape[0]) if channels is None else channels
    weights = torch.zeros(activations.shape[0], dtype=activations.dtype)
    for k in channels:
        handle = layer.register_forward_hook(lambda _m, _i, out, k=k: _zero_channel(out, k))
        with torch.no_grad():
            ablated = target(_out(model(x))[0])
        handle.remove()
        weights[k] = (score - ablated) / score.abs().clamp_min(1e-7)
    return (weights[:, None, None] * activations).sum(0)


REFERENCES = {"scorecam": reference_scorecam, "ablationcam": reference_ablationcam}


def _case(name: str):
    """(model, layer name, input) in float64."""
    torch.manual_seed(0)
    if name == "gap":
        return GapLinearNet().double().eval(), "features", torch.randn(2, 3, 12, 12).double()
    if name == "resnet":
        model = tiny_resnet(num_classes=4).double().eval()
        return model, "layer4", torch.randn(2, 3, 32, 32).double()
    if name == "deeplab":
        model = tiny_deeplabv3plus(num_classes=3).double().eval()
        return model, "encoder.layer4", torch.randn(2, 3, 32, 32).double()
    model = tiny_vit(num_classes=4).double().eval()
    return model, "blocks.1.norm1", torch.randn(2, 3, 32, 32).double()


def _targets(name: str, x: torch.Tensor):
    if name == "deeplab":
        return [SemanticSegmentationTarget(1, torch.ones(x.shape[2:])) for _ in range(len(x))]
    return [ClassifierOutputTarget(1), ClassifierOutputTarget(3)]


def _layer(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


@pytest.mark.parametrize("case", ["gap", "resnet", "deeplab", "vit"])
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_matches_unbatched_reference(method: str, case: str) -> None:
    model, layer, x = _case(case)
    targets = _targets(case, x)
    result = camlens.explain(model, x, method=method, layers=layer, targets=targets)
    for i in range(len(x)):
        expected = REFERENCES[method](model, _layer(model, layer), x[i : i + 1], targets[i])
        assert_close(result.layer_maps[0][i], expected, **TIGHT)


class SkipAndItem(nn.Module):
    """Defeats the two fast ways: a skip connection from the input (an expanded batch meets
    a batch-1 tensor) and ``.item()`` after the layer (torch.vmap cannot run it)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.features(x).mean((2, 3)), x.mean((2, 3))], dim=1)
        signs = [1.0 if float(row.sum().item()) > 0 else -1.0 for row in joined]
        return self.fc(joined) * torch.tensor(signs, dtype=joined.dtype)[:, None]


@pytest.mark.parametrize(
    ("case", "used"),
    [
        ("resnet", None),  # the expanded batch works: no message
        ("deeplab", None),  # the linear shortcut: ASPP's convolutions read layer4
        ("skip-and-item", "whole-model re-runs"),
    ],
)
def test_ablation_ways_agree(case: str, used: str | None, caplog) -> None:
    if case == "skip-and-item":
        torch.manual_seed(0)
        model, layer, x = SkipAndItem().double().eval(), "features", torch.randn(2, 3, 8, 8)
        x = x.double()
        targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(2)]
    else:
        model, layer, x = _case(case)
        targets = _targets(case, x)
    with caplog.at_level(logging.INFO, logger="camlens"):
        auto = camlens.Explainer(model, layer, method="ablationcam").explain(x, targets)
    full = camlens.Explainer(model, layer, method="ablationcam", options={"rerun": "full"}).explain(
        x, targets
    )
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)
    if used is None:
        assert "AblationCAM" not in caplog.text
    else:
        assert f"using {used}" in caplog.text
    for i in range(len(x)):
        expected = reference_ablationcam(model, _layer(model, layer), x[i : i + 1], targets[i])
        assert_close(auto.layer_maps[0][i], expected, **TIGHT)


@pytest.mark.parametrize("case", ["resnet", "deeplab"])
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_chunk_size_does_not_change_maps(method: str, case: str) -> None:
    model, layer, x = _case(case)
    targets = _targets(case, x)

    def run(**options):
        cam = camlens.Explainer(model, layer, method=method, options=options)
        return cam.explain(x, targets).layer_maps[0]

    reference = run(batch_size=1)
    for options in ({"batch_size": 5}, {"batch_size": 10_000}, {"memory_budget_mb": 1e-3}, {}):
        assert_close(run(**options), reference, rtol=1e-12, atol=1e-12)


class Recording(nn.Module):
    """Counts forward passes and records their batch sizes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x)


def test_scorecam_streams_masked_inputs_in_bounded_chunks() -> None:
    torch.manual_seed(0)
    model = Recording(tiny_resnet(num_classes=4).eval())
    x = torch.randn(1, 3, 32, 32)  # layer4 has 64 channels
    _, activations = _layer_output(model, model.model.layer4, x)
    distinct = len(torch.unique(activations[0].flatten(1), dim=0))  # dead ones share a re-run
    assert distinct < 64
    model.batches.clear()
    camlens.Explainer(model, "model.layer4", method="scorecam", options={"batch_size": 5})(x, [1])
    assert model.batches[0] == 1 and max(model.batches[1:]) == 5
    assert sum(model.batches[1:]) == distinct
    model.batches.clear()
    camlens.Explainer(model, "model.layer4", method="scorecam", options={"memory_budget_mb": 1e-3})(
        x, [1]
    )
    assert set(model.batches) == {1}  # a budget below one copy: one copy at a time


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "fullgrad"])
def test_all_classes_from_one_set_of_reruns(method: str) -> None:
    torch.manual_seed(0)
    model = Recording(tiny_deeplabv3plus(num_classes=3).double().eval())
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, :, 12:] = 1
    labels[:, 20:, 20:] = 2
    layer = "model.encoder.layer4"
    result = camlens.explain_segmentation(
        model, x, classes="all", methods=[method], layers=layer, masks=labels
    )
    calls_all_classes = len(model.batches)
    assert result.classes == [0, 1, 2]
    for index, class_id in enumerate(result.classes):
        model.batches.clear()
        target = SemanticSegmentationTarget(class_id, result.masks[0, index])
        single = camlens.Explainer(model, layer, method=method).explain(x, [target])
        assert_close(result.layer_maps[method][0][:, index], single.layer_maps[0], **TIGHT)
        assert_close(result.maps[method][:, index], single.maps, **TIGHT)
        assert len(model.batches) == calls_all_classes  # K classes cost what one class costs
    if method == "fullgrad":
        assert result.map_names == {"fullgrad": ["fullgrad(input+biases)"]}


class Exploding(RuntimeError):
    pass


class FailsAfter(nn.Module):
    """Raises on its ``limit + 1``-th forward pass."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__()
        self.model = model
        self.limit = limit
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.limit:
            raise Exploding(f"forward pass {self.calls}")
        return self.model(x)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "fullgrad"])
def test_model_untouched_after_success_and_midway_exception(method: str, snapshot) -> None:
    torch.manual_seed(0)
    # the original forward pass (+ one chunk of re-runs), then an exception
    model = FailsAfter(_mixed_mode_resnet(), limit=1 if method == "fullgrad" else 2)
    options = {} if method == "fullgrad" else {"batch_size": 4}
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(model)
    cam = camlens.Explainer(model, "model.layer4", method=method, options=options)
    with pytest.raises(Exploding):
        cam.explain(x, [1])
    before.assert_same(model)
    model.limit, model.calls = math.inf, 0
    result = cam.explain(x, [1])
    assert result.maps.shape == (2, 32, 32)
    before.assert_same(model)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "fullgrad"])
def test_unreachable_target_fails_before_any_rerun(method: str) -> None:
    model = Recording(tiny_resnet(num_classes=4))
    with pytest.raises(TargetError, match="out of range"):
        camlens.explain(
            model, torch.randn(1, 3, 32, 32), method=method, layers="model.layer4", targets=[7]
        )
    assert model.batches == [1]  # only the original forward pass ran


def test_ablation_division_keeps_the_meaning_of_the_map(caplog) -> None:
    """Shifting the score by a constant changes no drop: a negative or a zero score must give
    the same picture (a positive rescaling of the raw map), never an inverted one."""
    model, layer, x = _case("resnet")
    x = x[:1]
    cam = camlens.Explainer(model, layer, method="ablationcam")
    logit = float(cam.explain(x, [ClassifierOutputTarget(1)]).scores[0])
    positive = cam.explain(x, [lambda out: out[1] - logit + 5.0])
    assert float(positive.scores[0]) == pytest.approx(5.0)
    negative = cam.explain(x, [lambda out: out[1] - logit - 100.0])
    assert float(negative.scores[0]) == pytest.approx(-100.0)
    assert_close(negative.maps, positive.maps, **TIGHT)
    assert_close(negative.layer_maps[0], positive.layer_maps[0] * (5.0 / 100.0), **TIGHT)
    with caplog.at_level(logging.INFO, logger="camlens"):
        zero = cam.explain(x, [lambda out: out[1] - logit])
    assert float(zero.scores[0]) == 0.0
    assert torch.isfinite(zero.layer_maps[0]).all()
    assert_close(zero.maps, positive.maps, **TIGHT)
    assert_close(zero.layer_maps[0], positive.layer_maps[0] * (5.0 / 1e-7), **TIGHT)
    assert "divided by 1e-07" in caplog.text


def test_speedup_options_select_channels() -> None:
    model, layer, x = _case("resnet")
    module = _layer(model, layer)
    activations = _layer_output(model, module, x[:1])[1][0]
    strongest = activations.abs().flatten(1).mean(1).argsort(descending=True)
    exact = camlens.Explainer(model, layer, method="scorecam").explain(x[:1], [1])
    everything = camlens.ScoreCAM(model, [module], top_k=1000).explain(x[:1], [1])
    assert_close(everything.layer_maps[0], exact.layer_maps[0], **TIGHT)
    top = camlens.ScoreCAM(model, [module], top_k=5).explain(x[:1], [1])
    expected = reference_scorecam(
        model, module, x[:1], ClassifierOutputTarget(1), strongest[:5].tolist()
    )
    assert_close(top.layer_maps[0][0], expected, **TIGHT)
    cam = camlens.AblationCAM(model, [module], ratio_channels_to_ablate=0.25)
    assert cam.method_options["ratio"] == 0.25
    quarter = cam.explain(x[:1], [1])
    expected = reference_ablationcam(
        model, module, x[:1], ClassifierOutputTarget(1), strongest[:16].tolist()
    )
    assert_close(quarter.layer_maps[0][0], expected, **TIGHT)


def test_familiar_constructors(capsys) -> None:
    model, _layer_name, x = _case("gap")
    cam = camlens.ScoreCAM(model, [model.features])
    assert cam.batch_size is None
    default = cam(x, [ClassifierOutputTarget(2)])
    cam.batch_size = 3
    assert cam.method_options["batch_size"] == 3
    assert_close(torch.from_numpy(cam(x, [ClassifierOutputTarget(2)])), torch.from_numpy(default))
    smoothed = cam(x, [ClassifierOutputTarget(2)], eigen_smooth=True)
    assert smoothed.shape == default.shape and not (smoothed == default).all()
    with pytest.warns(UserWarning, match="ablation_layer"):
        ablation = camlens.AblationCAM(model, [model.features], ablation_layer=nn.Identity())
    assert ablation.batch_size is None
    capsys.readouterr()
    camlens.AblationCAM(model, [model.features], batch_size=8)(x, [1])
    assert "AblationCAM" in capsys.readouterr().err  # the progress bar, on by default
    camlens.ScoreCAM(model, [model.features], progress=False)(x, [1])
    assert capsys.readouterr().err == ""
    explained = camlens.Explainer(model, [model.features], "scorecam")
    explained(x, [1])
    assert capsys.readouterr().err == ""  # camlens's own front ends stay quiet


@pytest.mark.parametrize(
    ("method", "options", "error", "match"),
    [
        ("scorecam", {"bogus": 1}, TypeError, "unknown option"),
        ("scorecam", {"batch_size": 0}, ValueError, "batch_size"),
        ("scorecam", {"memory_budget_mb": -1}, ValueError, "memory_budget_mb"),
        ("scorecam", {"top_k": 0}, ValueError, "top_k"),
        ("ablationcam", {"ratio": 0}, ValueError, "ratio"),
        ("ablationcam", {"rerun": "sometimes"}, ValueError, "rerun"),
        ("fullgrad", {"batch_size": 4}, TypeError, "takes no options"),
    ],
)
def test_bad_options(method: str, options: dict, error: type, match: str) -> None:
    model, layer, _ = _case("gap")
    with pytest.raises(error, match=match):  # checked up front, before any work
        camlens.Explainer(model, layer, method=method, options=options)


def test_ablation_needs_a_rearranging_reshape() -> None:
    model, layer, x = _case("gap")
    cam = camlens.Explainer(model, layer, reshape_transform=lambda t: t + 0.5, method="ablationcam")
    with pytest.raises(InputShapeError, match="only select and rearrange"):
        cam.explain(x, [1])
