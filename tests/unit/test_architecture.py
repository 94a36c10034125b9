"""The import direction of docs/architecture.md, enforced: stages import only stages
before them in the data flow (lazy imports inside functions count too), and no module
imports itself back through a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "miffi"
#: Layers in data-flow order; a module may import its own layer and those before it.
LAYERS = [
    {"errors", "atomic", "textfiles", "labels", "mrc", "device", "__init__"},
    {"intake"},
    {"preprocess"},
    {"classify"},
    {"export"},
    {"pipeline", "evaluate"},
    {"report"},
    {"review"},
    {"simulate", "train"},
    {"cli", "__main__"},
]


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def modules() -> dict[str, set[str]]:
    """Every miffi module and the miffi modules it imports."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("miffi"):
                imported |= {f"{node.module}.{a.name}" if node.module == "miffi" else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("miffi")}
        found[name] = {i for i in imported if i != "miffi.__version__"}
    return found


def test_imports_go_down_the_data_flow():
    upward = [(m, i) for m, imports in modules().items() for i in imports if layer(i) > layer(m)]
    assert upward == []


def test_no_import_cycles():
    graph = modules()

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and (seen.add(nxt) or reaches(nxt, target, seen))):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert cycles == []
