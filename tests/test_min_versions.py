"""setup.py states the versions the code really needs: every module's syntax and evaluated annotations fit the
declared minimum Python, and every torch API the package calls exists in the declared minimum torch."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = (ROOT / "setup.py").read_text(encoding="utf-8")

# torch APIs the package uses that are newer than torch 2.0, with the first release that has them.
TORCH_API_FLOORS = {
    "torch.compiler.is_compiling": (2, 3),
    "torch.compiler.is_exporting": (2, 7),
    "nn.RMSNorm": (2, 4),
    "torch.sym_min": (2, 2),
    "torch.export": (2, 1),
}


def _floor(requirement: str) -> tuple:
    match = re.search(requirement + r'>=(\d+)\.(\d+)', SETUP)
    assert match, f"setup.py declares no lower bound for {requirement}"
    return int(match.group(1)), int(match.group(2))


def _modules():
    return sorted((ROOT / "smp_like").rglob("*.py"))


def test_every_module_parses_at_the_declared_minimum_python():
    python = _floor('python_requires="')
    for path in _modules():
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=python)


def _evaluated_union_annotations(tree: ast.Module) -> list:
    """``X | Y`` annotations that Python evaluates at definition time (no ``from __future__ import annotations``)."""
    future = any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    if future:
        return []
    found = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in args.args + args.kwonlyargs + args.posonlyargs] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if annotation is not None and any(
                isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)
            ):
                found.append(node.lineno)
    return found


def test_union_annotations_need_python_310_and_setup_says_so():
    users = [p.name for p in _modules() if _evaluated_union_annotations(ast.parse(p.read_text(encoding="utf-8")))]
    if users:
        assert _floor('python_requires="') >= (3, 10), f"`X | Y` annotations (Python 3.10+) in {users}"


def test_torch_apis_exist_in_the_declared_minimum_torch():
    source = "\n".join(p.read_text(encoding="utf-8") for p in _modules())
    used = {api: floor for api, floor in TORCH_API_FLOORS.items() if re.search(re.escape(api) + r"\b", source)}
    assert "torch.compiler.is_exporting" in used  # the check sees the package's code
    needed = max(used.values())
    assert _floor('"torch') >= needed, f"torch APIs {used} need torch>={needed[0]}.{needed[1]}"


def test_checker_catches_a_union_annotation():
    assert _evaluated_union_annotations(ast.parse("def f(x: int | None) -> None: ...")) == [1]
    assert _evaluated_union_annotations(ast.parse("from __future__ import annotations\ndef f(x: int | None): ...")) == []
