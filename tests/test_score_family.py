"""SS-CAM and IS-CAM (the Score-CAM variants of ``methods/score_family.py``) against numbers
worked out by hand on the float64 weighted-sum head of ``test_methods_values``.

With ``y = Σ G ⊙ A + b`` and the activations equal to the input, the input masked by
``c · H_k`` scores ``c · L_k + b``, where ``L_k = Σ (G ⊙ A) ⊙ H_k``; ``L_0 = 4 / (4 + 1e-8)``
and ``L_1 = 11 / (3 + 1e-8)`` (see ``test_scorecam_by_hand``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import OptionError
from tests.test_methods_values import A0, A1, BIAS, EXACT, _hand_model, _raw, tensor

L0 = 4 / (4 + 1e-8)
L1 = 11 / (3 + 1e-8)
GA = [[-1.0, -3.0, 3.0], [-2.0, 1.0, 4.0]]  # G ⊙ A summed over the two channels


def _map_from_scores(s0: float, s1: float) -> torch.Tensor:
    w0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
    return w0 * tensor([A0]) + (1 - w0) * tensor([A1])


@pytest.mark.parametrize(
    ("path", "mean_coefficient"),
    [("linear", 5 / 8), ("cumulative", 30 / 24)],  # N = 4: mean of i/N; of i(i+1)/(2N)
)
def test_iscam_by_hand(path: str, mean_coefficient: float) -> None:
    """IS-CAM: s_k = 1/N Σ_i f(X ⊙ c_i H_k) = mean(c)·L_k + b for a linear head."""
    model, x = _hand_model()
    expected = _map_from_scores(mean_coefficient * L0 + BIAS, mean_coefficient * L1 + BIAS)
    got = _raw(model, x, "iscam", steps=4, path=path)
    assert_close(got, expected, **EXACT)
    assert_close(_raw(model, x, "iscam", steps=4, path=path, batch_size=3), got, **EXACT)


def test_iscam_default_is_the_papers_cumulative_path_with_ten_steps() -> None:
    model, x = _hand_model()
    expected = _map_from_scores(2.2 * L0 + BIAS, 2.2 * L1 + BIAS)  # (11 · 12) / (6 · 10)
    assert_close(_raw(model, x, "iscam"), expected, **EXACT)


def test_sscam_without_noise_is_scorecam() -> None:
    model, x = _hand_model()
    scorecam = _raw(model, x, "scorecam")
    assert torch.equal(_raw(model, x, "sscam", samples=1, noise_std=0.0), scorecam)
    assert_close(_raw(model, x, "sscam", samples=5, noise_std=0), scorecam, **EXACT)


def test_sscam_by_hand_with_the_documented_noise() -> None:
    """SS-CAM: s_k = 1/N Σ_i f(X ⊙ (H_k + δ_i)) = L_k + b + Σ (G ⊙ A) ⊙ mean_i δ_i, with
    the documented noise: δ_i ~ N(0, σ²) from a CPU float64 generator seeded ``seed``."""
    model, x = _hand_model()
    generator = torch.Generator().manual_seed(3)
    noise = 0.5 * torch.randn((4, 2, 3), generator=generator, dtype=torch.float64)
    weights = model.weights[0]  # (C, h, w) = G
    per_channel = (weights * x[0]).sum(0)  # Σ_c G_c ⊙ A_c: the masked input keeps all channels
    assert_close(per_channel, tensor(GA), **EXACT)
    extra = float((per_channel * noise.mean(0)).sum())
    expected = _map_from_scores(L0 + BIAS + extra, L1 + BIAS + extra)
    got = _raw(model, x, "sscam", samples=4, noise_std=0.5, seed=3)
    assert_close(got, expected, **EXACT)


def test_sscam_is_seeded_chunk_and_batch_independent() -> None:
    generator = torch.Generator().manual_seed(11)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    x = torch.randn(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()

    def run(images: slice, **options) -> torch.Tensor:
        options = {"samples": 3, "noise_std": 0.3, **options}
        return camlens.explain(
            model, x[images], "sscam", "0", targets=[1, 2][images], options=options
        ).layer_maps[0]

    first = run(slice(0, 2))
    assert torch.equal(run(slice(0, 2)), first)  # reproducible
    assert_close(run(slice(0, 2), batch_size=2), first, **EXACT)  # chunking
    for image in range(2):
        assert_close(run(slice(image, image + 1))[0], first[image], **EXACT)  # batch
    assert not torch.allclose(run(slice(0, 2), seed=1), first)
    assert not torch.allclose(run(slice(0, 2), noise_std=0), first)
    assert model.training and not model[0]._forward_hooks
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("method", ["sscam", "iscam"])
def test_top_k_keeps_the_strongest_channel(method: str) -> None:
    model, x = _hand_model()  # mean |A0| = 8/6 > mean |A1| = 6/6
    assert_close(_raw(model, x, method, top_k=1), tensor([A0]), **EXACT)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("sscam", {"samples": 0}),
        ("sscam", {"noise_std": -1.0}),
        ("sscam", {"seed": 0.5}),
        ("iscam", {"steps": 0}),
        ("iscam", {"path": "curved"}),
    ],
)
def test_bad_options_are_refused(method: str, options: dict) -> None:
    model, x = _hand_model()
    with pytest.raises(OptionError):
        _raw(model, x, method, **options)
