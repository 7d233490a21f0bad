"""The dataset audit: a class whose evidence sits in one fixed place off the class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camlens import GradCAM, HiResCAM
from camlens.demo.models import load_demo_model
from camlens.demo.synthetic import make_shortcut_dataset
from camlens.demo.train import normalise
from camlens.metrics import audit_dataset

SIZE = 16


class PixelVote(nn.Module):
    """logits = channels 0 and 1 of pixel (0, 0): the test decides each prediction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2, 0, 0]


def objects(count: int, fixed: tuple[int, int] | None = None) -> torch.Tensor:
    """``(count, H, W)`` masks of a 4 × 4 object, at a different place in every image (a
    4 × 4 grid of places) unless ``fixed``."""
    masks = torch.zeros(count, SIZE, SIZE, dtype=torch.bool)
    for index in range(count):
        y, x = fixed if fixed is not None else (4 * (index // 4 % 4), 4 * (index % 4))
        masks[index, y : y + 4, x : x + 4] = True
    return masks


def images_of_class(count: int, label: int) -> torch.Tensor:
    images = torch.zeros(count, 3, SIZE, SIZE)
    images[:, label, 0, 0] = 1.0  # PixelVote predicts `label`
    return images


def corner_explainer(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    maps = torch.zeros(len(inputs), SIZE, SIZE)
    maps[:, 13:15, 13:15] = 1.0  # the same bottom-right corner, whatever the image
    return maps


def test_fixed_corner_evidence_off_the_objects_is_flagged() -> None:
    masks = objects(16)
    audit = audit_dataset(
        PixelVote(), [(images_of_class(16, 1), masks)], corner_explainer, class_names=["a", "b"]
    )
    assert list(audit.classes) == [1] and audit.flagged == [1]
    found = audit.classes[1]
    assert (found.count, found.explained, found.masked) == (16, 16, 16)
    assert found.peak == (13, 13)
    assert found.concentration == pytest.approx(1.0)
    assert found.consistency == pytest.approx(1.0)
    assert found.rule == "masks"
    assert found.overlap is not None and found.mass_in_masks is not None
    # the corner 4 × 4 place of the grid (12..15, 12..15) holds the object in 1 of 16 images
    assert found.overlap == pytest.approx(1 / 16)
    assert found.mass_in_masks == pytest.approx(1 / 16)
    assert float(found.mean_map.sum()) == pytest.approx(1.0)
    assert int(found.region.sum()) == round(0.1 * SIZE * SIZE)
    assert found.reason.startswith("b: SHORTCUT SUSPECTED")
    # without masks the border rule stands in, and says so
    blind = audit_dataset(PixelVote(), [images_of_class(16, 1)], corner_explainer)
    assert blind.flagged == [1] and blind.classes[1].rule == "border"
    assert "no masks" in blind.classes[1].reason


def test_evidence_that_follows_the_object_is_not_flagged() -> None:
    masks = objects(16)

    def on_object(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return masks.float()

    audit = audit_dataset(PixelVote(), [(images_of_class(16, 0), masks)], on_object)
    found = audit.classes[0]
    assert not found.flagged
    assert found.mass_in_masks == pytest.approx(1.0)
    assert found.consistency < 0.2  # the peaks scatter over the 16 places
    assert "images disagree" in found.reason


def test_a_class_that_always_sits_in_one_place_is_not_flagged_with_masks() -> None:
    masks = objects(16, fixed=(12, 12))  # the object really is in the corner every time

    def on_object(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return masks.float()

    audit = audit_dataset(PixelVote(), [(images_of_class(16, 0), masks)], on_object)
    assert audit.flagged == []
    assert audit.classes[0].overlap == pytest.approx(16 / 26)  # region: 26 px, 16 on it
    assert "where the class is" in audit.classes[0].reason
    # without masks the border rule cannot tell it from a shortcut: flagged (documented)
    blind = audit_dataset(PixelVote(), [images_of_class(16, 0)], on_object)
    assert blind.flagged == [0]


def test_batches_are_accumulated_and_small_classes_are_not_judged() -> None:
    images = torch.cat([images_of_class(12, 1), images_of_class(3, 0)])
    batches = [images[:5], images[5:11], images[11:]]
    audit = audit_dataset(PixelVote(), batches, corner_explainer)
    assert audit.classes[1].count == 12 and audit.classes[0].count == 3
    assert audit.flagged == [1]
    assert "not judged" in audit.classes[0].reason


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one size"):
        audit_dataset(
            PixelVote(),
            [images_of_class(2, 0), torch.zeros(2, 3, 8, 8)],
            corner_explainer,
        )
    with pytest.raises(ValueError, match="no images"):
        audit_dataset(PixelVote(), [], corner_explainer)
    with pytest.raises(TypeError, match="explain"):
        audit_dataset(PixelVote(), [images_of_class(2, 0)], "hirescam")


@pytest.fixture(scope="module")
def shortcut_data() -> dict:
    data = make_shortcut_dataset(7, 48, 96, leak=True)
    return {"inputs": normalise(data["images"]), "lesions": torch.as_tensor(data["lesion_masks"])}


@pytest.mark.parametrize("with_masks", [True, False], ids=["masks", "no-masks"])
@pytest.mark.parametrize("explainer", [HiResCAM, GradCAM], ids=["hirescam", "gradcam"])
def test_the_leaky_model_is_flagged_and_the_control_is_not(
    shortcut_data, with_masks, explainer
) -> None:
    inputs, lesions = shortcut_data["inputs"], shortcut_data["lesions"]
    batches = [
        (inputs[i : i + 16], lesions[i : i + 16] if with_masks else None) for i in range(0, 48, 16)
    ]
    audits = {}
    for name in ("shortcut_leaky", "shortcut_control"):
        model = load_demo_model(name)
        audits[name] = audit_dataset(
            model, batches, explainer(model, "layer2"), class_names=["normal", "lesion"]
        )
    leaky, control = audits["shortcut_leaky"], audits["shortcut_control"]
    assert 1 in leaky.flagged, leaky.summary()
    assert control.flagged == [], control.summary()
    lesion = leaky.classes[1]
    assert lesion.rule == ("masks" if with_masks else "border")
    assert lesion.consistency == pytest.approx(1.0)
    assert lesion.peak[0] < 24 and lesion.peak[1] < 24  # the top-left marker corner
    if with_masks:
        assert lesion.overlap is not None and lesion.overlap < 0.05
        assert control.classes[1].mass_in_masks > lesion.mass_in_masks
    assert control.classes[1].consistency < 0.5
