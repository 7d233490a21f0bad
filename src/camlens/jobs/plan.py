"""What a job will do, decided before any pixel is decoded: the items, their output names,
their batches, and which batches a shard takes.

Image sizes come from the file headers (:func:`camlens.jobs.reader.probe_size`), so a file
that cannot be read, or is larger than the pixel limit, is known at once and costs nothing.
Items of the same size go into batches of at most ``batch_size``, in natural file order.

The plan depends only on the list of inputs and the settings — never on what an earlier,
interrupted run finished — so a resumed run and every shard see exactly the batches of an
uninterrupted run, and the same images go through the model together. (A model's numbers
may depend on the batch it runs in; this keeps outputs byte-identical.) A shard takes the
batches whose first item's output name hashes to its index: a stable share, whatever the
other shards do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from camlens.errors import CamlensError
from camlens.files import collect_images
from camlens.jobs.folder import UNSHARDED, Shard
from camlens.jobs.names import output_keys

__all__ = ["Batch", "Item", "Plan", "make_plan"]


@dataclass(frozen=True)
class Item:
    """One input: its position in natural order, its path, its output name."""

    index: int
    path: Path
    key: str

    @property
    def source(self) -> str:
        """The path as found (what reports and summaries show)."""
        return str(self.path)


@dataclass(frozen=True)
class Batch:
    """Items of one size that go through the model together."""

    items: tuple[Item, ...]
    size: tuple[int, int]

    @property
    def key(self) -> str:
        """The batch's name: its first item's output name."""
        return self.items[0].key


@dataclass
class Plan:
    """The batches of this shard, and the inputs already known to be unusable."""

    batches: list[Batch]
    unusable: list[tuple[Item, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    total_items: int = 0
    #: how many readable images of each size the whole run has (every shard alike)
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def items(self) -> list[Item]:
        """The items this shard explains, in natural order."""
        return sorted((item for batch in self.batches for item in batch.items), key=_index)


def _index(item: Item) -> int:
    return item.index


def _shard_of(key: str, count: int) -> int:
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % count


def make_plan(
    arguments: Iterable[str],
    *,
    batch_size: int,
    probe: Callable[[Path], tuple[int, int]],
    size: tuple[int, int] | None = None,
    shard: Shard = UNSHARDED,
) -> Plan:
    """The plan for ``arguments`` (files, folders, globs).

    Args:
        batch_size: images per forward pass.
        probe: the (H, W) an image will have when read, from its header; raises
            :class:`~camlens.errors.CamlensError` for an unusable file (the reason is kept).
        size: every image is resized to this (H, W) (``--size``); the probe still runs, to
            refuse unreadable and oversized files before decoding.
        shard: which share of the batches this process takes.
    """
    files, missing = collect_images(list(arguments))
    keys = output_keys([str(path) for path in files])
    items = [
        Item(index, path, key) for index, (path, key) in enumerate(zip(files, keys, strict=True))
    ]
    groups: dict[tuple[int, int], list[Item]] = {}
    unusable: list[tuple[Item, str]] = []
    for item in items:
        try:
            found = probe(item.path)
        except CamlensError as error:
            unusable.append((item, str(error)))
            continue
        groups.setdefault(tuple(size) if size is not None else tuple(found), []).append(item)
    batches = [
        Batch(tuple(members[start : start + batch_size]), group_size)
        for group_size, members in groups.items()
        for start in range(0, len(members), batch_size)
    ]
    batches.sort(key=lambda batch: batch.items[0].index)
    mine = [batch for batch in batches if _shard_of(batch.key, shard.count) == shard.index]
    unusable = [entry for entry in unusable if _shard_of(entry[0].key, shard.count) == shard.index]
    sizes = {group_size: len(members) for group_size, members in groups.items()}
    return Plan(mine, unusable, missing if shard.index == 0 else [], len(items), sizes)
