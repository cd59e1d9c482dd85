"""``rnnlab list``: the experiments of ``experiments/*.py`` and their variants.

Read from the files' docstrings with :mod:`ast`, without importing them (an experiment may
need data or packages that are not installed): the first line of the module docstring
says what the experiment is, the docstring of ``get_config`` names the variants.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    path: str
    title: str
    variants: str


def default_dir() -> str:
    """``./experiments`` when it exists, else the repository's beside the package."""
    here = Path("experiments")
    if here.is_dir():
        return str(here)
    return str(Path(__file__).resolve().parents[2] / "experiments")


# reStructuredText roles and literals, shown as plain text: ":data:`FLAGS`" -> "FLAGS".
_RST = (re.compile(r":\w+:`~?([^`]*)`"), re.compile(r"``([^`]*)``"))


def _one_line(text: str) -> str:
    for pattern in _RST:
        text = pattern.sub(r"\1", text)
    return " ".join(text.split())


def experiments(directory: str) -> list[Experiment]:
    """Every ``*.py`` in ``directory`` that defines ``get_config``, sorted by name."""
    out = []
    for path in sorted(Path(directory).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError:
            continue
        get_config = next(
            (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_config"),
            None,
        )
        if get_config is None:
            continue
        doc = ast.get_docstring(tree) or ""
        title = _one_line(doc.split("\n\n", 1)[0]) if doc else ""
        variants = _one_line(ast.get_docstring(get_config) or "")
        for listed in ("VARIANTS", "FLAGS"):  # "One of :data:`VARIANTS`": list them
            named = _literal(tree, listed)
            if named and listed in variants:
                variants = variants.replace(listed, ", ".join(f'"{v}"' for v in named), 1)
        out.append(Experiment(path.stem, os.fspath(path), title, variants))
    return out


def _literal(tree: ast.Module, name: str) -> list[str]:
    """The keys (or items) of a module-level literal ``name = ...``, as strings."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value:
            if isinstance(node.value, ast.Dict):
                keys = node.value.keys
            elif isinstance(node.value, ast.Tuple | ast.List):
                keys = node.value.elts
            else:
                return []
            return [k.value for k in keys if isinstance(k, ast.Constant)]
    return []


def render(entries: list[Experiment], directory: str | None = None) -> str:
    """One block per experiment: name and title, then its variants, indented; last, the
    command that trains one (by name for the shipped experiments, else by path)."""
    width = max(len(e.name) for e in entries)
    lines = []
    for e in entries:
        lines.append(f"{e.name:<{width}}  {e.title}")
        if e.variants:
            lines.append(f"{'':<{width}}  variants: {e.variants}")
    from rnnlab.train.config import SHIPPED_EXPERIMENTS

    shipped = directory is None or Path(directory).resolve() == SHIPPED_EXPERIMENTS
    what = "<name>" if shipped else os.path.join(directory, "<name>.py")
    lines.append(f"\ntrain one: rnnlab train --config {what}[:variant] --workdir DIR")
    return "\n".join(lines)
