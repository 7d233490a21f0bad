"""The familiar classes, named and called as in pytorch-grad-cam.

``Method(model=..., target_layers=[...], reshape_transform=...)(input_tensor=..., targets=...)``
returns numpy maps in [0, 1]; ``.explain(...)`` returns the signed raw maps. Each class only
names its registry entry and turns its keyword arguments into the method's options; the
formula and its paper live with the method in :mod:`camlens.methods`, the pipeline in
:mod:`camlens.engine`, and the explainer in :class:`~camlens.explainer.Explainer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from camlens.errors import caller_stacklevel as _caller_level
from camlens.familiar_extension import FamiliarExtension
from camlens.layers import LayerSpec
from camlens.methods.perturbation import DEFAULT_MEMORY_BUDGET_MB
from camlens.reshape import ReshapeTransform

__all__ = [
    "CAM",
    "FEM",
    "AblationCAM",
    "BaseCAM",
    "EigenCAM",
    "EigenGradCAM",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "RandomCAM",
    "ScoreCAM",
    "SegXResCAM",
    "ShapleyCAM",
    "XGradCAM",
]


class BaseCAM(FamiliarExtension):
    """pytorch-grad-cam's base class: ``(model, target_layers, reshape_transform, use_cuda)``.

    The named subclasses (``GradCAM``, ``HiResCAM``, ...) set :attr:`method_name`. Using
    ``BaseCAM`` itself with ``method=`` is deprecated: that is :class:`camlens.Explainer`.

    Args:
        model: the PyTorch model, borrowed for each call (see :class:`Explainer`).
        target_layers: modules, dotted names or ``"auto"``.
        reshape_transform: turns a layer output into ``[B, C, *grid]``.
        use_cuda: accepted for compatibility and ignored with a warning: inputs follow the
            model's device.
        fc_layer: CAM only: the linear classifier (module or dotted name); found if omitted.
        method_options: the method's options (``{"pool_size": 2}``).
        **upstream: pytorch-grad-cam's ``uses_gradients`` & co., for a subclass that overrides
            ``get_cam_weights`` / ``get_cam_image`` (see :mod:`camlens.familiar_extension`).
    """

    method_name: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        method: str | None = None,
        fc_layer: nn.Module | str | None = None,
        method_options: Mapping[str, Any] | None = None,
        **upstream: Any,
    ) -> None:
        if use_cuda is not None:
            warnings.warn(
                "`use_cuda` is deprecated and ignored: camlens runs on the model's device "
                "(move the model with model.to(device)).",
                FutureWarning,
                stacklevel=_caller_level(),
            )
        if method is not None:
            warnings.warn(
                "BaseCAM(..., method=...) is deprecated: use camlens.Explainer(model, layers, "
                "method, options=...).",
                DeprecationWarning,
                stacklevel=_caller_level(),
            )
        options = dict(method_options or {})
        if fc_layer is not None:
            options["fc_layer"] = fc_layer
        super().__init__(
            model,
            target_layers,
            self._familiar_method(model, method, upstream, reshape_transform),
            reshape_transform=reshape_transform,
            options=options,
        )

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release: hooks exist only during a call."""
        return None

    def __call__(  # type: ignore[override]
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Final maps ``(B, *input_spatial)`` as float32 numpy in [0, 1]."""
        return super().__call__(
            input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
        )

    @property
    def target_layers(self) -> list[nn.Module]:
        """The resolved target layers (pytorch-grad-cam's name for :attr:`layers`)."""
        return self.layers

    @property
    def method_options(self) -> dict[str, Any]:
        """The method's options (a copy; pytorch-grad-cam-style setters change them)."""
        return self.options


class CAM(BaseCAM):
    """CAM (Zhou et al., CVPR 2016): classifier weights × activations; needs GAP + linear."""

    method_name = "cam"


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): gradients averaged per channel × activations."""

    method_name = "gradcam"


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): gradients × activations element-wise; faithful for
    CNNs ending in global pooling + one linear layer."""

    method_name = "hirescam"


class GradCAMElementWise(BaseCAM):
    """Grad-CAM element-wise: ReLU(gradients × activations) summed over channels."""

    method_name = "gradcam_elementwise"


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): higher-order-weighted positive gradients."""

    method_name = "gradcam++"


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): activation-normalised gradient weights."""

    method_name = "xgradcam"


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients × activations element-wise."""

    method_name = "layercam"


class EigenCAM(BaseCAM):
    """EigenCAM (Muhammad & Yeasin, IJCNN 2020): first principal component of activations."""

    method_name = "eigencam"


class EigenGradCAM(BaseCAM):
    """EigenGrad-CAM: first principal component of gradients × activations."""

    method_name = "eigengradcam"


class SegXResCAM(BaseCAM):
    """Seg-XRes-CAM (Hasany et al., CVPRW 2023): gradients averaged in ``pool_size`` ×
    ``pool_size`` blocks, then × activations element-wise (1 = HiResCAM, grid = Grad-CAM)."""

    method_name = "segxrescam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        pool_size: int = 2,
    ) -> None:
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            use_cuda,
            method_options={"pool_size": pool_size},
        )


class _PerturbationCAM(BaseCAM):
    """A method that re-runs the model in chunks of perturbed copies.

    ``batch_size`` (copies per forward pass) can be set after construction, as in
    pytorch-grad-cam (``cam.batch_size = 64``); ``None`` sizes chunks from
    ``memory_budget_mb``.
    """

    @property
    def batch_size(self) -> int | None:
        """Copies per forward pass, or ``None`` to size chunks from the memory budget."""
        return self.options["batch_size"]

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self.set_options(batch_size=value)


def _options(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


class ScoreCAM(_PerturbationCAM):
    """ScoreCAM (Wang et al., CVPR Workshops 2020): channel weights = softmax over channels of
    the target scores of the input masked by each channel's upsampled, min-max normalised
    activation map. See :mod:`camlens.methods.score`.

    Args:
        model, target_layers, reshape_transform, use_cuda: as for every method.
        batch_size: masked inputs per forward pass; ``None`` (default) sizes chunks from
            ``memory_budget_mb``. Settable later as ``cam.batch_size``.
        memory_budget_mb: approximate extra memory for one chunk of masked inputs.
        progress: show a tqdm progress bar with the ETA (on by default, as in pytorch-grad-cam;
            False for quiet).
        top_k: speed-up that trades exactness: mask only the ``top_k`` channels with the
            largest mean activation (the others get weight 0). Off by default.
    """

    method_name = "scorecam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        batch_size: int | None = None,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        progress: bool = True,
        top_k: int | None = None,
    ) -> None:
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            use_cuda,
            method_options=_options(
                batch_size=batch_size,
                memory_budget_mb=memory_budget_mb,
                progress=progress,
                top_k=top_k,
            ),
        )


class AblationCAM(_PerturbationCAM):
    """AblationCAM (Desai & Ramaswamy, WACV 2020): channel weight = relative drop of the
    target score when the channel is zeroed, ``(y − y_k) / max(|y|, 1e-7)``. See
    :mod:`camlens.methods.ablation` for the division and for how the model is re-run.

    Args:
        model, target_layers, reshape_transform: as for every method.
        ablation_layer: pytorch-grad-cam's module that it swaps into the model; camlens
            ablates through a temporary hook instead, so this is ignored (with a warning).
        batch_size: ablated copies per forward pass; ``None`` (default) sizes chunks from
            ``memory_budget_mb``. Settable later as ``cam.batch_size``.
        ratio_channels_to_ablate: ablate only this share of the channels, those with the
            largest mean absolute activation; the others get weight 0 (1.0: all, exact).
        memory_budget_mb: approximate extra memory for one chunk of ablated copies.
        progress: show a tqdm progress bar with the ETA (on by default, as in pytorch-grad-cam;
            False for quiet).
        rerun: ``"auto"`` (re-run only what follows the layer where the model allows it) or
            ``"full"`` (always re-run the whole model; same maps, slower).
    """

    method_name = "ablationcam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        ablation_layer: nn.Module | None = None,
        batch_size: int | None = None,
        ratio_channels_to_ablate: float = 1.0,
        *,
        use_cuda: bool | None = None,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        progress: bool = True,
        rerun: str = "auto",
    ) -> None:
        if ablation_layer is not None:
            warnings.warn(
                "`ablation_layer` is ignored: camlens ablates channels through a temporary "
                "forward hook and never swaps modules in your model (token layers are handled "
                "through `reshape_transform`).",
                UserWarning,
                stacklevel=2,
            )
        super().__init__(
            model,
            target_layers,
            reshape_transform,
            use_cuda,
            method_options=_options(
                batch_size=batch_size,
                memory_budget_mb=memory_budget_mb,
                progress=progress,
                ratio=ratio_channels_to_ablate,
                rerun=rerun,
            ),
        )


class FullGrad(BaseCAM):
    """FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient × input plus the
    bias-gradient × bias of every layer with a bias (convolutions, batch norm as an affine
    layer, linear and norm layers on token grids), each made absolute, min-max normalised per
    image and upsampled, then summed. See :mod:`camlens.methods.fullgrad`.

    FullGrad uses all bias layers: ``target_layers`` is accepted for pytorch-grad-cam's
    signature and ignored (logged). The one raw map, at the input's resolution, is named
    ``"fullgrad(input+biases)"``.
    """

    method_name = "fullgrad"


class RandomCAM(BaseCAM):
    """RandomCAM: random channel weights ``U(-1, 1)`` × activations — a baseline that
    explains nothing, for sanity checks and metrics. ``seed`` (default 0) makes the weights
    reproducible and the same for every image; ``None`` draws fresh ones from torch's global
    generator. See :mod:`camlens.methods.baseline`."""

    method_name = "randomcam"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            model, target_layers, reshape_transform, use_cuda, method_options={"seed": seed}
        )


class FEM(BaseCAM):
    """FEM (Fuad et al., IPTA 2020): channel weight = the share of the channel's cells above
    its mean + ``k``·std, times the activations; gradient-free and class-agnostic. See
    :mod:`camlens.methods.fem`."""

    method_name = "fem"

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec],
        reshape_transform: ReshapeTransform | None = None,
        use_cuda: bool | None = None,
        *,
        k: float = 2.0,
    ) -> None:
        super().__init__(model, target_layers, reshape_transform, use_cuda, method_options={"k": k})


class ShapleyCAM(BaseCAM):
    """ShapleyCAM (Cai, 2025): channel weight = the grid mean of ``g − ½·H·A`` (gradient
    minus half the Hessian-vector product with the activations); equals Grad-CAM on ReLU
    networks. See :mod:`camlens.methods.shapley`."""

    method_name = "shapleycam"
