"""The engine keeps a GPU's queue flowing: no host synchronisation inside the per-layer,
per-target and per-method loops, two per batch in all (the NaN/inf checks, verified
together), and maps on the input's device.

Device-agnostic: a ``TorchDispatchMode`` sees every operation that reads a tensor's value
on the host (``item()``, ``bool()``, ``nonzero``) or copies it to the CPU, on whatever device
the tensors live; the CPU run here and a CUDA run (``bench/gpu.sh``) check the same thing.
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import camlens.engine as engine
from camlens import explain, explain_segmentation
from camlens.errors import NonFiniteError
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.steps import FiniteChecks
from camlens.targets import ClassifierOutputTarget

SYNCS = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.item")


class HostReads(TorchDispatchMode):
    """Counts operations that wait for the device or copy to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        to_host = "_to_copy" in name and str(kwargs.get("device", "")) == "cpu"
        if to_host or any(name.startswith(sync) for sync in SYNCS):
            self.calls[name] += 1
        return func(*args, **kwargs)


@pytest.fixture
def verifications(monkeypatch) -> list[int]:
    """How many times FiniteChecks.verify ran (each is one host synchronisation)."""
    counted: list[int] = []
    original = FiniteChecks.verify

    def verify(self) -> None:
        counted.append(len(self._pending))
        original(self)

    monkeypatch.setattr(FiniteChecks, "verify", verify)
    return counted


@pytest.mark.parametrize("strategy", ["loop", "batched"])
def test_a_segmentation_batch_reads_the_host_twice(verifications, monkeypatch, strategy):
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=4).eval()
    inputs = torch.randn(2, 3, 64, 64)
    original = engine.explain_batch

    def with_strategy(*args, **kwargs):
        return original(*args, **{**kwargs, "strategy": strategy})

    monkeypatch.setattr(engine, "explain_batch", with_strategy)
    with HostReads() as reads:
        result = explain_segmentation(
            model, inputs, classes="all", methods=["hirescam", "gradcam", "gradcam++"],
            layers=["encoder.layer3", "encoder.layer4"],
        )  # fmt: skip
    assert reads.calls == {}  # nothing waits for the device inside the loops
    # 2 verifications per batch: the 2 layers' activations and the output; then the scores
    # and the gradients of 4 classes at 2 layers (contribution maps need no check of their own)
    assert len(verifications) == 2 and verifications[0] == 3 and verifications[1] == 1 + 8
    for method in result.methods:
        assert result.maps[method].device == inputs.device
        assert all(m.device == inputs.device for m in result.layer_maps[method])


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam",
                                    "eigencam", "eigengradcam", "fem"])  # fmt: skip
def test_gradient_and_activation_methods_read_the_host_only_to_verify(verifications, method):
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=3).eval()
    inputs = torch.randn(3, 3, 32, 32)
    with HostReads() as reads:
        result = explain(model, inputs, layers="layer4", method=method,
                         targets=[ClassifierOutputTarget(1)] * 3)  # fmt: skip
    assert reads.calls == {}
    assert len(verifications) == 2
    assert result.maps.device == inputs.device


def test_deferred_checks_still_name_the_first_bad_tensor() -> None:
    model = tiny_resnet(num_classes=3).eval()
    inputs = torch.randn(1, 3, 32, 32)
    inputs[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="activations of layer 'layer4'"):
        explain(model, inputs, layers="layer4", method="gradcam")
    checks = FiniteChecks()
    checks.add(torch.ones(3), "first")
    checks.add(torch.tensor([1.0, float("inf"), float("nan")]), "second")
    checks.add(torch.tensor([float("nan")]), "third")
    with pytest.raises(NonFiniteError, match=r"^2 NaN/inf value\(s\) in second"):
        checks.verify()
    checks.verify()  # verified checks are forgotten


def test_a_finite_tensor_whose_sum_overflows_passes() -> None:
    """The checks queue sums; a sum can overflow to inf although every value is finite
    (here 3 × 3e38 in float32), which is then counted element by element: no error."""
    checks = FiniteChecks()
    checks.add(torch.full((3,), 3e38), "large")
    checks.add(torch.tensor([1.0, -float("inf")]), "infinite")
    checks.add(torch.tensor([float("inf"), -float("inf")]), "cancelling")  # sum is NaN
    with pytest.raises(NonFiniteError, match=r"^1 NaN/inf value\(s\) in infinite"):
        checks.verify()
    checks.add(torch.full((3,), 3e38), "large")
    checks.verify()
