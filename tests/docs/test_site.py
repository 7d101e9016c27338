"""The site's generated parts are complete: one page per benchmark result file, every figure made and shown."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FIGURES = ["architecture.png", "demo_predictions.png", "training_curve.png", "blending.png",
           "diffusion_samples.png", "benchmark_bars.png"]


@pytest.mark.parametrize("result", sorted(p.name for p in (ROOT / "benchmarks").glob("*.md")))
def test_every_benchmark_result_has_a_page_that_includes_it(result):
    page = DOCS / "benchmarks" / result
    assert page.exists(), f"add docs/benchmarks/{result} containing: --8<-- \"benchmarks/{result}\""
    assert page.read_text() == f'--8<-- "benchmarks/{result}"\n'


def test_every_figure_is_made_by_the_script_and_shown_on_a_page():
    script = (DOCS / "figures" / "make_figures.py").read_text()
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    shown = set(re.findall(r"figures/([\w.-]+\.png)", pages))
    for name in FIGURES:
        assert name in script, f"make_figures.py does not make {name}"
        path = DOCS / "figures" / name
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} missing or not a PNG"
        assert path.stat().st_size < 400_000, f"{name} is large; lower the dpi"
        assert name in shown, f"no page shows figures/{name}"
    assert shown <= set(FIGURES), f"pages show figures nothing makes: {shown - set(FIGURES)}"
