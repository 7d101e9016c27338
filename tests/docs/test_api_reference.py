"""The API reference is generated from ``__all__`` and current; every public name has a complete docstring.

"Complete" (issue 19): a docstring, with ``Args:`` when the name takes arguments (a function's parameters, a class's
constructor arguments; ``Attributes:`` for dataclasses and named tuples) and ``Returns:`` (or ``Yields:``) when a
function returns a value. Constants are documented by the string literal under their assignment, which is what
mkdocstrings renders. Every public name appears in the reference: as its own entry, or as a link to the page that
documents the same object.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("api_reference", ROOT / "docs" / "scripts" / "api_reference.py")
api_reference = importlib.util.module_from_spec(_spec)
sys.modules["api_reference"] = api_reference
_spec.loader.exec_module(api_reference)

ENTRIES = api_reference.all_public_names()


class _MkdocsLoader(yaml.SafeLoader):
    """Reads mkdocs.yml without running its ``!!python/...`` tags (the toc slugify function)."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_MkdocsLoader)


def _returns_value(func) -> bool:
    """Whether a function returns something: its annotation, else a ``return <value>`` in its own body."""
    annotation = inspect.signature(func).return_annotation
    if annotation is not inspect.Signature.empty:
        return annotation not in (None, "None", type(None))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, nested):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                return True
            if walk(child):
                return True
        return False

    return walk(body)


def _takes_arguments(callable_obj) -> bool:
    try:
        params = inspect.signature(callable_obj).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params
    )


def docstring_problems(entry) -> list[str]:
    """What is missing from one public name's docstring (empty when it is complete)."""
    obj, kind = entry.obj, entry.kind
    if kind == "attribute":
        static = api_reference.static_object(entry.target)
        doc = static.docstring.value if static is not None and static.docstring else ""
        return [] if doc.strip() else ["no docstring (a string literal under the assignment)"]
    if kind == "module":
        return [] if (obj.__doc__ or "").strip() else ["no module docstring"]
    if kind == "class":
        own = obj.__dict__.get("__doc__") or ""
        init = obj.__dict__.get("__init__")
        doc = own + "\n" + ((init.__doc__ or "") if isinstance(init, types.FunctionType) else "")
        if not own.strip():
            return ["no class docstring"]
        problems = []
        record = (
            dataclasses.is_dataclass(obj)
            or (issubclass(obj, tuple) and hasattr(obj, "_fields"))
            or hasattr(obj, "model_fields")  # a pydantic model: its fields are its arguments
        )
        if issubclass(obj, BaseException) and not isinstance(init, types.FunctionType):
            return problems  # an exception taking a message, as every exception does
        if _takes_arguments(obj) and "Args:" not in doc and not (record and "Attributes:" in doc):
            problems.append("takes arguments but has no Args: section")
        return problems
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["no docstring"]
    problems = []
    if _takes_arguments(obj) and "Args:" not in doc:
        problems.append("takes arguments but has no Args: section")
    if _returns_value(obj) and "Returns:" not in doc and "Yields:" not in doc:
        problems.append("returns a value but has no Returns: section")
    return problems


def test_api_pages_are_current():
    stale = [
        path.relative_to(ROOT).as_posix()
        for path, text in api_reference.render_all().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"stale API pages {stale}: run `python docs/scripts/api_reference.py --write`"


def test_every_public_name_appears_in_the_api_reference():
    pages = {m: (api_reference.API_DIR / f).read_text() for m, (f, _) in api_reference.PUBLIC_MODULES.items()}
    missing = [
        e.public
        for e in ENTRIES
        if f'heading: "{e.public}"' not in pages[e.module] and f"## `{e.public}`" not in pages[e.module]
    ]
    assert not missing
    # And the pages are in the site's navigation.
    nav = mkdocs_config()["nav"]
    api = next(item["API reference"] for item in nav if "API reference" in item)
    assert sorted(page for item in api for page in item.values()) == sorted(
        f"api/{f}" for f, _ in api_reference.PUBLIC_MODULES.values()
    )


def test_every_public_name_has_a_complete_docstring():
    problems = {e.public: p for e in ENTRIES if (p := docstring_problems(e))}
    coverage = 1 - len(problems) / len(ENTRIES)
    assert not problems, f"docstring coverage {coverage:.1%} of {len(ENTRIES)} public names; missing: {problems}"


def test_the_checker_finds_what_is_missing():
    def undocumented(x):
        return x

    def documented(x: int) -> int:
        """Double.

        Args:
            x: a number.

        Returns:
            Twice ``x``.
        """
        return 2 * x

    def no_returns(x: int) -> int:
        """Double.

        Args:
            x: a number.
        """
        return 2 * x

    def nothing(x):
        print(x)

    make = lambda f: api_reference.PublicName("m", f.__name__, f, f"m.{f.__name__}")  # noqa: E731
    assert docstring_problems(make(undocumented)) == ["no docstring"]
    assert docstring_problems(make(documented)) == []
    assert docstring_problems(make(no_returns)) == ["returns a value but has no Returns: section"]
    assert _returns_value(undocumented) and not _returns_value(nothing)


@pytest.mark.parametrize("page", sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")))
def test_every_page_is_in_the_navigation(page):
    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    nav = set(pages(mkdocs_config()["nav"]))
    assert page in nav, f"docs/{page} is not linked from mkdocs.yml's nav"
