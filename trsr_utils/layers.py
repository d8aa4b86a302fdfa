"""The package's layers, and the imports between its modules that break them (issue 28's rule, as a command).

Each module sits on one floor; a module may import its own floor and the floors below, at the top of the file.
``python -m trsr_utils.layers`` lists every import that points up a floor or sits inside a function; the test
``tests/unit/test_layers.py`` holds the list to what ``LAYER_DEBT`` records, so the debt can only shrink.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
FLOORS = ("core", "store", "method", "stages", "report", "tools")
# module (dotted, without the package name) -> floor; a package folder stands for its modules
LAYER: dict[str, str] = {
    "config": "core", "io": "core", "progress": "core", "distributed": "core", "layers": "core",
    "stages": "store", "callcache": "store",
    "score_store": "method", "text": "method", "prompts": "method", "chunking": "method", "llm": "method",
    "summarize": "method",
    "summary_checks": "method", "scoring": "method", "listwise": "method", "retrieval": "method", "sft": "method",
    "metrics": "method", "significance": "method", "user_prompts": "method", "audit": "method",
    "data": "method", "baselines": "method", "compare": "method",
    "evaluation": "stages", "ablation": "stages", "beyond": "stages",
    "plots": "report", "widgets": "report", "counterfactual": "report",
    "pipeline": "tools", "preflight": "tools", "bench": "tools", "plan": "tools", "site": "tools", "results_page": "tools",
}


@dataclass(frozen=True)
class Violation:
    module: str  # importing module, dotted within the package
    target: str  # imported module, dotted within the package
    line: int
    kind: str  # "upward" or "in a function"

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target} ({self.kind})"


def floor(module: str) -> int:
    """The floor of a dotted module name (its first part decides: ``data.mind`` is on ``data``'s floor)."""
    head = module.split(".")[0]
    if head not in LAYER:
        raise KeyError(f"trsr_utils.{module} has no floor in trsr_utils.layers.LAYER: add it")
    return FLOORS.index(LAYER[head])


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The package modules an import statement names (relative or absolute), dotted within the package."""
    if isinstance(node, ast.Import):
        return [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("trsr_utils.")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        if not (node.module or "").startswith("trsr_utils"):
            return []
        base = (node.module or "").split(".")[1:]
    else:
        here = module.split(".")
        package = here if is_package else here[:-1]  # the folder a relative import starts from
        base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    if not node.module:  # from . import a, b: each name is a module
        return [".".join(base + [a.name]) for a in node.names]
    return [".".join(base)]


def violations(package: Path = PACKAGE) -> list[Violation]:
    """Every import of a package module that points up a floor, or sits inside a function or class body."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path)
        if not module:
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py"):
                if not target or target.split(".")[0] == module.split(".")[0]:
                    continue  # a module of its own folder
                if floor(target) > floor(module):
                    found.append(Violation(module, target, node.lineno, "upward"))
                elif id(node) not in top and not _type_checking(tree, node):
                    found.append(Violation(module, target, node.lineno, "in a function"))
    return found


def _type_checking(tree: ast.Module, node: ast.AST) -> bool:
    """Imports under ``if TYPE_CHECKING:`` at the top of a file run for type checkers only."""
    return any(isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test) and node in list(ast.walk(n))
               for n in tree.body)


def main() -> int:
    found = violations()
    for v in found:
        print(v)
    upward = sum(v.kind == "upward" for v in found)
    print(f"{len(found)} imports break the layers: {upward} upward, {len(found) - upward} inside a function",
          file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
