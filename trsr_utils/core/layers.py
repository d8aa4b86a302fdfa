"""The package's layers, and the imports between its modules that break them (issue 28's rule, as a command).

Each module sits on one floor; a module may import its own floor and the floors below, at the top of the file.
``python -m trsr_utils layers`` lists every import that points up a floor or sits inside a function; the test
``tests/unit/test_layers.py`` holds the list to what ``LAYER_DEBT`` records, so the debt can only shrink.

Not a notebook's subject: docs/design.md, "The package's floors".
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
FLOORS = ("core", "store", "method", "stages", "report", "tools")
# A module's floor is its folder's (``trsr_utils/method/llm.py`` is on "method"); data and baselines sit on the
# method floor, the command-line entry (``__main__``) on the tools floor.
LAYER: dict[str, str] = {**{f: f for f in FLOORS}, "data": "method", "baselines": "method", "__main__": "tools"}


@dataclass(frozen=True)
class Violation:
    module: str  # importing module, dotted within the package
    target: str  # imported module, dotted within the package
    line: int
    kind: str  # "upward", "in a function" or "in a circle"

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target} ({self.kind})"


def floor(module: str) -> int:
    """The floor of a dotted module name (its first part decides: ``data.mind`` is on ``data``'s floor)."""
    head = module.split(".")[0]
    if head not in LAYER:
        raise KeyError(f"trsr_utils.{module} has no floor in trsr_utils.core.layers.LAYER: add it")
    return FLOORS.index(LAYER[head])


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_package: bool, root: str = "trsr_utils") -> list[str]:
    """The package modules an import statement names (relative or absolute), dotted within the package."""
    if isinstance(node, ast.Import):
        return [a.name.split(".", 1)[1] for a in node.names if a.name.startswith(root + ".")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        if (node.module or "").split(".")[0] != root:
            return []
        base = (node.module or "").split(".")[1:]
    else:
        here = module.split(".")
        package = here if is_package else here[:-1]  # the folder a relative import starts from
        base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    subs = [".".join(base + [a.name]) for a in node.names]
    if not node.module or all(_exists(m) for m in subs):  # from x import a, b where each name is a module
        return subs
    return [".".join(base)]


def _exists(module: str) -> bool:
    path = PACKAGE.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations(package: Path = PACKAGE) -> list[Violation]:
    """Every import of a package module that points up a floor, sits inside a function or class body, or closes
    a circle of imports (modules that need each other to load)."""
    found, graph = [], {}
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path)
        if not module:
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        graph.setdefault(module, {})
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py", package.name):
                if not target or target == module:
                    continue
                if floor(target) > floor(module):
                    found.append(Violation(module, target, node.lineno, "upward"))
                elif id(node) not in top and not _type_checking(tree, node):
                    found.append(Violation(module, target, node.lineno, "in a function"))
                else:
                    graph[module].setdefault(target, node.lineno)
    for circle in circles(graph):
        for module in circle:
            for target, line in graph[module].items():
                if target in circle:
                    found.append(Violation(module, target, line, "in a circle"))
    return found


def circles(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm): each is a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue  # a package folder without a module of that name
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _type_checking(tree: ast.Module, node: ast.AST) -> bool:
    """Imports under ``if TYPE_CHECKING:`` at the top of a file run for type checkers only."""
    return any(isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test) and node in list(ast.walk(n))
               for n in tree.body)


def main() -> int:
    found = violations()
    for v in found:
        print(v)
    kinds = {kind: sum(v.kind == kind for v in found) for kind in ("upward", "in a function", "in a circle")}
    print(f"{len(found)} imports break the layers: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()),
          file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
