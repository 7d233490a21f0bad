"""The linear shortcut after a layer: differences through each module against the module
itself, chain discovery on DeepLabV3+, refusals, and AblationCAM's use of it (exact maps;
anything else that reads the layer's output turns it off)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from unittest import mock

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.methods.linear_delta import Delta, through
from camlens.methods.linear_suffix import LinearSuffix, NoShortcut
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.models.deeplab import DictOutputSegmenter
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _bn(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    nn.init.uniform_(norm.weight, -2, 2)
    nn.init.uniform_(norm.bias, -1, 1)
    return norm.eval()


def _expected(module: nn.Module, activation: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """``module(A) − module(A with channel k zeroed)`` for each ``k``, computed directly."""
    with torch.no_grad():
        base = module(activation)
        rows = []
        for k in channels:
            ablated = activation.clone()
            ablated[:, k] = 0
            rows.append(base[0] - module(ablated)[0])
    return torch.stack(rows)


MODULES = {
    "conv 3x3 strided dilated, bias": lambda: nn.Conv2d(6, 5, 3, stride=2, padding=2, dilation=2),
    "conv 'same' padding": lambda: nn.Conv2d(6, 4, 5, padding="same", bias=False),
    "depthwise": lambda: nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),
    "depthwise, multiplier 2": lambda: nn.Conv2d(6, 12, 3, padding=1, groups=6),
    "grouped (3 groups)": lambda: nn.Conv2d(6, 9, 1, groups=3),
    "batch norm (eval)": lambda: _bn(6),
    "average pooling": lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    "adaptive average pooling": lambda: nn.AdaptiveAvgPool2d(1),
    "dropout (eval)": lambda: nn.Dropout(0.5).eval(),
    "identity": nn.Identity,
    "depthwise → pointwise → BN": lambda: nn.Sequential(
        nn.Conv2d(6, 6, 3, padding=3, dilation=3, groups=6, bias=False),
        nn.Conv2d(6, 5, 1),
        _bn(5),
    ),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_difference_through_a_module_is_the_modules_own(name: str) -> None:
    torch.manual_seed(0)
    module = MODULES[name]().double().eval()
    activation = torch.randn(1, 6, 9, 11, dtype=torch.float64)
    channels = [0, 3, 5, 3]
    delta: Delta | None = Delta(
        activation[0, channels].unsqueeze(1), torch.tensor(channels), channels=6
    )
    parts = module if isinstance(module, nn.Sequential) else [module]
    for part in parts:
        assert delta is not None
        delta = through(part, delta)
    assert delta is not None
    assert_close(delta.full(), _expected(module, activation, channels), **TIGHT)


def test_one_dimensional_and_three_dimensional_convolutions() -> None:
    torch.manual_seed(1)
    for module, shape in (
        (nn.Conv1d(4, 3, 5, padding=2), (1, 4, 17)),
        (nn.Conv3d(4, 3, 3, padding=1, groups=1), (1, 4, 5, 6, 7)),
    ):
        module = module.double()
        activation = torch.randn(*shape, dtype=torch.float64)
        delta = through(module, Delta(activation[0, [1, 2]].unsqueeze(1), torch.tensor([1, 2]), 4))
        assert delta is not None
        assert_close(delta.full(), _expected(module, activation, [1, 2]), **TIGHT)


@pytest.mark.parametrize(
    ("module", "why"),
    [
        (nn.ReLU(), "not linear"),
        (nn.MaxPool2d(2), "not linear"),
        (nn.BatchNorm2d(6).train(), "batch statistics"),
        (nn.BatchNorm2d(6, track_running_stats=False).eval(), "batch statistics"),
        (nn.Dropout(0.5).train(), "random"),
        (nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect"), "padding mode"),
        (nn.Linear(6, 6), "not a channel layout"),
    ],
)
def test_modules_the_difference_does_not_pass(module: nn.Module, why: str) -> None:
    delta = Delta(torch.randn(2, 1, 5, 5), torch.tensor([0, 4]), channels=6)
    assert through(module, delta) is None, why


def test_a_dense_difference_stops_before_a_convolution() -> None:
    dense = Delta(torch.randn(2, 6, 5, 5), torch.zeros(2, dtype=torch.long), channels=6)
    assert through(nn.Conv2d(6, 3, 1), dense) is None
    assert through(_bn(6), dense) is not None  # element-wise: still cheap


def _find(model: nn.Module, layer: str, x: torch.Tensor) -> LinearSuffix:
    with torch.inference_mode():
        return LinearSuffix.find(model, lambda: model(x), model.get_submodule(layer))


def test_deeplab_chains_are_the_aspp_branches() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    suffix = _find(model, "encoder.layer4", torch.randn(1, 3, 32, 32))
    prefix = "decoder.aspp.0.convs"
    assert [chain.names for chain in suffix.chains] == [
        (f"{prefix}.0.0", f"{prefix}.0.1"),
        *[(f"{prefix}.{i}.0.0", f"{prefix}.{i}.0.1", f"{prefix}.{i}.1") for i in (1, 2, 3)],
        (f"{prefix}.4.0", f"{prefix}.4.1", f"{prefix}.4.2"),
    ]
    assert suffix.chains[-1].shape[2:] == (1, 1)  # the pooling branch ends before upsampling
    for hook_dict in (m._forward_hooks for m in model.modules()):
        assert not hook_dict  # discovery leaves no hook behind


class Reads(nn.Module):
    """``features`` → a 1x1 conv, plus whatever ``extra`` does with the features."""

    def __init__(self, extra: str) -> None:
        super().__init__()
        self.extra = extra
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 4, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 + 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        z = self.head(a)
        if self.extra == "functional":
            z = z + a[:, :4] * 0.5  # a functional read of the layer's output
        elif self.extra == "module":
            z = z + self.act(a)[:, :4]
        pooled = z.mean((2, 3))
        # A batch-1 skip from the input: the expanded batch cannot serve this model.
        return self.fc(torch.cat([pooled, x.mean((2, 3))], 1))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("functional", "also read by __getitem__ outside a module"),
        ("module", r"act \(ReLU\) reads the layer.s output"),
    ],
)
def test_anything_else_reading_the_output_refuses(extra: str, message: str) -> None:
    torch.manual_seed(0)
    model = Reads(extra).eval()
    with pytest.raises(NoShortcut, match=message):
        _find(model, "features", torch.randn(1, 3, 8, 8))


def test_functional_reads_of_shape_only_are_fine() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()  # ASPP pooling reads x.shape[-2:]
    assert len(_find(model, "encoder.layer4", torch.randn(1, 3, 32, 32)).chains) == 5


def _explain(model, layer, x, targets, **options):
    return camlens.Explainer(model, layer, method="ablationcam", options=options).explain(
        x, targets
    )


@pytest.mark.parametrize("extra", ["none", "functional", "module"])
def test_ablation_uses_the_shortcut_only_where_exact(extra: str, caplog) -> None:
    torch.manual_seed(0)
    model = Reads(extra).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(2)]
    with caplog.at_level(logging.INFO, logger="camlens"):
        auto = _explain(model, "features", x, targets)
    full = _explain(model, "features", x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)
    shortcut_failed = "the linear modules after the layer run once did not work" in caplog.text
    assert shortcut_failed == (extra != "none")


def test_ablation_on_deeplab_matches_full_reruns(caplog) -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    targets = [SemanticSegmentationTarget(1, torch.ones(32, 32)) for _ in range(2)]
    with caplog.at_level(logging.DEBUG, logger="camlens"):
        auto = _explain(model, "encoder.layer4", x, targets, batch_size=3)
    assert "linear chains decoder.aspp.0.convs.0.0" in caplog.text
    assert "did not work" not in caplog.text
    full = _explain(model, "encoder.layer4", x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)


def test_a_wrong_shortcut_is_caught_by_the_exact_check(caplog) -> None:
    """If the differences were wrong (here: scaled), the exact re-run of the first chunk's
    first ablations disagrees and the vectorised re-run without the shortcut takes over."""
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    targets = [SemanticSegmentationTarget(1, torch.ones(32, 32))]
    original = LinearSuffix.deltas

    def wrong(self, *args, **kwargs):
        return original(self, *args, **kwargs) * 1.5

    with (
        mock.patch.object(LinearSuffix, "deltas", wrong),
        caplog.at_level(logging.INFO, logger="camlens"),
    ):
        auto = _explain(model, "encoder.layer4", x, targets)
    assert "differ from the exact" in caplog.text
    assert "using torch.vmap over the ablations" in caplog.text
    full = _explain(model, "encoder.layer4", x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)


def test_the_model_comes_back_unchanged() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).double().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    targets = [SemanticSegmentationTarget(1, torch.ones(32, 32))]
    _explain(model, "encoder.layer4", x, targets)
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_global_module_hooks_turn_the_shortcut_off() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, output: None)
    try:
        with pytest.raises(NoShortcut, match="global module hooks"):
            _find(model, "encoder.layer4", torch.randn(1, 3, 32, 32))
    finally:
        handle.remove()
    assert len(_find(model, "encoder.layer4", torch.randn(1, 3, 32, 32)).chains) == 5


def test_a_module_with_its_own_hook_is_not_trusted() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    conv = model.decoder.aspp[0].convs[0][0]
    handle = conv.register_forward_hook(lambda module, args, output: output * 2)
    try:
        with pytest.raises(NoShortcut, match=r"convs\.0\.0 \(Conv2d\).*without hooks"):
            _find(model, "encoder.layer4", torch.randn(1, 3, 32, 32))
    finally:
        handle.remove()


def test_modules_no_ablation_changes_are_memoised() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    suffix = _find(model, "encoder.layer4", torch.randn(1, 3, 32, 32))
    chains = tuple(module for chain in suffix.chains for module in chain.modules)
    assert suffix.memoisable == (model.encoder, model.decoder.block1, *chains)


def test_memoised_forward_is_put_back_even_after_an_error() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    suffix = _find(model, "encoder.layer4", torch.randn(1, 3, 32, 32))

    def own_forward(x):  # a user's instance-level forward stays theirs
        return type(model.decoder.block1).forward(model.decoder.block1, x)

    model.decoder.block1.forward = own_forward
    memo: dict = {}
    with pytest.raises(RuntimeError, match="boom"), suffix.memoised(memo):
        model(torch.randn(1, 3, 32, 32))
        assert set(memo) == set(suffix.memoisable)
        raise RuntimeError("boom")
    assert "forward" not in model.encoder.__dict__
    assert model.decoder.block1.__dict__["forward"] is own_forward


def test_later_chunks_reuse_the_encoder(caplog) -> None:
    """With three ablations per chunk, the encoder runs a fixed number of times per image
    (capture, the failed expanded batch, discovery, the first chunk, the exact check), not
    once per chunk; the maps equal whole-model re-runs."""
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    targets = [SemanticSegmentationTarget(1, torch.ones(32, 32)) for _ in range(2)]
    runs = []
    handle = model.encoder.layer1.register_forward_pre_hook(lambda m, a: runs.append(1))
    try:
        auto = _explain(model, "encoder.layer4", x, targets, batch_size=3)
    finally:
        handle.remove()
    chunks_per_image = -(-model.encoder.layer4[-1].conv2.out_channels // 3)
    assert chunks_per_image >= 10
    assert len(runs) <= 8
    full = _explain(model, "encoder.layer4", x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)


def test_a_wrong_replay_is_caught_by_a_control_copy(caplog) -> None:
    """The first chunk that reuses memoised outputs carries an unablated copy; were the
    reused outputs wrong (here: scaled), its score disagrees and the vectorised re-run
    without the shortcut takes over."""
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    targets = [SemanticSegmentationTarget(1, torch.ones(32, 32))]
    original = LinearSuffix.memoised

    @contextmanager
    def corrupted(self, memo):
        for key, value in list(memo.items()):
            memo[key] = [v * 1.01 for v in value] if isinstance(value, list) else value * 1.01
        with original(self, memo):
            yield

    with (
        mock.patch.object(LinearSuffix, "memoised", corrupted),
        caplog.at_level(logging.INFO, logger="camlens"),
    ):
        auto = _explain(model, "encoder.layer4", x, targets, batch_size=3)
    assert "an unablated copy scored" in caplog.text
    assert "using torch.vmap over the ablations" in caplog.text
    full = _explain(model, "encoder.layer4", x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("classifier", "an expanded batch after the layer first (no convolution reads"),
        ("fcn", "linear chains classifier.0 → classifier.1"),
    ],
)
def test_which_way_goes_first(case: str, expected: str, caplog) -> None:
    """A convolution reading the layer (torchvision's FCN head) takes the shortcut; where
    only pooling does (a classifier), the expanded batch — pytorch-grad-cam's arithmetic —
    goes first."""
    torch.manual_seed(0)
    if case == "classifier":
        model, layer = tiny_resnet(num_classes=4).double().eval(), "layer4"
        targets = [ClassifierOutputTarget(1)]
    else:
        model, layer = DictOutputSegmenter(num_classes=3).double().eval(), "backbone.layer4"
        targets = [SemanticSegmentationTarget(1, torch.ones(32, 32))]
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with caplog.at_level(logging.DEBUG, logger="camlens"):
        auto = _explain(model, layer, x, targets, batch_size=5)
    assert expected in caplog.text
    assert "did not work" not in caplog.text
    full = _explain(model, layer, x, targets, rerun="full")
    assert_close(auto.layer_maps[0], full.layer_maps[0], **TIGHT)
