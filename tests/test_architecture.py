"""The layering written down in ARCHITECTURE.md, checked: which package may import which,
no import cycle between camlens modules, and modules of a readable size.

Imports are read from the source with ``ast`` (module-level and local imports alike), so a
cycle cannot hide behind an import inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "camlens"

#: The layers, lowest first. A module may import modules of its own layer or lower layers.
LAYERS: dict[str, tuple[str, ...]] = {
    "models": ("camlens.models",),
    "core": (
        "camlens._renamed",
        "camlens.atomic",
        "camlens.errors",
        "camlens.capture",
        "camlens.outputs",
        "camlens.reshape",
        "camlens.tokens",
        "camlens.layers",
        "camlens.targets",
        "camlens.target_sets",
        "camlens.postprocess",
        "camlens.masks",
        "camlens.methods",
        "camlens.steps",
        "camlens.engine",
        "camlens.explanation",
        "camlens.explainer",
        "camlens.familiar",
        "camlens.familiar_extension",
        "camlens.familiar_more",
        "camlens.wrappers",
        "camlens.sess",
        "camlens.api",
        "camlens.segmentation",
        "camlens.image",
        "camlens.files",
        "camlens.loading",
    ),
    "metrics": ("camlens.metrics", "camlens.evaluation"),
    "compat": ("camlens.compat",),
    "report": ("camlens.report",),
    "jobs": ("camlens.jobs", "camlens.slide", "camlens.distributed"),
    "front ends": ("camlens.demo", "camlens.cli"),
}
ORDER = list(LAYERS)
#: Where a module may import from a higher layer, and why (none today).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}
#: Soft limit on a module's length ("one concept per module").
MAX_LINES = 420
#: Longer modules and the reason they are allowed to be.
LONG_MODULES = {
    "camlens.metrics.faithfulness": "deletion, insertion, ROAD and confidence share one scorer",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            nodes.update(id(child) for statement in node.body for child in ast.walk(statement))
    return nodes


def _imports(name: str, path: Path, known: set[str], *, runtime_only: bool = False) -> set[str]:
    """camlens modules imported by ``name`` (``from camlens.x import y`` counts ``camlens.x.y``
    when that is a module, else ``camlens.x``); ``runtime_only`` leaves out the imports
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_only(tree) if runtime_only else set()
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def _layer(module: str) -> str:
    for layer, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and ARCHITECTURE.md")


def _graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(name, path, known, runtime_only=runtime_only)
        for name, path in modules.items()
    }


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        if module != "camlens":
            _layer(module)


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for module, imported in _graph().items():
        if module == "camlens":
            continue
        for target in imported:
            if target == "camlens" or ORDER.index(_layer(target)) <= ORDER.index(_layer(module)):
                continue
            if (module, target) not in ALLOWED_UPWARD:
                wrong.append(f"{module} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    """Package ``__init__`` modules re-export their children, so an edge into a package's
    own ``__init__`` from inside it is ignored, and so are imports for annotations only
    (``if TYPE_CHECKING:``); every other cycle fails."""
    graph = _graph(runtime_only=True)

    def edges(module: str) -> set[str]:
        return {t for t in graph[module] if not (module.startswith(t + ".") or t == "camlens")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges(module)):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_modules_stay_readable() -> None:
    long = {
        name: lines
        for name, path in _modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and name not in LONG_MODULES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them, or say why): {long}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The import reader sees a local import and a relative one."""
    source = tmp_path / "probe.py"
    source.write_text(
        "def f():\n    from camlens.report import Report\nfrom . import engine\n"
        "if TYPE_CHECKING:\n    import camlens.masks\n"
    )
    known = {"camlens.report", "camlens.engine", "camlens.masks"}
    assert _imports("camlens.steps", source, known) == known
    assert _imports("camlens.steps", source, known, runtime_only=True) == known - {"camlens.masks"}
