"""The value of every registered method, in float64, against numbers worked out by hand.

1. Hand-computed maps. Most models here start with an identity layer named ``features``, so
   the activations ``A`` at the target layer are the input itself, followed by a head whose
   gradient ``G = dy/dA`` can be written down (a spatially weighted sum: ``G`` is its weight
   grid; a quadratic head: ``G`` depends on ``A``). The two-channel 2 × 3 layer below has
   activations and gradients of both signs, zero gradients, and channel sums that differ,
   so that every term of every formula (ReLU, epsilon, the grid sum, a partial pooling block)
   changes the expected numbers. The expected maps are written out from the papers, never by
   calling ``camlens.methods``.
2. Analytic identities on conv → ReLU → global average pooling → linear, with random
   weights and a few seeds.
3. Every method through :func:`camlens.explain_segmentation` on a dense model with a 1 × 1
   convolution head, where each class's map has a closed form, and a batch of two images
   equals the images explained one at a time.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.methods import get_method

DOUBLE = torch.float64
EXACT = {"rtol": 1e-12, "atol": 1e-12}

# -- the hand-written layer ----------------------------------------------------------------
# Two channels on a 2 × 3 grid (h ≠ w, so a transposed grid would be caught).
A0 = [[1.0, 2.0, 0.0], [-1.0, 3.0, 1.0]]  # Σ A0 = 6
A1 = [[2.0, -1.0, 1.0], [0.0, 1.0, 1.0]]  # Σ A1 = 4
# Gradients of the weighted-sum head y = Σ G ⊙ A + b: both signs, zeros, and a negative
# gradient on a negative activation (cell (0, 1) of channel 1: a positive product).
G0 = [[1.0, -2.0, 0.0], [2.0, 1.0, 1.0]]  # mean 1/2, Σ A0·G0 = -1
G1 = [[-1.0, -1.0, 3.0], [0.0, -2.0, 3.0]]  # mean 1/3, Σ A1·G1 = 3
BIAS = -4.5  # y = 2 - 4.5 = -2.5


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=DOUBLE)


class WeightedSum(nn.Module):
    """``features`` (identity: the activations are the input) → ``y_k = Σ P_k ⊙ A + b_k``,
    so that ``dy_k/dA = P_k``, a gradient that varies over the grid."""

    def __init__(self, weights: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("weights", weights)  # (K, C, h, w)
        self.register_buffer("offset", bias)  # (K,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kchw,bchw->bk", self.weights, self.features(x)) + self.offset


class Quadratic(nn.Module):
    """``features`` (identity) → ``y = ½ Σ P ⊙ A²``: the gradient ``P ⊙ A`` depends on ``A``."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("weights", weights)  # (C, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.weights * self.features(x) ** 2).flatten(1).sum(1, keepdim=True)


def _hand_model() -> tuple[WeightedSum, torch.Tensor]:
    model = WeightedSum(tensor([[G0, G1]]), tensor([BIAS]))
    return model, tensor([[A0, A1]])


def _raw(model: nn.Module, x: torch.Tensor, method: str, targets=(0,), **options) -> torch.Tensor:
    """The signed, unnormalised map at ``features``: ``(B, h, w)``."""
    explanation = camlens.explain(
        model, x, method=method, layers="features", targets=list(targets), options=options
    )
    return explanation.layer_maps[0]


# ------------------------------------------------------------------------------------------
# 1. Hand-computed maps
# ------------------------------------------------------------------------------------------


def test_hirescam_by_hand() -> None:
    """HiResCAM (Draelos & Carin 2020): Σ_c G_c ⊙ A_c, cell by cell; sums to y − b."""
    model, x = _hand_model()
    # G0⊙A0 = [[1, -4, 0], [-2, 3, 1]], G1⊙A1 = [[-2, 1, 3], [0, -2, 3]]
    expected = tensor([[[-1, -3, 3], [-2, 1, 4]]])
    raw = _raw(model, x, "hirescam")
    assert_close(raw, expected, **EXACT)
    assert float(raw.sum()) == pytest.approx(-2.5 - BIAS)


def test_gradcam_by_hand() -> None:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1–2): weight = mean of G over the grid."""
    model, x = _hand_model()
    # weights 1/2 and 1/3: A0/2 + A1/3
    expected = tensor([[[7 / 6, 2 / 3, 1 / 3], [-1 / 2, 11 / 6, 5 / 6]]])
    assert_close(_raw(model, x, "gradcam"), expected, **EXACT)


def test_gradcam_elementwise_by_hand() -> None:
    """Grad-CAM element-wise: Σ_c ReLU(G_c ⊙ A_c): negative products are dropped before
    the channel sum (HiResCAM would keep them); a product of two negatives counts."""
    model, x = _hand_model()
    # ReLU(G0⊙A0) = [[1, 0, 0], [0, 3, 1]], ReLU(G1⊙A1) = [[0, 1, 3], [0, 0, 3]]
    expected = tensor([[[1, 1, 3], [0, 3, 4]]])
    assert_close(_raw(model, x, "gradcam_elementwise"), expected, **EXACT)


def test_layercam_by_hand() -> None:
    """LayerCAM (Jiang et al. 2021, eq. 5–6): Σ_c ReLU(G_c) ⊙ A_c. Only the gradient is
    clipped: a positive gradient on a negative activation stays negative (cell (1, 0))."""
    model, x = _hand_model()
    # ReLU(G0)⊙A0 = [[1, 0, 0], [-2, 3, 1]], ReLU(G1)⊙A1 = [[0, 0, 3], [0, 0, 3]]
    expected = tensor([[[1, 0, 3], [-2, 3, 4]]])
    assert_close(_raw(model, x, "layercam"), expected, **EXACT)


def test_gradcam_plusplus_by_hand() -> None:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19): α = G² / (2G² + ΣA · G³ + 1e-6),
    weight = Σ α · ReLU(G). Only cells with G > 0 count: channel 0 has G = 1, 2, 1, 1 with
    ΣA0 = 6; channel 1 has G = 3, 3 with ΣA1 = 4."""
    model, x = _hand_model()
    eps = 1e-6
    w0 = 3 * 1 / (2 + 6 + eps) + 2 * 4 / (8 + 6 * 8 + eps)
    w1 = 2 * 3 * 9 / (18 + 4 * 27 + eps)
    expected = w0 * tensor([A0]) + w1 * tensor([A1])
    assert_close(_raw(model, x, "gradcam++"), expected, **EXACT)


def test_xgradcam_by_hand() -> None:
    """XGrad-CAM (Fu et al. 2020, eq. 10): weight = Σ (A / (ΣA + 1e-7)) ⊙ G."""
    model, x = _hand_model()
    w0 = (1 - 4 + 0 - 2 + 3 + 1) / (6 + 1e-7)
    w1 = (-2 + 1 + 3 + 0 - 2 + 3) / (4 + 1e-7)
    expected = w0 * tensor([A0]) + w1 * tensor([A1])
    assert_close(_raw(model, x, "xgradcam"), expected, **EXACT)


def test_segxrescam_blocks_by_hand() -> None:
    """Seg-XRes-CAM (Hasany et al. 2023): gradients averaged in s × s blocks, times A.
    With s = 2 on the 2 × 3 grid the last column is a partial 2 × 1 block that averages its
    own two cells; s = 1 is HiResCAM and s = 3 (one block over the grid) is Grad-CAM."""
    model, x = _hand_model()
    # block means: channel 0: 1/2 (columns 0–1), 1/2 (column 2);
    #              channel 1: -1 (columns 0–1), 3 (column 2)
    expected = tensor([[[-1.5, 2.0, 3.0], [-0.5, 0.5, 3.5]]])
    assert_close(_raw(model, x, "segxrescam", pool_size=2), expected, **EXACT)
    hirescam = tensor([[[-1, -3, 3], [-2, 1, 4]]])
    assert_close(_raw(model, x, "segxrescam", pool_size=1), hirescam, **EXACT)
    gradcam = tensor([[[7 / 6, 2 / 3, 1 / 3], [-1 / 2, 11 / 6, 5 / 6]]])
    assert_close(_raw(model, x, "segxrescam", pool_size=3), gradcam, **EXACT)


def test_cam_by_hand_numbers() -> None:
    """CAM (Zhou et al. 2016, eq. 2): Σ_c W[k, c] A_c with the classifier row of class k."""
    model = nn.Sequential()
    model.add_module("features", nn.Identity())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(2, 2))
    model = model.double()
    with torch.no_grad():
        model.fc.weight.copy_(tensor([[2, -3], [0.5, 1]]))
        model.fc.bias.copy_(tensor([-0.5, 0.25]))
    x = tensor([[A0, A1]])
    assert_close(_raw(model, x, "cam"), tensor([[[-4, 7, -3], [-2, 3, -1]]]), **EXACT)
    assert_close(_raw(model, x, "cam", targets=[1]), 0.5 * x[:, 0] + x[:, 1], **EXACT)


def test_scorecam_by_hand() -> None:
    """ScoreCAM (Wang et al. 2020): each channel, min-max normalised (+1e-8), masks the
    input; the masked scores, softmaxed over the channels, weight the activations."""
    model, x = _hand_model()
    # H0 = (A0 + 1) / (4 + 1e-8), H1 = (A1 + 1) / (3 + 1e-8); y(x ⊙ H) = Σ (G ⊙ A) ⊙ H + b
    # with G ⊙ A summed over channels = [[-1, -3, 3], [-2, 1, 4]]:
    s0 = (-1 * 2 - 3 * 3 + 3 * 1 - 2 * 0 + 1 * 4 + 4 * 2) / (4 + 1e-8) + BIAS
    s1 = (-1 * 3 - 3 * 0 + 3 * 2 - 2 * 1 + 1 * 2 + 4 * 2) / (3 + 1e-8) + BIAS
    w0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
    expected = w0 * tensor([A0]) + (1 - w0) * tensor([A1])
    assert_close(_raw(model, x, "scorecam"), expected, **EXACT)


def test_ablationcam_by_hand() -> None:
    """AblationCAM (Desai & Ramaswamy 2020, eq. 2–3): w_c = (y − y_c) / max(|y|, 1e-7).
    Here y = -2.5 and zeroing channel c removes Σ G_c ⊙ A_c (-1 and 3): w = (-0.4, 1.2),
    not the inverted map that dividing by the negative y would give."""
    model, x = _hand_model()
    expected = tensor([[[2.0, -2.0, 1.2], [0.4, 0.0, 0.8]]])  # -0.4·A0 + 1.2·A1
    assert_close(_raw(model, x, "ablationcam"), expected, **EXACT)


@pytest.mark.parametrize("total", [1.0, -1.0], ids=["positive-sum", "negative-sum"])
def test_eigencam_rank_one(total: float) -> None:
    """Eigen-CAM (Muhammad & Yeasin 2020): activations u_c·m + v_c (a rank-one pattern plus
    per-channel offsets) have the first principal component u/|u| once centred, so the map is
    |u|·(m − mean m), oriented to correlate with the channel sum (sign of Σu)."""
    u = (3.0, 4.0) if total > 0 else (3.0, -4.0)  # |u| = 5, Σu = 7 or -1
    m = tensor([[1, -2, 0], [2, 1, 4]])  # mean 1
    x = torch.stack([u[0] * m + 1.0, u[1] * m - 2.0])[None]
    model = WeightedSum(torch.ones(1, 2, 2, 3, dtype=DOUBLE), tensor([0.0]))
    sign = 1.0 if total > 0 else -1.0
    expected = sign * tensor([[[0, -15, -5], [5, 0, 15]]])  # ±5·(m − 1)
    assert_close(_raw(model, x, "eigencam"), expected, rtol=1e-10, atol=1e-10)


def test_eigengradcam_rank_one() -> None:
    """EigenGrad-CAM: first principal component of G ⊙ A. With A_c = a_c·m and G_c = g_c·n,
    G ⊙ A = (g_c a_c)·(n ⊙ m) is rank one: the map is ±|g ⊙ a|·(n⊙m − mean), oriented to
    correlate with HiResCAM = Σ_c g_c a_c · (n ⊙ m). Here g ⊙ a = (3, -4) sums to -1."""
    m = tensor([[1, -2, 0], [2, 1, 4]])
    n = tensor([[1, 1, 2], [-1, 1, 0.5]])  # n ⊙ m = [[1, -2, 0], [-2, 1, 2]], mean 0
    x = torch.stack([3.0 * m, 2.0 * m])[None]
    model = WeightedSum(torch.stack([1.0 * n, -2.0 * n])[None], tensor([0.0]))
    expected = tensor([[[-5, 10, 0], [10, -5, -10]]])  # -5·(n⊙m)
    assert_close(_raw(model, x, "eigengradcam"), expected, rtol=1e-10, atol=1e-10)


class BiasReLU(nn.Module):
    """z = 2x − 1 (a 1 × 1 convolution with a bias) → y = Σ P ⊙ ReLU(z); no other bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(2.0)
            self.conv.bias.fill_(-1.0)
        self.register_buffer("weights", torch.tensor([[1.0, -2.0], [3.0, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights * torch.relu(self.conv(x))).flatten(1).sum(1, keepdim=True)


def test_fullgrad_by_hand() -> None:
    """FullGrad (Srinivas & Fleuret 2019, eq. 3): ψ(∇ₓy ⊙ x) + ψ(∇_z y ⊙ b), ψ = |·| then
    min-max per image (+1e-6). Image 0 has a cell cut by the ReLU (∇_z y = 0 there); in
    image 1 no cell is cut, and the minima are not zero."""
    model = BiasReLU().double()
    x = tensor([[[[1, 1], [-1, 2]]], [[[1, 0.75], [2, 1]]]])
    # image 0: ∇_z y = [[1, -2], [0, 0.5]]; input term 2·∇_z y ⊙ x = [[2, -4], [0, 2]];
    #          bias term -∇_z y. image 1: ∇_z y = P; input term [[2, -3], [12, 1]]; bias -P.
    image0 = tensor([[2, 4], [0, 2]]) / (4 + 1e-6) + tensor([[1, 2], [0, 0.5]]) / (2 + 1e-6)
    image1 = tensor([[1, 2], [11, 0]]) / (11 + 1e-6) + tensor([[0.5, 1.5], [2.5, 0]]) / (2.5 + 1e-6)
    result = camlens.explain(model, x, method="fullgrad", targets=[0])
    assert_close(result.layer_maps[0], torch.stack([image0, image1]), **EXACT)


def test_fem_by_hand() -> None:
    """FEM (Fuad et al. 2020, as pytorch-grad-cam 1.5.7): w_c = fraction of cells above
    mean_c + k·std_c (population std, strict >), map = Σ_c w_c A_c. Channel 0 is five 0s and
    one 6: mean 1, std √5, so only the 6 passes for k = 2 and k = 1 (threshold 1 + k√5).
    Channel 1 is 1…6: mean 3.5, std √(35/12) ≈ 1.708: no cell above 3.5 + 2·1.708 (weight 0),
    one (the 6) above 3.5 + 1.708, two (5 and 6) above 3.5 + 0.5·1.708."""
    ch0 = [[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]]
    ch1 = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    model = WeightedSum(tensor([[G0, G1]]), tensor([BIAS]))
    x = tensor([[ch0, ch1]])
    assert_close(_raw(model, x, "fem"), tensor([ch0]) / 6, **EXACT)  # the default k = 2
    assert_close(_raw(model, x, "fem", k=2.0), tensor([ch0]) / 6, **EXACT)
    assert_close(_raw(model, x, "fem", k=1.0), (tensor([ch0]) + tensor([ch1])) / 6, **EXACT)
    assert_close(_raw(model, x, "fem", k=0.5), tensor([ch0]) / 6 + tensor([ch1]) / 3, **EXACT)
    # gradient-free and target-agnostic: the sign of the head does not matter
    flipped = WeightedSum(-tensor([[G0, G1]]), tensor([BIAS]))
    assert_close(_raw(flipped, x, "fem"), tensor([ch0]) / 6, **EXACT)


def test_shapleycam_quadratic_heads_by_hand() -> None:
    """ShapleyCAM (Cai 2025): w_c = mean(g − ½ H·A)_c, map = Σ_c w_c A_c, on heads whose
    Hessian is known. (1) y = ½ Σ P ⊙ A²: g = P⊙A, H·A = P⊙A, so w = ½ mean(P⊙A) — half
    of Grad-CAM. (2) y = (Σ U⊙A)(Σ V⊙A): g = U·(V·A) + V·(U·A) and H = UVᵀ + VUᵀ, so again
    H·A = g and ShapleyCAM is half of Grad-CAM, with an off-diagonal Hessian."""
    model = Quadratic(tensor([G0, G1]))
    x = tensor([[A0, A1]])
    w0 = 0.5 * (1 - 4 + 0 - 2 + 3 + 1) / 6  # ½ mean(G0 ⊙ A0)
    w1 = 0.5 * (-2 + 1 + 3 + 0 - 2 + 3) / 6
    expected = w0 * tensor([A0]) + w1 * tensor([A1])
    assert_close(_raw(model, x, "shapleycam"), expected, **EXACT)
    assert_close(_raw(model, x, "gradcam"), 2 * expected, **EXACT)

    class Product(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Identity()

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            a = self.features(a)
            u, v = tensor([G0, G1]), tensor([A1, A0])
            return ((u * a).flatten(1).sum(1) * (v * a).flatten(1).sum(1))[:, None]

    # U·A = Σ G⊙A = 2, V·A = Σ A1⊙A0 + Σ A0⊙A1 = 2·(2 - 2 + 0 + 0 + 3 + 1) = 8
    # g = U·8 + V·2 = 8·G + 2·[A1, A0]; ShapleyCAM weight = ½ mean(g)
    v0 = 0.5 * (8 * 3 + 2 * 4) / 6  # ΣG0 = 3, ΣA1 = 4
    v1 = 0.5 * (8 * 2 + 2 * 6) / 6  # ΣG1 = 2, ΣA0 = 6
    expected = v0 * tensor([A0]) + v1 * tensor([A1])
    assert_close(_raw(Product(), x, "shapleycam"), expected, **EXACT)


# -- a head whose gradient depends on the activations, against loops over the papers --------
def _block_mean(grid: list[list[float]], size: int) -> list[list[float]]:
    rows, cols = len(grid), len(grid[0])
    out = [[0.0] * cols for _ in range(rows)]
    for top in range(0, rows, size):
        for left in range(0, cols, size):
            cells = [
                (i, j)
                for i in range(top, min(top + size, rows))
                for j in range(left, min(left + size, cols))
            ]
            mean = sum(grid[i][j] for i, j in cells) / len(cells)
            for i, j in cells:
                out[i][j] = mean
    return out


def _paper_map(method: str, acts: list, grads: list) -> list[list[float]]:
    """The signed map, written from each paper with plain loops over channels and cells."""
    rows, cols = len(acts[0]), len(acts[0][0])
    cells = [(i, j) for i in range(rows) for j in range(cols)]
    out = [[0.0] * cols for _ in range(rows)]
    for a, g in zip(acts, grads, strict=True):
        total = sum(a[i][j] for i, j in cells)
        if method == "gradcam":
            weight = sum(g[i][j] for i, j in cells) / len(cells)
        elif method == "xgradcam":
            weight = sum(a[i][j] / (total + 1e-7) * g[i][j] for i, j in cells)
        elif method == "gradcam++":
            weight = 0.0
            for i, j in cells:
                if g[i][j] > 0:
                    alpha = g[i][j] ** 2 / (2 * g[i][j] ** 2 + total * g[i][j] ** 3 + 1e-6)
                    weight += alpha * g[i][j]
        if method == "segxrescam":
            pooled = _block_mean(g, 2)
        for i, j in cells:
            if method in ("gradcam", "xgradcam", "gradcam++"):
                out[i][j] += weight * a[i][j]
            elif method == "hirescam":
                out[i][j] += g[i][j] * a[i][j]
            elif method == "gradcam_elementwise":
                out[i][j] += max(g[i][j] * a[i][j], 0.0)
            elif method == "layercam":
                out[i][j] += max(g[i][j], 0.0) * a[i][j]
            elif method == "segxrescam":
                out[i][j] += pooled[i][j] * a[i][j]
    return out


@pytest.mark.parametrize(
    "method",
    [
        "gradcam",
        "hirescam",
        "gradcam_elementwise",
        "gradcam++",
        "xgradcam",
        "layercam",
        "segxrescam",
    ],
)
def test_quadratic_head_against_paper_loops(method: str) -> None:
    """y = ½ Σ P ⊙ A²: G = P ⊙ A is computed by autograd from a non-linear head; each gradient
    method must match its paper's formula evaluated cell by cell (3 × 3 grid, 2 channels)."""
    acts = [
        [[1.0, -2.0, 0.5], [3.0, 1.0, -1.0], [2.0, 0.0, 1.5]],
        [[0.5, 1.0, 2.0], [-1.0, 2.5, 1.0], [1.0, -0.5, 3.0]],
    ]
    weights = [
        [[1.0, 0.5, -1.0], [0.25, 2.0, 1.0], [-0.5, 1.0, 0.5]],
        [[2.0, -1.0, 0.5], [1.0, 0.5, -2.0], [0.5, 1.0, 1.0]],
    ]
    grads = [
        [
            [p * a for p, a in zip(prow, arow, strict=True)]
            for prow, arow in zip(pc, ac, strict=True)
        ]
        for pc, ac in zip(weights, acts, strict=True)
    ]
    model = Quadratic(tensor(weights))
    expected = tensor([_paper_map(method, acts, grads)])
    assert_close(_raw(model, tensor([acts]), method), expected, **EXACT)


# ------------------------------------------------------------------------------------------
# 2. Identities: conv → ReLU → global average pooling → linear
# ------------------------------------------------------------------------------------------
class ConvGapLinear(nn.Module):
    """``features`` = conv → ReLU (activations ≥ 0, some channels partly dead), then global
    average pooling and a linear layer: the gradient at ``features`` is ``W[k, c] / (h·w)``,
    constant over the grid."""

    def __init__(self, classes: int = 3, channels: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


SEEDS = [0, 1, 2]
CATEGORIES = [2, 0]  # one target per image of a batch of two


def _gap_case(seed: int, positive: bool):
    """(model, x, activations (B, C, h, w), per-image gradients (B, C)) in float64."""
    torch.manual_seed(seed)
    model = ConvGapLinear().double().eval()
    if positive:
        with torch.no_grad():
            model.fc.weight.abs_()
    x = torch.randn(2, 3, 6, 8, dtype=DOUBLE)
    with torch.no_grad():
        activations = model.features(x)
    cells = activations.shape[2] * activations.shape[3]
    grads = model.fc.weight.detach()[CATEGORIES] / cells  # (B, C): G, constant over the grid
    return model, x, activations, grads


def _weighted(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    return (weights[:, :, None, None] * activations).sum(1)


@pytest.mark.parametrize("seed", SEEDS)
def test_xgradcam_equals_gradcam_for_nonnegative_activations(seed: int) -> None:
    """XGrad-CAM (Fu et al. 2020): with a constant gradient G, Σ (A / (ΣA + ε)) G =
    G · ΣA / (ΣA + ε) — Grad-CAM's weight G up to the 1e-7 epsilon (a dead channel, ΣA = 0,
    gets weight 0 but contributes 0 to both maps)."""
    model, x, activations, grads = _gap_case(seed, positive=False)
    sums = activations.sum(dim=(2, 3))
    expected = _weighted(grads * sums / (sums + 1e-7), activations)
    xgrad = _raw(model, x, "xgradcam", targets=CATEGORIES)
    assert_close(xgrad, expected, **EXACT)
    assert_close(xgrad, _raw(model, x, "gradcam", targets=CATEGORIES), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_gradcam_plusplus_closed_form_on_gap_head(seed: int) -> None:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) with G = W[k, c]/(h·w) at every cell:
    weight_c = h·w · ReLU(G) · G² / (2G² + ΣA_c · G³ + 1e-6); negative classifier weights
    give weight 0. (G² ≈ 1e-5 here, so the epsilon changes the map by several per cent.)"""
    model, x, activations, grads = _gap_case(seed, positive=False)
    assert bool((grads < 0).any()) and bool((grads > 0).any())
    cells = activations.shape[2] * activations.shape[3]
    sums = activations.sum(dim=(2, 3))
    alpha = grads**2 / (2 * grads**2 + sums * grads**3 + 1e-6)
    expected = _weighted(cells * alpha * torch.relu(grads), activations)
    assert_close(_raw(model, x, "gradcam++", targets=CATEGORIES), expected, **EXACT)


@pytest.mark.parametrize("seed", SEEDS)
def test_layercam_and_elementwise_equal_hirescam_for_positive_gradients(seed: int) -> None:
    """LayerCAM (ReLU(G) ⊙ A) and Grad-CAM element-wise (ReLU(G ⊙ A)) equal HiResCAM
    (G ⊙ A) when every gradient is positive (positive classifier weights) and A ≥ 0; and on a
    GAP head any Seg-XRes-CAM pool size gives HiResCAM = Grad-CAM (the block mean of a
    constant gradient is that constant)."""
    model, x, activations, grads = _gap_case(seed, positive=True)
    hirescam = _raw(model, x, "hirescam", targets=CATEGORIES)
    assert_close(hirescam, _weighted(grads, activations), **EXACT)
    for method in ("layercam", "gradcam_elementwise", "gradcam"):
        assert_close(_raw(model, x, method, targets=CATEGORIES), hirescam, **EXACT)
    for pool_size in (2, 3, 5):
        segx = _raw(model, x, "segxrescam", targets=CATEGORIES, pool_size=pool_size)
        assert_close(segx, hirescam, **EXACT)


@pytest.mark.parametrize("seed", SEEDS)
def test_layercam_and_elementwise_drop_negative_gradients(seed: int) -> None:
    """With classifier weights of both signs, LayerCAM = Σ_c ReLU(G_c) A_c keeps only the
    positive channels and differs from HiResCAM; with A ≥ 0, ReLU(G ⊙ A) = ReLU(G) ⊙ A, so
    Grad-CAM element-wise equals LayerCAM."""
    model, x, activations, grads = _gap_case(seed, positive=False)
    expected = _weighted(torch.relu(grads), activations)
    layercam = _raw(model, x, "layercam", targets=CATEGORIES)
    assert_close(layercam, expected, **EXACT)
    assert_close(_raw(model, x, "gradcam_elementwise", targets=CATEGORIES), expected, **EXACT)
    hirescam = _raw(model, x, "hirescam", targets=CATEGORIES)
    assert (layercam - hirescam).abs().max() > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_hirescam_completeness_on_a_flatten_head(seed: int) -> None:
    """HiResCAM (Draelos & Carin 2020): whenever the layer is followed by one linear map,
    Σ_cells Σ_c G ⊙ A = logit − bias — also without global pooling (conv → ReLU → flatten →
    linear), where the gradient varies over the grid and Grad-CAM does not add up."""
    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4 * 5 * 6, 3))
    model = model.double().eval()
    x = torch.randn(2, 3, 5, 6, dtype=DOUBLE)
    with torch.no_grad():
        logits = model(x)
    expected = logits[[0, 1], CATEGORIES] - model.fc.bias.detach()[CATEGORIES]
    hirescam = _raw(model, x, "hirescam", targets=CATEGORIES)
    assert_close(hirescam.sum(dim=(1, 2)), expected, rtol=1e-12, atol=1e-12)
    gradcam = _raw(model, x, "gradcam", targets=CATEGORIES)
    assert (gradcam.sum(dim=(1, 2)) - expected).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------
# 3. Every method through explain_segmentation: a 1 × 1 convolution head
# ------------------------------------------------------------------------------------------
class DenseLinear(nn.Module):
    """``features`` (identity) → 1 × 1 convolution with bias: logits_k = Σ_c W[k, c] A_c + b_k
    at every cell, so the class-k score summed over mask M_k has gradient W[k, c]·M_k."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Conv2d(weight.shape[1], weight.shape[0], 1, dtype=weight.dtype)
        with torch.no_grad():
            self.head.weight.copy_(weight[:, :, None, None])
            self.head.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# Ground-truth label maps on the 4 × 5 grid; every class is present in both images.
LABELS = [
    [[0, 0, 1, 1, 2], [0, 1, 1, 2, 2], [0, 0, 2, 2, 2], [1, 1, 1, 0, 0]],
    [[2, 2, 2, 2, 2], [1, 1, 0, 0, 2], [1, 1, 0, 0, 2], [1, 1, 1, 1, 1]],
]


def _dense_case():
    generator = torch.Generator().manual_seed(7)
    weight = torch.randn(3, 4, generator=generator, dtype=DOUBLE)  # (K classes, C channels)
    bias = torch.randn(3, generator=generator, dtype=DOUBLE)
    x = torch.randn(2, 4, 4, 5, generator=generator, dtype=DOUBLE)  # activations = input
    labels = torch.tensor(LABELS)
    masks = (labels[:, None] == torch.arange(3)[None, :, None, None]).to(DOUBLE)  # (B, K, H, W)
    return DenseLinear(weight, bias), x, weight, bias, labels, masks


def _block_means(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Each cell replaced by the mean of its size × size block (edge blocks are partial)."""
    out = torch.empty_like(masks)
    height, width = masks.shape[-2:]
    for top in range(0, height, size):
        for left in range(0, width, size):
            block = masks[..., top : top + size, left : left + size]
            out[..., top : top + size, left : left + size] = block.mean(dim=(-2, -1), keepdim=True)
    return out


def _principal(points: torch.Tensor) -> torch.Tensor:
    """(N, C) → (N,): projection on the top eigenvector of the covariance (eigh, not SVD),
    oriented to correlate positively with the channel sum."""
    centred = points - points.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projection = centred @ vectors[:, -1]
    reference = points.sum(1) - points.sum(1).mean()
    return projection if float(projection @ reference) > 0 else -projection


def _eigen(contributions: torch.Tensor) -> torch.Tensor:
    """(B, K, C, H, W) → (B, K, H, W), image by image and class by class."""
    batch, classes, channels, height, width = contributions.shape
    out = torch.empty(batch, classes, height, width, dtype=DOUBLE)
    for b in range(batch):
        for k in range(classes):
            points = contributions[b, k].reshape(channels, -1).T
            out[b, k] = _principal(points).reshape(height, width)
    return out


def _psi(term: torch.Tensor) -> torch.Tensor:
    """FullGrad's ψ for (B, K, C, H, W) terms: |·|, min-max per (image, class), sum over C."""
    magnitude = term.abs()
    low = magnitude.flatten(2).min(-1).values[..., None, None, None]
    high = magnitude.flatten(2).max(-1).values[..., None, None, None]
    return ((magnitude - low) / (high - low + 1e-6)).sum(2)


def _dense_expected(method: str, x, weight, bias, masks) -> torch.Tensor:
    """(B, K, H, W) from the formulas, with G_{k,c} = W[k, c]·M_k at the identity layer."""
    acts = x[:, None]  # (B, 1, C, H, W)
    w = weight[None, :, :, None, None]  # (1, K, C, 1, 1)
    m = masks[:, :, None]  # (B, K, 1, H, W)
    area = masks.sum(dim=(2, 3))[:, :, None]  # (B, K, 1)
    sums = x.sum(dim=(2, 3))[:, None]  # (B, 1, C): ΣA_c
    logits = torch.einsum("kc,bchw->bkhw", weight, x) + bias[None, :, None, None]
    scores = (logits * masks).sum(dim=(2, 3))  # (B, K)

    def channel_weighted(weights: torch.Tensor) -> torch.Tensor:  # weights (B, K, C)
        return (weights[..., None, None] * acts).sum(2)

    if method == "hirescam":
        return (w * acts * m).sum(2)
    if method == "gradcam":
        return channel_weighted(weight[None] * area / masks[0, 0].numel())
    if method == "gradcam_elementwise":
        return torch.relu(w * acts * m).sum(2)
    if method == "layercam":
        return (torch.relu(w) * acts * m).sum(2)
    if method in ("gradcam++", "smoothgradcam++"):  # a linear head: noise changes no gradient
        g = weight[None]
        alpha = g**2 / (2 * g**2 + sums * g**3 + 1e-6)
        return channel_weighted(area * alpha * torch.relu(g))
    if method == "xgradcam":
        inside = torch.einsum("bchw,bkhw->bkc", x, masks)
        return channel_weighted(weight[None] * inside / (sums + 1e-7))
    if method == "segxrescam":  # default pool size 2: block means of the masked gradient
        return (w * _block_means(masks, 2)[:, :, None] * acts).sum(2)
    if method == "eigencam":  # class-agnostic
        return _eigen(acts.expand(-1, 3, -1, -1, -1))
    if method == "eigengradcam":
        return _eigen(w * acts * m)
    if method == "segeigencam":
        return _eigen(w.abs() * acts * m)
    if method == "kpcacam":  # class-agnostic; the reference is in test_methods_more
        from .test_methods_more import kpca_reference

        return kpca_reference(x, "sigmoid", None)[:, None].expand(-1, 3, -1, -1)
    if method == "scorecam":
        low = x.flatten(2).min(-1).values[..., None, None]
        high = x.flatten(2).max(-1).values[..., None, None]
        normalised = (x - low) / (high - low + 1e-8)  # (B, C', H, W), one mask per channel
        masked = x[:, None] * normalised[:, :, None]  # (B, C', C, H, W)
        masked_logits = torch.einsum("kc,bnchw->bnkhw", weight, masked)
        masked_logits = masked_logits + bias[None, None, :, None, None]
        masked_scores = (masked_logits * masks[:, None]).sum(dim=(3, 4))  # (B, C', K)
        return channel_weighted(torch.softmax(masked_scores, dim=1).transpose(1, 2))
    if method in ("sscam", "iscam"):  # Score-CAM with scores averaged over perturbed masks
        low = x.flatten(2).min(-1).values[..., None, None]
        high = x.flatten(2).max(-1).values[..., None, None]
        normalised = (x - low) / (high - low + 1e-8)  # (B, C', H, W)
        if method == "sscam":  # documented: 10 draws δ_i ~ N(0, 2²), CPU generator seeded 0
            generator = torch.Generator().manual_seed(0)
            noise = 2 * torch.randn((10, *x.shape[2:]), generator=generator, dtype=DOUBLE)
            perturbed = normalised[:, :, None] + noise  # (B, C', N, H, W): X ⊙ (H + δ_i)
        else:  # cumulative path, N = 10: c_i = i(i+1)/20; a linear head: mean c_i = 2.2
            perturbed = 2.2 * normalised[:, :, None]
        masked = x[:, None, None] * perturbed[:, :, :, None]  # (B, C', N, C, H, W)
        masked_logits = torch.einsum("kc,bnichw->bnikhw", weight, masked)
        masked_logits = masked_logits + bias[None, None, None, :, None, None]
        masked_scores = (masked_logits * masks[:, None, None]).sum(dim=(4, 5)).mean(2)
        return channel_weighted(torch.softmax(masked_scores, dim=1).transpose(1, 2))
    if method == "ablationcam":
        drops = torch.einsum("kc,bchw,bkhw->bkc", weight, x, masks)
        return channel_weighted(drops / scores.abs().clamp_min(1e-7)[..., None])
    if method == "fullgrad":
        input_term = x[:, None] * w * m  # x ⊙ ∇ₓ(score_k)
        one_hot = torch.eye(3, dtype=DOUBLE)[None, :, :, None, None]
        bias_term = one_hot * m * bias[None, None, :, None, None]  # ∇_z(score_k) ⊙ b
        return _psi(input_term) + _psi(bias_term)
    if method == "randomcam":  # documented: U(-1, 1) from a generator seeded 0, every image
        generator = torch.Generator().manual_seed(0)
        weights = 2 * torch.rand(x.shape[1], dtype=DOUBLE, generator=generator) - 1
        return channel_weighted(weights.expand(x.shape[0], 3, -1))
    if method == "fem":  # class-agnostic: w_c = fraction of cells above mean + 2·std (ddof 0)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True, correction=0)
        fractions = (x > mean + 2 * std).to(DOUBLE).mean(dim=(2, 3))  # (B, C)
        return channel_weighted(fractions[:, None].expand(-1, 3, -1))
    if method == "shapleycam":  # a linear head: H = 0, so g − ½H·A = g: Grad-CAM
        return channel_weighted(weight[None] * area / masks[0, 0].numel())
    raise AssertionError(f"no expected map for {method}")


SEGMENTATION_METHODS = [
    m for m in camlens.available_methods() if m != "cam" and not get_method(m).needs_attention
]


@pytest.mark.parametrize("method", SEGMENTATION_METHODS)
def test_segmentation_each_class_by_formula_and_batch(method: str) -> None:
    """explain_segmentation with a 1 × 1 convolution head explained at its input: each
    class's map is the method's formula with G = W[k, c]·M_k (ScoreCAM's and AblationCAM's
    re-run scores and FullGrad's terms written out as well), and a batch of two images equals
    the images explained one at a time. HiResCAM also adds up to score − b_k·|M_k|."""
    model, x, weight, bias, labels, masks = _dense_case()

    def run(images: slice):
        return camlens.explain_segmentation(
            model,
            x[images],
            classes=[0, 1, 2],
            methods=method,
            layers="features",
            masks=labels[images],
        )

    result = run(slice(0, 2))
    assert_close(result.masks, masks, rtol=0, atol=0)
    layer_map = result.layer_maps[method][0]
    expected = _dense_expected(method, x, weight, bias, masks)
    assert_close(layer_map, expected, rtol=1e-10, atol=1e-10)
    if method == "hirescam":
        offset = bias[None] * masks.sum(dim=(2, 3))
        assert_close(layer_map.sum(dim=(2, 3)), result.scores - offset, **EXACT)
    for image in range(2):
        single = run(slice(image, image + 1))
        assert_close(single.layer_maps[method][0][0], layer_map[image], rtol=1e-12, atol=1e-12)
        assert_close(single.maps[method][0], result.maps[method][image], rtol=1e-12, atol=1e-12)


def test_randomcam_is_a_seeded_random_combination_of_channels() -> None:
    """RandomCAM: ``Σ_c w_c A_c`` with ``w_c`` in [-1, 1]. With one-hot activations (channel
    ``c`` is 1 at cell ``c`` only) the map reads the weights off directly: they lie in
    [-1, 1], are not all equal, repeat for the same seed, change with another, and are the
    same for every image of a batch and every class of a segmentation."""
    channels = 6
    activations = torch.eye(channels, dtype=torch.float64).reshape(channels, 2, 3)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(channels * 6, 3)).double()
    x = activations.expand(2, channels, 2, 3).clone()
    first = camlens.explain(model, x, "randomcam", "0", targets=[0, 1])
    weights = first.layer_maps[0][0].flatten()
    assert bool((weights.abs() <= 1).all()) and weights.unique().numel() == channels
    assert torch.equal(first.layer_maps[0][0], first.layer_maps[0][1])  # every image alike
    again = camlens.explain(model, x, "randomcam", "0", targets=[2, 2])
    assert torch.equal(again.layer_maps[0], first.layer_maps[0])  # target-agnostic, seeded
    other = camlens.explain(model, x, "randomcam", "0", targets=0, options={"seed": 1})
    assert not torch.equal(other.layer_maps[0], first.layer_maps[0])
    torch.manual_seed(3)
    unseeded = camlens.explain(model, x, "randomcam", "0", targets=0, options={"seed": None})
    assert not torch.equal(unseeded.layer_maps[0][0], unseeded.layer_maps[0][1])
