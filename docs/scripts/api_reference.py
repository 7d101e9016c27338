"""Generate the API reference pages (docs/api/*.md) from the public API: ``__all__`` of each public module.

Each public name becomes one mkdocstrings block (``::: path``) pointing at where the object is *defined* (most names
are exported lazily through a module ``__getattr__``, which a static reader such as griffe cannot follow), with the
public spelling (``smp_like.Unet``) as its heading. tests/docs/test_api_reference.py checks the committed pages are
what this script writes today and that every public name has a complete docstring.

    python docs/scripts/api_reference.py --write      # regenerate docs/api/
    python docs/scripts/api_reference.py --check      # exit 1 if a committed page is stale
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "docs" / "api"

# Public module -> (page file, title, one-line summary shown in the navigation's index).
PUBLIC_MODULES: dict[str, tuple[str, str]] = {
    "smp_like": ("smp_like.md", "Models and factory (`smp_like`)"),
    "smp_like.encoders": ("encoders.md", "Encoders (`smp_like.encoders`)"),
    "smp_like.losses": ("losses.md", "Losses (`smp_like.losses`)"),
    "smp_like.metrics": ("metrics.md", "Metrics (`smp_like.metrics`)"),
    "smp_like.training": ("training.md", "Training (`smp_like.training`)"),
    "smp_like.inference": ("inference.md", "Inference (`smp_like.inference`)"),
    "smp_like.generative": ("generative.md", "Generative models (`smp_like.generative`)"),
}


@dataclass(frozen=True)
class PublicName:
    """One public name: where it is exported, the object, and the dotted path griffe can read it at."""

    module: str
    name: str
    obj: object
    target: str

    @property
    def public(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def kind(self) -> str:
        if isinstance(self.obj, types.ModuleType):
            return "module"
        if inspect.isclass(self.obj):
            return "class"
        if callable(self.obj):
            return "function"
        return "attribute"


@functools.lru_cache(maxsize=1)
def static_package():
    """The package as griffe reads it from the source (what mkdocstrings renders)."""
    import griffe

    return griffe.load("smp_like", search_paths=[str(ROOT)], docstring_parser="google")


def static_object(path: str):
    """The griffe object at a dotted path (aliases followed), or None where static analysis cannot see it."""
    package = static_package()
    try:
        obj = package if path == "smp_like" else package[path[len("smp_like.") :]]
        return obj.final_target if obj.is_alias else obj
    except Exception:  # noqa: BLE001 - KeyError / AliasResolutionError: not visible statically
        return None


def _target(module: str, name: str, obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        defined_in = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", name)
        if defined_in and "<locals>" not in qualname:
            return f"{defined_in}.{qualname}"
    # Constants: griffe follows the static import (or reads the assignment) in the module; a value the module
    # makes at run time (a lazy attribute) is found where it is assigned, by identity.
    if static_object(f"{module}.{name}") is not None:
        return f"{module}.{name}"
    for mod_name, mod in sorted(sys.modules.items()):
        if mod_name.startswith("smp_like.") and mod is not None:
            for attr, value in vars(mod).items():
                static = static_object(f"{mod_name}.{attr}") if value is obj and not attr.startswith("_") else None
                if static is not None:
                    return static.path
    return f"{module}.{name}"


def public_names(module_name: str) -> list[PublicName]:
    """The public names of one module, in ``__all__`` order, resolved to where they are defined."""
    module = importlib.import_module(module_name)
    names = []
    for name in module.__all__:
        obj = getattr(module, name)
        names.append(PublicName(module_name, name, obj, _target(module_name, name, obj)))
    return names


def all_public_names() -> list[PublicName]:
    return [p for module in PUBLIC_MODULES for p in public_names(module)]


def homes() -> dict[str, str]:
    """Target path -> the public module whose page documents it.

    An object exported by several public modules (``smp_like.AE`` is ``smp_like.generative.AE``) is documented
    once, on the most specific module's page; the other pages link to it (one anchor per object).
    """
    home: dict[str, str] = {}
    for entry in all_public_names():
        if entry.kind == "module":
            continue
        current = home.get(entry.target)
        if current is None or len(entry.module) > len(current):
            home[entry.target] = entry.module
    return home


def render_page(module_name: str) -> str:
    """The Markdown of one API page: the module's docstring, then one mkdocstrings block per public name."""
    filename, title = PUBLIC_MODULES[module_name]
    lines = [
        f"# {title}",
        "",
        "<!-- Generated by docs/scripts/api_reference.py from the module's __all__; do not edit by hand. -->",
        "",
        f"::: {module_name}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    home = homes()
    for entry in public_names(module_name):
        if entry.kind == "module" and entry.target in PUBLIC_MODULES:
            page = PUBLIC_MODULES[entry.target][0]
            lines += [f"## `{entry.public}`", "", f"Documented on its own page: [{entry.target}]({page}).", ""]
            continue
        if entry.kind != "module" and home[entry.target] != module_name:
            other = home[entry.target]
            link = f"{PUBLIC_MODULES[other][0]}#{entry.target}"
            lines += [f"## `{entry.public}`", "", f"The same object as [`{other}.{entry.name}`]({link}).", ""]
            continue
        lines += [f"::: {entry.target}", "    options:", f'      heading: "{entry.public}"']
        lines += [f'      toc_label: "{entry.name}"']
        static = static_object(entry.target)
        if static is not None and not static.docstring and inspect.getdoc(entry.obj) and entry.kind == "function":
            # The docstring is assembled at import time (shared argument text): read it from the live object.
            lines += ["      force_inspection: true"]
        if entry.kind == "module":
            lines += ["      members: false"]
        lines += [""]
    return "\n".join(lines)


def render_all() -> dict[Path, str]:
    return {API_DIR / filename: render_page(module) for module, (filename, _) in PUBLIC_MODULES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="write docs/api/*.md")
    group.add_argument("--check", action="store_true", help="exit 1 when a committed page differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".md.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT).as_posix())
    if stale:
        print("stale (run python docs/scripts/api_reference.py --write):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
