"""Every public name of pytorch-grad-cam 1.5.7 has a camlens name at the mirrored path
(``pytorch_grad_cam.X`` → ``camlens.compat.X``), and the README's table lists each.

``UPSTREAM_NAMES`` was generated once from pytorch-grad-cam 1.5.7 (the benchmark environment):
per module, the classes, functions and constants it defines (for a package, what its
``__init__`` imports from the package); this test does not need pytorch-grad-cam.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from camlens.errors import CamlensError

UPSTREAM_NAMES: dict[str, tuple[str, ...]] = {
    "": (
        "AblationCAM",
        "AblationLayer",
        "AblationLayerFasterRCNN",
        "AblationLayerVit",
        "ActivationsAndGradients",
        "DeepFeatureFactorization",
        "EigenCAM",
        "EigenGradCAM",
        "FEM",
        "FinerCAM",
        "FullGrad",
        "GradCAM",
        "GradCAMElementWise",
        "GradCAMPlusPlus",
        "GuidedBackpropReLUModel",
        "HiResCAM",
        "KPCA_CAM",
        "LayerCAM",
        "RandomCAM",
        "RefineCAM",
        "SESS",
        "ScoreCAM",
        "SegEigenCAM",
        "ShapleyCAM",
        "XGradCAM",
        "run_dff_on_image",
    ),
    "ablation_cam": ("AblationCAM",),
    "ablation_cam_multilayer": (
        "AblationCAM",
        "AblationLayer",
        "replace_layer_recursive",
    ),
    "ablation_layer": (
        "AblationLayer",
        "AblationLayerFasterRCNN",
        "AblationLayerVit",
    ),
    "activations_and_gradients": ("ActivationsAndGradients",),
    "base_cam": ("BaseCAM",),
    "eigen_cam": ("EigenCAM",),
    "eigen_grad_cam": ("EigenGradCAM",),
    "feature_factorization.deep_feature_factorization": (
        "DeepFeatureFactorization",
        "dff",
        "run_dff_on_image",
    ),
    "fem": ("FEM",),
    "finer_cam": (
        "DEFAULT_COMPARISON_CATEGORIES",
        "FinerCAM",
    ),
    "fullgrad_cam": ("FullGrad",),
    "grad_cam": ("GradCAM",),
    "grad_cam_elementwise": ("GradCAMElementWise",),
    "grad_cam_plusplus": ("GradCAMPlusPlus",),
    "guided_backprop": (
        "GuidedBackpropReLU",
        "GuidedBackpropReLUModel",
        "GuidedBackpropReLUasModule",
    ),
    "hirescam": ("HiResCAM",),
    "kpca_cam": ("KPCA_CAM",),
    "layer_cam": ("LayerCAM",),
    "metrics.arcc": (
        "ARCC",
        "Coherency",
        "Complexity",
        "batch_pearson_coherency",
    ),
    "metrics.cam_mult_image": (
        "CamMultImageConfidenceChange",
        "DropInConfidence",
        "IncreaseInConfidence",
        "multiply_tensor_with_cam",
    ),
    "metrics.perturbation_confidence": (
        "AveragerAcrossThresholds",
        "PerturbationConfidenceMetric",
        "RemoveLeastRelevantFirst",
        "RemoveMostRelevantFirst",
    ),
    "metrics.road": (
        "NoisyLinearImputer",
        "ROADCombined",
        "ROADLeastRelevantFirst",
        "ROADLeastRelevantFirstAverage",
        "ROADMostRelevantFirst",
        "ROADMostRelevantFirstAverage",
        "neighbors_weights",
    ),
    "random_cam": ("RandomCAM",),
    "refine_cam": ("RefineCAM",),
    "score_cam": ("ScoreCAM",),
    "seg_eigen_cam": ("SegEigenCAM",),
    "sess": (
        "SESS",
        "sliding_window",
        "window_starts",
    ),
    "shapley_cam": ("ShapleyCAM",),
    "sobel_cam": ("sobel_cam",),
    "utils": (
        "deprocess_image",
        "get_2d_projection",
    ),
    "utils.find_layers": (
        "find_layer_predicate_recursive",
        "find_layer_types_recursive",
        "replace_all_layer_type_recursive",
        "replace_layer_recursive",
    ),
    "utils.image": (
        "create_labels_legend",
        "deprocess_image",
        "preprocess_image",
        "scale_accross_batch_and_channels",
        "scale_cam_image",
        "show_cam_on_image",
        "show_factorization_on_image",
    ),
    "utils.model_targets": (
        "BinaryClassifierOutputTarget",
        "ClassifierOutputReST",
        "ClassifierOutputSoftmaxTarget",
        "ClassifierOutputTarget",
        "FasterRCNNBoxScoreTarget",
        "FinerWeightedTarget",
        "RawScoresOutputTarget",
        "SemanticSegmentationTarget",
        "SoftmaxOutputTarget",
    ),
    "utils.reshape_transforms": (
        "fasterrcnn_reshape_transform",
        "swinT_reshape_transform",
        "vit_reshape_transform",
    ),
    "utils.svd_on_activations": (
        "get_2d_projection",
        "get_2d_projection_kernel",
        "get_2d_projection_with_sign_correction",
    ),
    "xgrad_cam": ("XGradCAM",),
}

#: Names that cannot be supported honestly: constructing them raises a camlens error that
#: names the alternative (see the README's table).
UNSUPPORTED = {
    ("ablation_layer", "AblationLayerFasterRCNN"),
    ("", "AblationLayerFasterRCNN"),
    ("ablation_cam_multilayer", "AblationLayer"),
}

README = Path(__file__).resolve().parents[2] / "README.md"
PAIRS = [(module, name) for module, names in UPSTREAM_NAMES.items() for name in names]


def _compat(module: str):
    return importlib.import_module("camlens.compat" + (f".{module}" if module else ""))


def test_there_are_110_upstream_names() -> None:
    assert len(PAIRS) == 110


@pytest.mark.parametrize("module,name", PAIRS, ids=[f"{m or 'root'}.{n}" for m, n in PAIRS])
def test_every_upstream_name_imports_from_the_mirrored_path(module: str, name: str) -> None:
    compat = _compat(module)
    assert hasattr(compat, name), f"camlens.compat.{module} lacks {name}"
    if not module:
        assert name in compat.__all__


@pytest.mark.parametrize("module,name", sorted(UNSUPPORTED))
def test_unsupported_names_raise_a_camlens_error_naming_the_alternative(
    module: str, name: str
) -> None:
    with pytest.raises(CamlensError, match="camlens"):
        getattr(_compat(module), name)()


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("#### Every pytorch-grad-cam name")
    end = text.index("\n#", start + 1)
    return text[start:end]


def test_the_readme_table_lists_every_module_and_name() -> None:
    rows = {}
    for line in _readme_section().splitlines():
        cells = line.split("|")
        if len(cells) > 2:
            for module in re.findall(r"`([^`]+)`", cells[1]):
                rows[module] = line
    for module, names in UPSTREAM_NAMES.items():
        row = rows.get(module or ".")
        assert row is not None, f"no README row for module {module or '(root)'}"
        for name in names:
            assert f"`{name}`" in row, f"README row of {module or '(root)'} lacks {name}"
