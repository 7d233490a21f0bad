"""pytorch-grad-cam's metric classes (camlens.metrics.familiar) against upstream's numbers.

Reference numbers were produced with pytorch-grad-cam 1.5.7 in ``bench/.env-gradcam``
(torch 2.13 CPU): the model, input, maps and stub CAM below copied into a script that ran
upstream's classes with ``pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget(1)`` and
``(2)`` and printed the results. ROAD numbers marked "noise off" were produced with
``pytorch_grad_cam.metrics.road.NoisyLinearImputer.__init__.__defaults__ = (0.0, weights)``
(upstream's noise comes from torch's global generator and cannot be reproduced); with noise
on, three seeds gave ROADCombined ``[-0.0137, 0.0095]``, ``[-0.0136, 0.0085]``, ``[-0.0131,
0.0093]`` (default percentiles).
"""

import numpy as np
import pytest
import torch
from torch import nn

from camlens.metrics import (
    ARCC,
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
    ROADCombined,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
    road,
)
from camlens.metrics.familiar import removed_share
from camlens.targets import ClassifierOutputTarget


def make_model() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            values = torch.arange(p.numel(), dtype=torch.float32) * (0.7 + 0.3 * i)
            p.copy_(torch.sin(values).view_as(p) * 0.5)
    return model.eval()


def make_data() -> tuple[torch.Tensor, np.ndarray]:
    x = torch.cos(torch.arange(2 * 3 * 12 * 12, dtype=torch.float32) * 0.37).view(2, 3, 12, 12)
    angles = torch.arange(2 * 12 * 12, dtype=torch.float32) * 1.3 + 0.1
    cams = ((torch.sin(angles) + 1) / 2).view(2, 12, 12)
    return x, cams.numpy()


def stub_cam(input_tensor, targets):
    m = input_tensor.detach().abs().mean(1)
    m = m - m.amin((1, 2), keepdim=True)
    return (m / m.amax((1, 2), keepdim=True)).numpy()


@pytest.fixture
def setup():
    model = make_model()
    x, cams = make_data()
    return x, cams, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)], model


def test_cam_mult_image_family_equals_upstream(setup):
    x, cams, targets, model = setup
    change = CamMultImageConfidenceChange()(x, cams, targets, model)
    assert change.dtype == np.float32 and change.shape == (2,)
    np.testing.assert_allclose(change, [-0.08282119, 0.23684093], atol=1e-5)
    after = CamMultImageConfidenceChange()(x, cams, targets, model, return_diff=False)
    np.testing.assert_allclose(after, [0.6926996, -0.49753627], atol=1e-5)
    np.testing.assert_allclose(
        DropInConfidence()(x, cams, targets, model), [0.08282119, 0], atol=1e-5
    )
    np.testing.assert_array_equal(IncreaseInConfidence()(x, cams, targets, model), [0.0, 1.0])


def test_cam_mult_image_visualization(setup):
    x, cams, targets, model = setup
    scores, images = CamMultImageConfidenceChange()(
        x, cams, targets, model, return_visualization=True
    )
    torch.testing.assert_close(images, x * torch.from_numpy(cams)[:, None])
    drop, _ = DropInConfidence()(x, cams, targets, model, return_visualization=True)
    np.testing.assert_allclose(drop, np.maximum(-scores, 0))


def test_removed_share_matches_numpy_percentile():
    cam = np.random.default_rng(0).random(144)
    for p in (10, 20, 37, 50, 80, 90, 100):
        removed = int((cam >= np.percentile(cam, p)).sum())  # upstream's MoRF removes these
        assert round(removed_share(p, 144) * 144 / 100) == removed
    with pytest.raises(ValueError, match="auto"):
        removed_share("auto", 144)


def test_road_without_noise_equals_upstream_without_noise(setup):
    """Noise off on both sides: the same pixels are removed and the same linear system is
    solved, so the numbers agree to the solver's tolerance."""
    x, cams, targets, model = setup
    quiet = {"noise_std": 0.0}
    tol = {"atol": 2e-5}
    np.testing.assert_allclose(
        ROADMostRelevantFirst(**quiet)(x, cams, targets, model), [-0.023237824, 0.058589876], **tol
    )
    np.testing.assert_allclose(
        ROADLeastRelevantFirst(**quiet)(x, cams, targets, model), [-0.08449894, 0.3006907], **tol
    )
    np.testing.assert_allclose(
        ROADMostRelevantFirst(37, **quiet)(x, cams, targets, model, return_diff=False),
        [0.7258251, -0.49128816],
        **tol,
    )
    np.testing.assert_allclose(
        ROADMostRelevantFirstAverage(**quiet)(x, cams, targets, model),
        [-0.038561158, 0.18821448],
        **tol,
    )
    np.testing.assert_allclose(
        ROADLeastRelevantFirstAverage(**quiet)(x, cams, targets, model),
        [-0.06536751, 0.20567769],
        **tol,
    )
    np.testing.assert_allclose(
        ROADCombined([15, 50, 85], **quiet)(x, cams, targets, model),
        [-0.028849918, -0.00505843],
        **tol,
    )


def test_road_with_noise_is_close_to_upstream_and_seeded(setup):
    x, cams, targets, model = setup
    combined = ROADCombined()(x, cams, targets, model)
    # Upstream with noise, three seeds: [-0.0137..-0.0131, 0.0085..0.0095].
    np.testing.assert_allclose(combined, [-0.0135, 0.0091], atol=3e-3)
    np.testing.assert_array_equal(combined, ROADCombined()(x, cams, targets, model))
    assert not np.array_equal(combined, ROADCombined(seed=1)(x, cams, targets, model))


def test_road_combined_is_half_the_gap_of_camlens_road(setup):
    x, cams, targets, model = setup
    percentiles = [10, 35, 60, 90]
    morf = ROADMostRelevantFirstAverage(percentiles)(x, cams, targets, model)
    lerf = ROADLeastRelevantFirstAverage(percentiles)(x, cams, targets, model)
    combined = ROADCombined(percentiles)(x, cams, targets, model)
    np.testing.assert_allclose(combined, (lerf - morf) / 2, atol=1e-6)
    shares = [removed_share(p, 144) for p in percentiles]
    own = road(
        model, x, torch.from_numpy(cams), targets, percentiles=shares, score="raw", tolerance=1e-6
    )
    np.testing.assert_allclose(combined, own.gap.numpy() / 2, atol=1e-6)
    np.testing.assert_allclose(morf, -own.morf_drop.numpy(), atol=1e-6)


def test_road_visualization_is_what_was_scored(setup):
    x, cams, targets, model = setup
    for cls in (ROADMostRelevantFirst, ROADLeastRelevantFirst):
        after, images = cls(70)(
            x, cams, targets, model, return_visualization=True, return_diff=False
        )
        with torch.no_grad():
            rescored = [t(o) for t, o in zip(targets, model(images), strict=True)]
        np.testing.assert_allclose(after, torch.stack(rescored).numpy(), atol=1e-5)
    _, images = ROADMostRelevantFirst(70)(x, cams, targets, model, return_visualization=True)
    kept = torch.from_numpy(cams[0] < np.percentile(cams[0], 70))  # upstream's kept pixels
    torch.testing.assert_close(images[0][:, kept], x[0][:, kept], rtol=0, atol=0)
    assert not torch.equal(images[0][:, ~kept], x[0][:, ~kept])


class Patch(nn.Module):
    """Class 0's logit is the mean of the top-left 4 × 4 patch; class 1's its negative."""

    def forward(self, x):
        patch = x[:, :, :4, :4].mean((1, 2, 3))
        return torch.stack([patch, -patch], 1)


def test_road_on_a_clear_model_prefers_the_map_on_the_evidence():
    x = torch.ones(1, 3, 12, 12) + 0.1 * torch.sin(torch.arange(432.0)).view(1, 3, 12, 12)
    x[:, :, :4, :4] += 4
    good = torch.zeros(1, 12, 12)
    good[:, :4, :4] = 1
    good += 0.01 * torch.cos(torch.arange(144.0)).view(1, 12, 12)  # no ties
    bad = 1 - good
    model, targets = Patch(), [ClassifierOutputTarget(0)]
    morf = ROADMostRelevantFirst(80)(x, good, targets, model)
    lerf = ROADLeastRelevantFirst(80)(x, good, targets, model)
    assert morf[0] < lerf[0] <= 0
    assert (
        ROADCombined()(x, good, targets, model)[0] > 0 > ROADCombined()(x, bad, targets, model)[0]
    )


def test_arcc_equals_upstream_without_noise(setup):
    x, cams, targets, model = setup
    cams = cams.copy()
    cams[0] = 1 - cams[0]  # image 0: ROAD > 0; image 1: ROAD clipped to 0, ARCC ≈ 3e-8
    arcc = ARCC(stub_cam, noise_std=0.0)(x, cams, targets, model)
    np.testing.assert_allclose(arcc, [1.4280228e-01, 3e-8], rtol=2e-3, atol=1e-9)
