"""Static import graph of the ``smp_like`` package: every ``import`` / ``from ... import`` statement of every module,
at module level and inside functions and classes, read with ``ast`` (nothing is executed).

Run as a script to print the import cycles (strongly connected components) and any layer violation:

    python tests/import_graph.py [PACKAGE_DIR]
"""
import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]


def module_files(package_dir: Path) -> Dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under ``package_dir``."""
    base = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(importer: str, is_package: bool, node: ast.AST, modules: Set[str]) -> List[str]:
    targets: List[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            targets.append(alias.name)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            # ``from pkg import submodule`` imports the submodule; ``from pkg import name`` imports pkg.
            targets.append(candidate if candidate in modules else base)
    found = []
    for target in targets:
        # ``import a.b.c`` of a module we do not know (an attribute path): keep its longest known prefix.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != importer:
            found.append(target)
    return found


def import_graph(package_dir: Path = ROOT / "smp_like") -> Dict[str, Set[str]]:
    """``{module: modules of the package it imports}``, module level and function level alike."""
    files = module_files(package_dir)
    names = set(files)
    graph: Dict[str, Set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_resolve(name, path.name == "__init__.py", node, names))
        graph[name] = edges
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted by first module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def read_layers(doc: Path = ROOT / "docs" / "architecture.md") -> Dict[str, int]:
    """The layer table of docs/architecture.md: ``{top-level part: layer number}``.

    The table's rows look like ``| 2 | `decoders`, `generative` | ... |``; a part may import parts of its own or a
    lower layer only.
    """
    layers: Dict[str, int] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if match:
            for part in re.findall(r"`([\w.]+)`", match.group(2)):
                layers[part] = int(match.group(1))
    return layers


def part_of(module: str) -> str:
    """``smp_like.decoders.unet.model`` -> ``decoders``; ``smp_like.cli`` -> ``cli``; the package root -> ``smp_like``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(graph: Dict[str, Set[str]], layers: Dict[str, int]) -> List[Tuple[str, str]]:
    """Imports that reach up (or sideways into an unlisted part): ``(importer, imported)`` pairs."""
    bad = []
    for importer, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_part, target_part = part_of(importer), part_of(target)
            if source_part == target_part:
                continue
            if source_part not in layers or target_part not in layers or layers[target_part] > layers[source_part]:
                bad.append((importer, target))
            elif layers[target_part] == layers[source_part]:
                bad.append((importer, target))  # parts of one layer are independent of each other
    return bad


def main() -> int:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "smp_like"
    graph = import_graph(package)
    found = cycles(graph)
    print(f"{len(graph)} modules, {sum(len(v) for v in graph.values())} import edges, {len(found)} import cycles")
    for component in found:
        print(f"  cycle of {len(component)}: {', '.join(component)}")
    doc = package.parent / "docs" / "architecture.md"
    if doc.exists():
        bad = layer_violations(graph, read_layers(doc))
        print(f"{len(bad)} layer violations")
        for importer, target in bad:
            print(f"  {importer} -> {target}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
