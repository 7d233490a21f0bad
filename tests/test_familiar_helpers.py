"""pytorch-grad-cam 1.5.7's other public names: targets, reshape transforms, image helpers.

Reference numbers marked "upstream" were produced once with grad-cam 1.5.7 (OpenCV 5.0.0,
matplotlib 3.11, numpy 2.4, torch 2.13, x86-64) in ``bench/.env-gradcam`` by calling the
named upstream function on the inputs written here, and are hard-coded; pytorch-grad-cam is
never imported by this suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens.errors import InputShapeError, TargetError
from camlens.image import (
    create_labels_legend,
    deprocess_image,
    scale_cam_image,
    show_factorization_on_image,
)
from camlens.image.familiar import _gist_rainbow, _value_ramp
from camlens.reshape import (
    fasterrcnn_reshape_transform,
    swinT_reshape_transform,
    vit_reshape_transform,
)
from camlens.targets import (
    ClassifierOutputReST,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    SoftmaxOutputTarget,
    target_score,
)

OUT = torch.tensor([1.0, 2.0, 0.5, -1.0])
BATCH = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, -0.5, 3.0, 1.5]])


# --- targets --------------------------------------------------------------------------------


def test_rest_is_logit_minus_cross_entropy() -> None:
    by_hand = 2 * OUT[1] - torch.logsumexp(OUT, 0)
    assert torch.allclose(ClassifierOutputReST(1)(OUT), by_hand)
    assert ClassifierOutputReST(1)(OUT).shape == ()
    # upstream: ClassifierOutputReST(1)(OUT), ClassifierOutputReST(2)(BATCH)
    assert ClassifierOutputReST(1)(OUT).item() == pytest.approx(1.504818081855774, abs=1e-6)
    assert ClassifierOutputReST(2)(BATCH).tolist() == pytest.approx(
        [-1.495181918144226, 2.7352428436279297], abs=1e-6
    )


def test_softmax_and_raw_scores_are_vectors_as_upstream() -> None:
    # upstream: SoftmaxOutputTarget()(OUT)
    expected = [0.2242078334093094, 0.6094600558280945, 0.13598892092704773, 0.030343228951096535]
    assert SoftmaxOutputTarget()(OUT).tolist() == pytest.approx(expected, abs=1e-7)
    assert torch.allclose(SoftmaxOutputTarget()(BATCH), torch.softmax(BATCH, dim=-1))
    assert RawScoresOutputTarget()(OUT) is OUT
    # not scalars: the one target check names the problem
    with pytest.raises(TargetError, match="one scalar tensor"):
        target_score(SoftmaxOutputTarget(), OUT, "target 0")
    assert target_score(RawScoresOutputTarget(), torch.tensor([0.5]), "t").item() == 0.5
    with pytest.raises(TargetError, match="scalar"):
        SoftmaxOutputTarget()(torch.tensor(1.0))


def test_finer_weighted_target_by_hand_and_upstream() -> None:
    target = FinerWeightedTarget(1, [0, 2], 0.6)
    p = torch.softmax(OUT, 0)
    by_hand = (p[0] * (OUT[1] - 0.6 * OUT[0]) + p[2] * (OUT[1] - 0.6 * OUT[2])) / (
        p[0] + p[2] + 1e-9
    )
    assert torch.allclose(target(OUT), by_hand)
    # upstream: FinerWeightedTarget(1, [0, 2], 0.6)(OUT) and (BATCH)
    assert target(OUT).item() == pytest.approx(1.513262152671814, abs=1e-6)
    assert target(BATCH).tolist() == pytest.approx([1.513262152671814, -2.2146334648132324])
    # alpha = 0: the main logit (weights cancel)
    assert FinerWeightedTarget(3, [0, 1, 2], 0.0)(OUT).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least one comparison"):
        FinerWeightedTarget(1, [], 0.5)


@pytest.mark.parametrize(
    "target",
    [
        ClassifierOutputReST(7),
        FinerWeightedTarget(7, [0], 1.0),
        FinerWeightedTarget(0, [1, 9], 1.0),
    ],
)
def test_bad_class_indices_are_target_errors(target: object) -> None:
    with pytest.raises(TargetError, match=r"out of range .* 4 classes"):
        target(OUT)  # type: ignore[operator]


@pytest.mark.parametrize(
    "target",
    [
        ClassifierOutputReST(2),
        FinerWeightedTarget(1, [0, 2, 3], 0.6),
        FinerWeightedTarget(-1, [-2], 1.0),
        SoftmaxOutputTarget(),
        RawScoresOutputTarget(),
    ],
)
def test_targets_vmap_like_a_loop(target: object) -> None:
    outputs = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    looped = torch.stack([target(o) for o in outputs])  # type: ignore[operator]
    assert torch.allclose(torch.vmap(target)(outputs), looped, atol=1e-6)  # type: ignore[arg-type]


def test_rest_and_finer_are_differentiable() -> None:
    logits = OUT.clone().requires_grad_(True)
    (ClassifierOutputReST(1)(logits) + FinerWeightedTarget(1, [0], 1.0)(logits)).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # d ReST / d y = 2·onehot - softmax
    only = OUT.clone().requires_grad_(True)
    ClassifierOutputReST(1)(only).backward()
    expected = 2 * F.one_hot(torch.tensor(1), 4).float() - torch.softmax(OUT, 0)
    assert torch.allclose(only.grad, expected)


# --- reshape transforms -----------------------------------------------------------------------


def test_vit_reshape_transform_drops_the_class_token() -> None:
    tokens = torch.randn(2, 1 + 3 * 4, 5)
    grid = vit_reshape_transform(tokens, height=3, width=4)
    assert grid.shape == (2, 5, 3, 4)
    for i in range(3):
        for j in range(4):
            assert torch.equal(grid[:, :, i, j], tokens[:, 1 + i * 4 + j, :])
    assert vit_reshape_transform(torch.randn(1, 197, 8)).shape == (1, 8, 14, 14)
    with pytest.raises(InputShapeError, match=r"\[B, 13, C\]"):
        vit_reshape_transform(torch.randn(2, 12, 5), 3, 4)


def test_swin_reshape_transform() -> None:
    tokens = torch.randn(2, 3 * 4, 5)
    grid = swinT_reshape_transform(tokens, height=3, width=4)
    assert grid.shape == (2, 5, 3, 4)
    assert torch.equal(grid, tokens.reshape(2, 3, 4, 5).permute(0, 3, 1, 2))
    assert swinT_reshape_transform(torch.randn(1, 49, 8)).shape == (1, 8, 7, 7)
    channels_last = tokens.reshape(2, 3, 4, 5)
    assert torch.equal(swinT_reshape_transform(channels_last, 3, 4), grid)
    with pytest.raises(InputShapeError, match="swinT_reshape_transform"):
        swinT_reshape_transform(torch.randn(2, 13, 5), 3, 4)


def test_fasterrcnn_reshape_transform_resizes_to_pool() -> None:
    gen = torch.Generator().manual_seed(1)
    levels = {
        "0": torch.randn(1, 2, 8, 8, generator=gen),
        "1": torch.randn(1, 3, 4, 4, generator=gen),
        "pool": torch.randn(1, 2, 2, 2, generator=gen),
    }
    out = fasterrcnn_reshape_transform(levels)
    assert out.shape == (1, 7, 2, 2)
    # 8 → 2 bilinear, half-pixel centres: the mean of the middle 2×2 of each 4×4 block
    first = levels["0"].abs()
    assert torch.allclose(out[0, 0, 0, 0], first[0, 0, 1:3, 1:3].mean())
    assert torch.allclose(out[:, 5:], levels["pool"].abs())
    expected = torch.cat(
        [F.interpolate(v.abs(), size=(2, 2), mode="bilinear") for v in levels.values()], dim=1
    )
    assert torch.allclose(out, expected)
    no_pool = {"a": levels["0"], "b": levels["1"]}
    assert fasterrcnn_reshape_transform(no_pool).shape == (1, 5, 4, 4)
    with pytest.raises(InputShapeError, match="dict"):
        fasterrcnn_reshape_transform(torch.randn(1, 2, 3, 3))  # type: ignore[arg-type]


# --- image helpers ----------------------------------------------------------------------------


def test_deprocess_image_upstream_numbers() -> None:
    img = (np.arange(12, dtype=np.float32).reshape(2, 2, 3) * 0.37 - 1) ** 2
    out = deprocess_image(img)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    # upstream: deprocess_image(img)
    assert out.ravel().tolist() == [113, 107, 105, 104, 106, 110, 117, 126, 137, 150, 166, 184]
    z = (img - img.mean()) / (img.std() + 1e-5)
    assert np.array_equal(out, (np.clip(z * 0.1 + 0.5, 0, 1) * 255).astype(np.uint8))
    assert np.array_equal(deprocess_image(torch.from_numpy(img)), out)


def test_scale_cam_image_upstream_numbers() -> None:
    cam = np.array([[[0.0, 1.0, 4.0], [2.0, -1.0, 3.0]]], np.float32)
    out = scale_cam_image(cam, (4, 3))  # (width, height), OpenCV's order
    assert out.shape == (1, 3, 4) and out.dtype == np.float32
    # upstream: scale_cam_image(cam, (4, 3)) (cv2.resize, INTER_LINEAR)
    expected = [0.2, 0.325, 0.625, 1.0, 0.4, 0.275, 0.4625, 0.9, 0.6, 0.225, 0.3, 0.8]
    assert out.ravel() == pytest.approx(expected, abs=1e-6)
    down = np.array([[[0, 1, 4, 2], [2, -1, 3, 0.5], [1, 1, 0, 7], [3, 2, 2, 1]]], np.float32)
    # upstream: scale_cam_image(down, (2, 3))
    expected = [0.1875, 0.4739583432674408, 0.21875, 0.453125, 0.40625, 0.3541666865348816]
    assert scale_cam_image(down, (2, 3)).ravel() == pytest.approx(expected, abs=1e-6)
    unscaled = scale_cam_image(down)
    shifted = down - down.min()
    assert np.array_equal(unscaled, (shifted / (1e-7 + shifted.max())).astype(np.float32))


def test_scale_cam_image_per_map_and_volumes() -> None:
    cams = np.stack([np.full((2, 2), 3.0), np.array([[0.0, 2.0], [4.0, 8.0]])])
    out = scale_cam_image(cams)
    assert np.array_equal(out[0], np.zeros((2, 2), np.float32))
    assert out[1].ravel() == pytest.approx([0, 0.25, 0.5, 1.0], abs=1e-6)
    volume = np.random.default_rng(0).random((2, 4, 5, 6))
    assert scale_cam_image(volume, (12, 10, 8)).shape == (2, 8, 10, 12)
    with pytest.raises(InputShapeError, match="target_size"):
        scale_cam_image(cams, (4, 4, 4))
    with pytest.raises(InputShapeError, match="maps"):
        scale_cam_image(np.zeros((4, 4)))


def test_create_labels_legend_upstream_strings() -> None:
    scores = np.array([[0.1, 0.7, 0.3], [0.9, 0.2, 0.9]])
    labels = {0: "tench, Tinca tinca", 1: "goldfish, Carassius auratus, x, y", 2: "shark"}
    # upstream: create_labels_legend(scores, labels) (ties: the higher index first)
    assert create_labels_legend(scores, labels) == [
        "goldfish, Carassius auratus, x:0.70\nshark:0.30",
        "shark:0.90\ntench, Tinca tinca:0.90",
    ]
    as_list = [labels[0], labels[1], labels[2]]
    assert create_labels_legend(scores, as_list, top_k=1) == [
        "goldfish, Carassius auratus, x:0.70",
        "shark:0.90",
    ]


def test_opencv_hsv_value_ramp() -> None:
    values = [0, 1, 2, 50, 77, 128, 191, 200, 254, 255]
    # upstream's step: cv2.cvtColor(RGB2HSV), set V, cv2.cvtColor(HSV2RGB) on a 1024-pixel row
    expected = {
        (255, 51, 25): [[0, 0, 0], [1, 0, 0], [2, 0, 0], [50, 9, 4], [77, 14, 7], [128, 24, 12],
                        [191, 35, 18], [200, 37, 19], [254, 47, 24], [255, 47, 24]],
        (25, 127, 229): [[0, 0, 0], [0, 0, 1], [0, 1, 2], [5, 27, 50], [8, 42, 77],
                         [14, 71, 128], [20, 105, 191], [21, 110, 200], [27, 140, 254],
                         [27, 141, 255]],
        (200, 100, 150): [[0, 0, 0], [1, 0, 0], [2, 1, 1], [50, 25, 37], [77, 38, 57],
                          [128, 64, 96], [191, 95, 143], [200, 100, 150], [254, 127, 190],
                          [255, 127, 191]],
    }  # fmt: skip
    for colour, rows in expected.items():
        assert _value_ramp(np.array(colour, np.uint8))[values].tolist() == rows


def test_gist_rainbow_default_colours() -> None:
    # matplotlib.colormaps["gist_rainbow"](np.arange(0, 1, 1 / 3))
    expected = [
        [1.0, 0.0, 0.16, 1.0],
        [0.36036036036036034, 1.0, 0.0, 1.0],
        [0.0, 0.5615942028985503, 1.0, 1.0],
    ]
    np.testing.assert_allclose(_gist_rainbow(np.arange(0, 1, 1 / 3)), expected, atol=1e-15)


def test_show_factorization_on_image() -> None:
    img = np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 23
    expl = np.array(
        [
            [[0.9, 0.2, 0.5, 0.0], [1.0, 0.3, 0.25, 0.6]],
            [[0.1, 0.8, 0.5, 0.0], [0.0, 0.7, 0.75, 0.4]],
        ],
        np.float32,
    )
    kept = expl.copy()
    colors = [np.array([1.0, 0.0, 0.0]), np.array([0.5, 0.5, 0.5, 1.0])]
    out = show_factorization_on_image(img, expl, colors=colors, image_weight=0.3)
    assert np.array_equal(expl, kept)  # not modified (upstream zeroes the losers in place)
    # by the rule: each pixel's winning concept, its colour at HSV value uint8(255·heat)
    winner = expl.argmax(0)
    heat = (255 * np.take_along_axis(expl, winner[None], 0)[0]).astype(np.uint8)
    red = np.stack([heat, 0 * heat, 0 * heat], -1)
    grey = np.stack([heat, heat, heat], -1)
    mask = np.where((winner == 0)[..., None], red, grey).astype(np.float32) / 255
    assert np.array_equal(out, ((img * 0.3 + mask * 0.7) * 255).astype(np.uint8))
    # default colours: gist_rainbow; a legend adds a panel of the same size on the right
    default = show_factorization_on_image(img, expl)
    legend = show_factorization_on_image(img, expl, concept_labels=["cat:0.9", "dog\nx:0.1"])
    assert default.shape == (2, 4, 3) and legend.shape == (2, 8, 3)
    assert np.array_equal(legend[:, :4], default)
    big = show_factorization_on_image(
        np.zeros((64, 64, 3), np.float32),
        np.random.default_rng(0).random((3, 64, 64)),
        concept_labels=["a", "b", "c"],
    )
    assert big.shape == (64, 128, 3) and (big[:, 64:] != 255).any()
    with pytest.raises(InputShapeError, match="explanations"):
        show_factorization_on_image(img, expl[:, :1])
