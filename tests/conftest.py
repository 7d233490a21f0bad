"""Shared fixtures: tiny seeded models with the layouts users have, and model snapshots."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

# The tests run many tiny operations: one intra-op thread avoids oversubscription (and
# 100× slow-downs of spin-waiting threads) when other processes share the machine's cores.
torch.set_num_threads(1)


class GapLinearNet(nn.Module):
    """conv → ReLU → conv → ReLU → global average pool → linear: the CAM family's textbook
    case, where CAM, Grad-CAM and HiResCAM are analytically related."""

    def __init__(self, classes: int = 5, channels: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(params=[0, 1], ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    torch.manual_seed(request.param)
    return request.param


@pytest.fixture
def gap_net(seed: int) -> GapLinearNet:
    return GapLinearNet().double().eval()


@dataclass
class Snapshot:
    """Everything about a model that camlens must leave as it found it."""

    state: dict[str, torch.Tensor]
    tree: str
    hooks: list[tuple[str, str, int]]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    training: dict[str, bool]

    @classmethod
    def of(cls, model: nn.Module) -> Snapshot:
        hook_dicts = [
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_pre_hooks_with_kwargs",
            "_forward_hooks_always_called",
            "_state_dict_hooks",
        ]
        return cls(
            state={k: v.detach().clone() for k, v in model.state_dict().items()},
            tree=repr(model),
            hooks=[
                (name, attr, len(getattr(module, attr, {})))
                for name, module in model.named_modules()
                for attr in hook_dicts
            ],
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            grads={
                n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
            },
            training={n: m.training for n, m in model.named_modules()},
        )

    def assert_same(self, model: nn.Module) -> None:
        other = Snapshot.of(model)
        assert other.tree == self.tree
        assert other.hooks == self.hooks
        assert other.requires_grad == self.requires_grad
        assert other.training == self.training
        assert other.state.keys() == self.state.keys()
        for key, value in self.state.items():
            assert torch.equal(other.state[key], value), key
        for key, grad in self.grads.items():
            if grad is None:
                assert other.grads[key] is None, key
            else:
                assert torch.equal(other.grads[key], grad), key


@pytest.fixture
def snapshot() -> Any:
    return Snapshot.of


def clone_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """With ``CAMLENS_FORBID_SKIPS`` set (``.ci/run`` sets it), a skipped test fails: in CI
    every test must run for real (its extra, Chromium and Ray are installed there)."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CAMLENS_FORBID_SKIPS")
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {report.longrepr}"
