"""The package's import graph (static, every import statement, module and function level) has no cycle and
follows the layer table of docs/architecture.md."""
from import_graph import ROOT, cycles, import_graph, layer_violations, part_of, read_layers


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 100  # the whole package was read
    assert cycles(graph) == []


def test_imports_follow_the_layers_of_docs_architecture():
    graph = import_graph()
    layers = read_layers()
    assert layers["base"] == 0 and layers["cli"] > layers["training"] > layers["decoders"] > layers["encoders"]
    # Every part of the package has a row in the table, so the map stays complete.
    assert {part_of(module) for module in graph} <= set(layers), sorted({part_of(m) for m in graph} - set(layers))
    assert layer_violations(graph, layers) == []


def test_registry_is_a_leaf():
    assert import_graph()["smp_like.base.registry"] == set()


def test_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    """The checker itself: a two-module loop (one import inside a function) and a base -> decoders import."""
    package = tmp_path / "smp_like"
    (package / "base").mkdir(parents=True)
    (package / "decoders").mkdir()
    for folder in (package, package / "base", package / "decoders"):
        (folder / "__init__.py").write_text("")
    (package / "base" / "a.py").write_text("def f():\n    from smp_like.decoders import b\n")
    (package / "decoders" / "b.py").write_text("from ..base import a\n")
    graph = import_graph(package)
    assert cycles(graph) == [["smp_like.base.a", "smp_like.decoders.b"]]
    assert layer_violations(graph, {"base": 0, "decoders": 3, "smp_like": 4}) == [
        ("smp_like.base.a", "smp_like.decoders.b")
    ]
    assert (ROOT / "docs" / "architecture.md").exists()
