"""The package's layers import one way: scan and kernels, cells, regularisers, layers, then
models, tasks, the engine and the command line; data, parallel and optim are side branches
that the upper layers use. Every import counts, including those inside functions and
``importlib.import_module("rnnlab....")`` strings, so a lazy import cannot hide an upward
dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rnnlab"

# Lowest first; a module may import its own layer and the layers below it.
ORDER = (
    ("rnnlab.scan", "rnnlab.fused", "rnnlab.target", "rnnlab.logs", "rnnlab.options"),
    ("rnnlab.cells",),
    ("rnnlab.regularizers",),
    ("rnnlab.layers",),
    ("rnnlab", "rnnlab.models", "rnnlab.diagnostics", "rnnlab.interop"),
    ("rnnlab.tasks",),
    ("rnnlab.train",),
    ("rnnlab.cli",),
)
SIDE = ("rnnlab.data", "rnnlab.parallel", "rnnlab.optim")
# The highest core layer a side branch may use (pure maths: optim's averaging transforms).
SIDE_MAY_USE = 2
# The lowest layer that may use the side branches (task glue, the engine, the CLI).
USES_SIDE_FROM = 5


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every rnnlab module ``path`` imports, at any depth of the file."""
    name = module_name(path, root)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package(name, path).split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # `from rnnlab import models` imports the submodule rnnlab.models (every import
            # runs the top-level package, so `from rnnlab import x` is not a use of it).
            if base != "rnnlab":
                out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.add(str(node.args[0].value))
    return {m for m in out if m == "rnnlab" or m.startswith("rnnlab.")}


def _known(name: str, root: Path) -> bool:
    rel = name.split(".")[1:]
    return (
        not rel or root.joinpath(*rel).with_suffix(".py").exists() or root.joinpath(*rel).is_dir()
    )


def layer_of(name: str) -> tuple[str, int]:
    """``("side", -1)`` or ``("chain", rank)`` of the package a module belongs to."""
    for prefix in SIDE:
        if name == prefix or name.startswith(prefix + "."):
            return "side", -1
    best = None
    for rank, prefixes in enumerate(ORDER):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])
            ):
                best = (prefix, rank)
    if best is None:
        raise AssertionError(f"{name} belongs to no layer: add its package to ORDER or SIDE")
    return "chain", best[1]


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        src = module_name(path, root)
        kind, rank = layer_of(src)
        for dst in sorted(imports_of(path, root)):
            if not _known(dst, root):
                continue  # an attribute imported from a module, e.g. rnnlab.models.build
            dkind, drank = layer_of(dst)
            if kind == "chain" and dkind == "chain" and drank > rank:
                found.append(f"{src} (layer {rank}) imports {dst} (layer {drank})")
            elif kind == "chain" and dkind == "side" and rank < USES_SIDE_FROM:
                found.append(f"{src} (layer {rank}) imports the side branch {dst}")
            elif kind == "side" and dkind == "chain" and drank > SIDE_MAY_USE:
                found.append(f"side branch {src} imports {dst} (layer {drank})")
    return found


def test_imports_point_one_way_lazy_ones_included():
    assert violations() == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import rnnlab.train.loop\n", "rnnlab.layers.x (layer 3) imports rnnlab.train.loop"),
        ("def f():\n    from rnnlab.cli import main\n", "imports rnnlab.cli"),
        ("import importlib\nimportlib.import_module('rnnlab.models')\n", "imports rnnlab.models"),
        ("from rnnlab import data\n", "imports the side branch rnnlab.data"),
    ],
)
def test_the_check_finds_upward_imports(tmp_path, source, expected):
    # A fake package whose layers module imports upward, checked by the same code.
    fake = tmp_path / "rnnlab"
    for sub in ("layers", "train", "cli", "models", "data"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "train" / "loop.py").write_text("")
    (fake / "layers" / "x.py").write_text(source)
    found = violations(fake)
    assert any(expected in v for v in found), found
