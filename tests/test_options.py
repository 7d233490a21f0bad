"""Method options: declared on the Method record, checked in one place (OptionError), taken
flat for one method or nested by method, refused flat for several methods, given on the
command line as --option, listed by `camlens methods`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close

import camlens
from camlens.cli import main
from camlens.engine import plan_methods
from camlens.errors import OptionError
from camlens.methods import available_methods, get_method
from camlens.models import tiny_deeplabv3plus, tiny_resnet


def test_every_registered_option_has_a_checked_default() -> None:
    """Each declared default passes its own check, and help says something."""
    for name in available_methods():
        method = get_method(name)
        assert method.check_options(None) == {o.name: o.default for o in method.options}
        for option in method.options:
            assert option.check(option.default, method.label) == option.default
            assert option.help


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [
        ("segxrescam", {"pool_sise": 2}, r"unknown option.*did you mean 'pool_size'"),
        ("segxrescam", {"pool_size": 0}, r"pool_size.*≥ 1"),
        ("segxrescam", {"pool_size": 2.5}, r"pool_size.*an integer"),
        ("segxrescam", {"pool_size": True}, r"pool_size.*an integer"),
        ("scorecam", {"memory_budget_mb": 0}, r"memory_budget_mb.*> 0"),
        ("scorecam", {"progress": "yes"}, r"progress.*true or false"),
        ("ablationcam", {"ratio": 1.5}, r"ratio.*≤ 1"),
        ("ablationcam", {"rerun": "never"}, r"rerun.*one of \['auto', 'full'\]"),
        ("gradcam", {"pool_size": 2}, r"Grad-CAM takes no options"),
        ("gradcam++", {"pool_size": 2}, r"takes no options"),
    ],
)
def test_bad_options_are_refused_up_front_with_one_error_type(
    method: str, options: dict, match: str
) -> None:
    """Contribution methods and runners alike: OptionError (a TypeError and a ValueError)
    at construction, before the model runs."""
    model = tiny_resnet(num_classes=3)
    with pytest.raises(OptionError, match=match) as caught:
        camlens.Explainer(model, "layer4", method, options=options)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_an_int_is_a_float_and_none_only_where_nullable() -> None:
    method = get_method("scorecam")
    assert method.check_options({"memory_budget_mb": 64})["memory_budget_mb"] == 64
    assert method.check_options({"batch_size": None})["batch_size"] is None
    with pytest.raises(OptionError, match="memory_budget_mb"):
        method.check_options({"memory_budget_mb": None})


def test_flat_options_with_several_methods_are_an_error_naming_the_fix() -> None:
    with pytest.raises(OptionError, match=r"nesting them, e.g. options=\{'segxrescam'"):
        plan_methods(["segxrescam", "gradcam"], {"pool_size": 4})
    with pytest.raises(OptionError, match="not among the requested methods"):
        plan_methods(["gradcam"], {"scorecam": {"batch_size": 2}})
    with pytest.raises(OptionError, match="mixes per-method entries"):
        plan_methods(["segxrescam", "scorecam"], {"segxrescam": {"pool_size": 4}, "top_k": 2})
    calls = plan_methods(["Seg-XRes-CAM", "gradcam"], {"SegXResCAM": {"pool_size": 4}})
    assert calls[0].options == {"pool_size": 4} and calls[1].options == {}


def test_flat_and_nested_options_give_the_same_segmentation() -> None:
    """One method: flat and nested options mean the same; the option reaches the method."""
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    kwargs = {"classes": "all", "layers": "encoder.layer2"}
    flat = camlens.explain_segmentation(
        model, x, methods="segxrescam", options={"pool_size": 1}, **kwargs
    )
    nested = camlens.explain_segmentation(
        model, x, methods=["segxrescam"], options={"segxrescam": {"pool_size": 1}}, **kwargs
    )
    hires = camlens.explain_segmentation(model, x, methods="hirescam", **kwargs)
    assert_close(flat.layer_maps["segxrescam"][0], nested.layer_maps["segxrescam"][0])
    assert_close(flat.layer_maps["segxrescam"][0], hires.layer_maps["hirescam"][0])  # pool 1
    default = camlens.explain_segmentation(model, x, methods="segxrescam", **kwargs)
    assert not torch.equal(default.layer_maps["segxrescam"][0], hires.layer_maps["hirescam"][0])


def test_old_keyword_spellings_warn_and_still_work() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(DeprecationWarning, match="`input_tensor=` is deprecated; call it `inputs=`"):
        old = camlens.explain(model, input_tensor=x, method="hirescam", layers="layer4", targets=1)
    new = camlens.explain(model, x, method="hirescam", layers="layer4", targets=1)
    assert torch.equal(old.layer_maps[0], new.layer_maps[0])
    with pytest.warns(DeprecationWarning, match="method_options"):
        camlens.explain(model, x, "segxrescam", "layer4", 1, method_options={"pool_size": 1})
    with pytest.raises(TypeError, match="both `input_tensor` and `inputs`"):
        camlens.explain(model, inputs=x, input_tensor=x)
    with pytest.warns(DeprecationWarning, match=r"use camlens.Explainer") as caught:
        camlens.BaseCAM(model, "layer4", method="gradcam")
    assert caught[0].filename == __file__  # points at the caller's line


def test_familiar_class_options_and_batch_size_setter() -> None:
    model = tiny_resnet(num_classes=3)
    cam = camlens.ScoreCAM(model, ["layer4"], batch_size=8)
    assert cam.options["batch_size"] == 8
    cam.batch_size = 4
    assert cam.batch_size == 4
    with pytest.raises(OptionError, match="batch_size"):
        cam.batch_size = 0
    assert cam.batch_size == 4  # a refused value changes nothing
    assert camlens.SegXResCAM(model, ["layer4"], pool_size=3).options == {"pool_size": 3}


MODEL_FILE = """
import torch
from camlens.models import tiny_deeplabv3plus

def seg():
    torch.manual_seed(0)
    return tiny_deeplabv3plus(num_classes=3)
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "mymodel.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _explain(*extra: str) -> list[str]:
    return ["explain", "a.png", "--model", "mymodel.py:seg", "--layer", "encoder.layer2",
            "--class", "1", "--quiet", *extra]  # fmt: skip


def test_cli_option_reaches_the_method(workspace: Path) -> None:
    """--option pool_size=1 makes Seg-XRes-CAM equal HiResCAM; METHOD.NAME targets one."""
    method = ["--method", "segxrescam,hirescam"]
    assert main(_explain(*method, "--option", "pool_size=1", "--out", "one")) == 0
    assert main(_explain(*method, "--option", "segxrescam.pool_size=4", "--out", "four")) == 0
    one = np.load(workspace / "one" / "raw" / "a.npz")
    four = np.load(workspace / "four" / "raw" / "a.npz")
    assert np.array_equal(one["segxrescam_layer0"], one["hirescam_layer0"])
    assert not np.array_equal(four["segxrescam_layer0"], four["hirescam_layer0"])
    summary = json.loads((workspace / "one" / "summary.json").read_text())
    assert summary["images"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--option", "pool_size=0"], "pool_size"),
        (["--option", "pool_size"], "NAME=VALUE"),
        (["--option", "batch_size=4"], "not an option of segxrescam"),
        (["--option", "scorecam.top_k=2"], "which --method does not list"),
        (["--option", "pool_sise=2"], "not an option"),
    ],
)
def test_cli_bad_options_exit_2_before_any_output(
    workspace: Path, capsys, extra: list[str], message: str
) -> None:
    assert main(_explain("--method", "segxrescam", *extra, "--out", "out")) == 2
    assert message in capsys.readouterr().err
    assert not (workspace / "out" / "raw").exists()


def test_methods_lists_every_method_with_its_options(capsys) -> None:
    """In registration order: the gradient family first, CAM and Eigen, then the re-runs."""
    order = available_methods()
    assert order[:2] == ["gradcam", "hirescam"]
    assert order.index("eigencam") < order.index("scorecam") < order.index("fullgrad")
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    for name in available_methods():
        method = get_method(name)
        assert name in listing and method.reference in listing
        for option in method.options:
            assert f"--option {option.name}:" in listing


@pytest.mark.parametrize("name", ["GradCAM", "ScoreCAM", "AblationCAM", "SegXResCAM"])
def test_use_cuda_warning_points_at_the_callers_line(name: str) -> None:
    """Before: ScoreCAM / AblationCAM / SegXResCAM warned from camlens's own file (a
    stacklevel one frame short)."""
    model = tiny_resnet(num_classes=3)
    with pytest.warns(FutureWarning, match="use_cuda") as caught:
        getattr(camlens, name)(model, ["layer4"], use_cuda=True)
    assert caught[0].filename == __file__


def test_random_cam_familiar_class_is_seeded() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3).eval()
    x = torch.randn(1, 3, 128, 128)  # a 4 × 4 grid at layer4
    first = camlens.RandomCAM(model, ["layer4"])(x, [1])
    assert first.max() > 0.99 and first.min() == 0
    assert np.array_equal(first, camlens.RandomCAM(model, ["layer4"])(x, [2]))  # seed 0
    assert not np.array_equal(first, camlens.RandomCAM(model, ["layer4"], seed=5)(x, [1]))
