"""The linear modules that read a layer, and the modules no ablation of it changes.

AblationCAM zeroes one channel of a layer's output per copy. Where every module that reads
that output starts a *chain* of linear modules (:mod:`camlens.methods.linear_delta`), the
chains run once on the intact output and each copy's difference is subtracted at each
chain's end: a convolution of one channel instead of ``C_in`` (DeepLabV3+'s ASPP branches:
1x1 conv + BN; depthwise + pointwise conv + BN; pooling + 1x1 conv + BN). A chain goes on
while the difference stays cheap (after a dense convolution, element-wise modules only).

The layer's output is then left intact, so the chains' modules and every module reading
nothing computed from it (DeepLabV3+'s encoder, its skip branch) give the same output for
every copy: :meth:`LinearSuffix.memoised` runs them once per image.

Both are found by watching one forward pass at batch 1 (:meth:`LinearSuffix.find`): every
module call is recorded with its arguments, and every torch operation is seen through a
``TorchFunctionMode`` — so a functional use of the layer's output in some ``forward``
(``A + x``) is found too, and refuses the shortcut, as does a module that is not linear.
Mathematically exact; in floating point ``f(A) − f₀(D)`` and ``f(A − D)`` round differently
(relative differences ~1e-7 in float32).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from camlens.methods.linear_delta import CONVOLUTIONS, LINEAR_TYPES, Delta, through

__all__ = ["Chain", "LinearSuffix", "NoShortcut"]


class NoShortcut(Exception):
    """Not only chains of linear modules read the layer's output (why is the message)."""


@dataclass(frozen=True)
class Chain:
    """Modules run one after the other on the layer's output; ``end``'s output is replaced."""

    modules: tuple[nn.Module, ...]
    names: tuple[str, ...]
    shape: tuple[int, ...]  # the end's output, batch of one

    @property
    def end(self) -> nn.Module:
        return self.modules[-1]

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())


#: Tensor methods and properties that read only metadata, not values.
_METADATA_METHODS = frozenset(
    getattr(torch.Tensor, name)
    for name in (
        "size", "dim", "numel", "nelement", "ndimension", "stride", "storage_offset",
        "is_contiguous", "is_floating_point", "is_complex", "element_size", "get_device",
        "__len__", "data_ptr",
    )
)  # fmt: skip
_METADATA_PROPERTIES = frozenset(
    getattr(torch.Tensor, name).__get__
    for name in (
        "shape", "ndim", "dtype", "device", "layout", "is_cuda", "requires_grad", "is_sparse",
        "is_quantized", "is_meta", "grad_fn", "is_leaf",
    )
)  # fmt: skip


def _tensors(values: Any) -> Iterator[torch.Tensor]:
    if isinstance(values, torch.Tensor):
        yield values
    elif isinstance(values, list | tuple):
        for value in values:
            yield from _tensors(value)
    elif isinstance(values, dict):
        for value in values.values():
            yield from _tensors(value)


class _Watch(TorchFunctionMode):
    """Records, for every watched tensor, which leaf module (None: none) each torch
    operation that reads its values ran in; and marks as *derived* every tensor computed
    from a derived one (the layer's output is the first), without keeping them alive."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[int, torch.Tensor] = {}
        self.running: list[nn.Module] = []
        self.operations: dict[int, list[tuple[nn.Module | None, str]]] = {}
        self.derived: dict[int, weakref.ref[torch.Tensor]] = {}

    def watch(self, tensor: torch.Tensor) -> None:
        self.watched[id(tensor)] = tensor
        self.operations.setdefault(id(tensor), [])

    def derive(self, values: Any) -> None:
        for tensor in _tensors(values):
            self.derived[id(tensor)] = weakref.ref(tensor)

    def is_derived(self, values: Any) -> bool:
        for tensor in _tensors(values):
            ref = self.derived.get(id(tensor))
            if ref is not None and ref() is tensor:
                return True
        return False

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        metadata = func in _METADATA_METHODS or func in _METADATA_PROPERTIES
        if self.watched and not metadata:
            module = self.running[-1] if self.running else None
            for tensor in _tensors((args, kwargs)):
                if self.watched.get(id(tensor)) is tensor:
                    self.operations[id(tensor)].append((module, getattr(func, "__name__", "?")))
        result = func(*args, **kwargs)
        if self.derived and not metadata and self.is_derived((args, kwargs)):
            self.derive(result)
        return result


@dataclass
class _ModuleCall:
    """One call of a module (any, not only a leaf) in the watched pass."""

    calls: int
    reads_derived: bool  # an argument was computed from the layer's output
    output: Any


@dataclass
class _Reader:
    """A leaf module's call that read a watched tensor."""

    module: nn.Module
    name: str
    single: bool  # the tensor was its only argument
    output: torch.Tensor | None  # watched in turn where it may continue a chain


class LinearSuffix:
    """The chains of linear modules that read a layer's output (see the module docstring).

    Use :meth:`find` to discover them from one forward pass, :meth:`deltas` to compute what
    zeroing given channels subtracts at the end of every chain, and :meth:`split` to hand
    each chain's end its part (a forward hook there subtracts it from the output).
    """

    def __init__(self, chains: Sequence[Chain], memoisable: Sequence[nn.Module] = ()) -> None:
        self.chains = tuple(chains)
        self.memoisable = tuple(memoisable)

    @classmethod
    def find(
        cls,
        model: nn.Module,
        run_model: Callable[[], Any],
        layer: nn.Module,
    ) -> LinearSuffix:
        """Watch ``run_model()`` (one forward pass of ``model`` at batch 1) and return the
        chains that read ``layer``'s output; raises :class:`NoShortcut` where anything
        else reads it: a module that is not linear, or an operation outside a module.

        Every torch operation of the pass is seen (a ``TorchFunctionMode``), so a
        functional use of the output in some ``forward`` is found; operations that read
        only metadata (``shape``, ``dim()``, ...) do not count. A module with hooks of its
        own (another library's) is not trusted to be linear."""
        if _global_hooks():
            raise NoShortcut("global module hooks are registered (they could change outputs)")
        names = {module: name for name, module in model.named_modules()}
        modules = list(names)
        leaves = [m for m in modules if next(m.children(), None) is None]
        hooked = {m for m in leaves if m._forward_hooks or m._forward_pre_hooks}
        watch = _Watch()
        readers: dict[int, list[_Reader]] = {}
        seen: list[Any] = []

        module_calls: dict[nn.Module, _ModuleCall] = {}

        def called(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            record = module_calls.setdefault(module, _ModuleCall(0, False, None))
            record.calls += 1
            record.reads_derived |= watch.is_derived((args, kwargs))

        def returned(module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            module_calls[module].output = output

        def enter(module: nn.Module, _args: tuple[Any, ...]) -> None:
            watch.running.append(module)

        def leave(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            watch.running.pop()
            for arg in _tensors(args):
                if watch.watched.get(id(arg)) is not arg:
                    continue
                continues = (
                    isinstance(output, torch.Tensor)
                    and output is not arg
                    and isinstance(module, LINEAR_TYPES)
                    and module not in hooked
                )
                reader = _Reader(module, names.get(module, "?"), len(args) == 1, None)
                if continues:
                    reader.output = output
                    watch.watch(output)
                readers.setdefault(id(arg), []).append(reader)

        def finished(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            seen.append(output)
            if len(seen) == 1 and isinstance(output, torch.Tensor):
                watch.watch(output)
                watch.derive(output)

        handles = [m.register_forward_pre_hook(called, with_kwargs=True) for m in modules]
        handles += [m.register_forward_pre_hook(enter) for m in leaves]
        handles += [m.register_forward_hook(leave) for m in leaves]
        handles += [m.register_forward_hook(returned) for m in modules]
        handles.append(layer.register_forward_hook(finished))
        try:
            with watch:
                run_model()
        finally:
            for handle in handles:
                handle.remove()
        if len(seen) != 1 or not isinstance(seen[0], torch.Tensor):
            raise NoShortcut("the layer did not return one tensor exactly once")
        output = seen[0]
        if output.dim() < 3 or output.shape[0] != 1:
            raise NoShortcut(f"the layer's output {tuple(output.shape)} is not (1, C, ...)")
        first = readers.get(id(output), [])
        if not first:
            raise NoShortcut("no module reads the layer's output")
        outside = _outside(watch, output, first)
        if outside:
            raise NoShortcut(f"the layer's output is also read by {outside} outside a module")
        probe = Delta(output[:, :1].clone(), torch.zeros(1, dtype=torch.long), output.shape[1])
        chains = [_follow(reader, readers, watch, module_calls, probe) for reader in first]
        # and the chains' own modules (the end's hook subtracts from the replayed output)
        own = [module for chain in chains for module in chain.modules]
        return cls(chains, [*_memoisable(model, names, module_calls, chains), *own])

    def deltas(self, activation: torch.Tensor, channels: torch.Tensor, offset: int) -> torch.Tensor:
        """``(offset + n, Σ numel)``: per copy, what zeroing ``channels[j]`` of
        ``activation`` (``(1, C, *spatial)``) subtracts at every chain's end, flattened and
        concatenated; the first ``offset`` copies subtract nothing (unablated controls)."""
        values = activation[0, channels].unsqueeze(1)
        start = channels.to(device=activation.device, dtype=torch.long)
        parts = []
        for chain in self.chains:
            delta = Delta(values, start, int(activation.shape[1]))
            for module in chain.modules:
                delta = through(module, delta)  # type: ignore[assignment]  # (found so)
            parts.append(delta.full().reshape(len(channels), -1))
        packed = torch.cat(parts, dim=1)
        if offset:
            packed = torch.cat([packed.new_zeros(offset, packed.shape[1]), packed])
        return packed

    def split(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """One copy's packed differences (``(Σ numel,)``) as a tensor per chain end."""
        sizes = [chain.numel for chain in self.chains]
        return [
            part.view(chain.shape)
            for part, chain in zip(packed.split(sizes), self.chains, strict=True)
        ]

    @property
    def convolves(self) -> bool:
        """Whether a chain has a convolution (what the shortcut saves most on)."""
        return any(isinstance(m, CONVOLUTIONS) for chain in self.chains for m in chain.modules)

    def describe(self, names: dict[nn.Module, str] | None = None) -> str:
        chains = "; ".join(" → ".join(chain.names) for chain in self.chains)
        if names is None or not self.memoisable:
            return chains
        kept = ", ".join(names.get(module, "?") for module in self.memoisable)
        return f"{chains}; memoised: {kept}"

    @contextmanager
    def memoised(self, memo: dict[nn.Module, Any]) -> Iterator[None]:
        """Within the block, each module of :attr:`memoisable` returns its output stored in
        ``memo`` without running, or runs and stores it there (first call of an image).

        Their outputs do not depend on the ablations (they read nothing computed from the
        layer's output, and contain no chain), so a chunk after the first needs only the
        modules that do: at 1024², DeepLabV3+'s encoder is ~80 % of a forward pass. The
        module's instance ``forward`` attribute is set for the block and restored (deleted,
        or the user's own put back) on exit, also after an exception; hooks still run."""
        saved = [(module, module.__dict__.get("forward", _ABSENT)) for module in self.memoisable]
        try:
            for module, own in saved:
                original = module.forward if own is _ABSENT else own
                module.forward = _memo_forward(module, original, memo)
            yield
        finally:
            for module, own in saved:
                if own is _ABSENT:
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = own


_ABSENT = object()


def _memo_forward(
    module: nn.Module, original: Callable[..., Any], memo: dict[nn.Module, Any]
) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        if module in memo:
            return memo[module]
        output = original(*args, **kwargs)
        memo[module] = output
        return output

    return forward


def _memoisable(
    model: nn.Module,
    names: dict[nn.Module, str],
    module_calls: dict[nn.Module, _ModuleCall],
    chains: Sequence[Chain],
) -> list[nn.Module]:
    """The largest modules whose output does not depend on an ablation: called once, with
    no argument computed from the layer's output, containing no chain module, returning a
    tensor or a list / tuple of them; and not shared (one name in the model)."""
    in_chains = {module for chain in chains for module in chain.modules}
    counts: dict[nn.Module, int] = {}
    for _name, module in model.named_modules(remove_duplicate=False):
        counts[module] = counts.get(module, 0) + 1

    def eligible(module: nn.Module) -> bool:
        record = module_calls.get(module)
        return (
            module is not model
            and record is not None
            and record.calls == 1
            and not record.reads_derived
            and counts[module] == 1
            and _tensor_output(record.output)
            and not any(inner in in_chains for inner in module.modules())
        )

    chosen = []
    for module, name in names.items():
        if not eligible(module):
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        if not eligible(parent):
            chosen.append(module)
    return chosen


def _tensor_output(output: Any) -> bool:
    if isinstance(output, torch.Tensor):
        return True
    return isinstance(output, list | tuple) and all(isinstance(o, torch.Tensor) for o in output)


def _global_hooks() -> bool:
    """Whether ``nn.modules.module.register_module_forward_hook`` (or its pre-hook twin)
    has hooks that would run on every module (private registries, read defensively)."""
    module = torch.nn.modules.module
    names = ("_global_forward_hooks", "_global_forward_pre_hooks")
    return any(bool(getattr(module, name, None)) for name in names)


def _outside(watch: _Watch, tensor: torch.Tensor, readers: Sequence[_Reader]) -> str:
    """The operations reading ``tensor`` outside the modules ``readers`` ("" if none)."""
    inside = {reader.module for reader in readers}
    names = [name for module, name in watch.operations[id(tensor)] if module not in inside]
    return ", ".join(sorted(set(names)))


def _follow(
    reader: _Reader,
    readers: dict[int, list[_Reader]],
    watch: _Watch,
    calls: dict[nn.Module, _ModuleCall],
    probe: Delta,
) -> Chain:
    """The longest cheap linear chain that starts with ``reader`` (at least ``reader``)."""
    modules: list[nn.Module] = []
    names: list[str] = []
    shape: tuple[int, ...] = ()
    delta: Delta | None = probe
    current = reader
    while True:
        usable = current.single and current.output is not None and calls[current.module].calls == 1
        after = through(current.module, delta) if usable and delta is not None else None
        if after is None:
            if not modules:
                raise NoShortcut(
                    f"{current.name} ({type(current.module).__name__}) reads the layer's "
                    "output and is not a linear module run once (without hooks of its own)"
                )
            break
        assert current.output is not None
        modules.append(current.module)
        names.append(current.name)
        shape = tuple(current.output.shape)
        delta = after
        following = readers.get(id(current.output), [])
        if len(following) != 1 or _outside(watch, current.output, following):
            break
        current = following[0]
    return Chain(tuple(modules), tuple(names), shape)
