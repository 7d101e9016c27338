"""Find the fenced code blocks of the Markdown pages (docs/ and README.md) that the test-suite runs.

A page's ```python blocks run in order in one fresh namespace (a later block may use what an earlier one made),
with the working directory in a temporary folder. A block is left out only when the line right above its fence is
an HTML comment (invisible on the rendered page) naming why::

    <!-- docs-test: skip (needs a GPU) -->

Shell blocks (```bash) run only where they say so the same way, ``<!-- docs-test: run -->``: most shell blocks are
installs, long trainings or cluster jobs; the cheap CLI ones are opted in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<verb>skip|run)\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: the page, the line of its opening fence (1-based), its language, source and marker."""

    path: Path
    line: int
    lang: str
    source: str
    marker: str | None = None  # "skip" or "run" (or None)
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def markdown_pages() -> list[Path]:
    """Every Markdown page whose code blocks are tested: docs/**/*.md and README.md."""
    return sorted(p for p in (ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one page, in order, with the marker found on the line above each fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        lang = (m.group("info").split() or [""])[0].lower()
        # Skip blank lines backwards to find the marker comment (if any) right above the fence.
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = _MARKER.match(lines[j]) if j >= 0 else None
        body: list[str] = []
        k = i + 1
        while k < len(lines) and not re.match(rf"^\s{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[k]):
            body.append(lines[k][indent:] if lines[k][:indent].strip() == "" else lines[k])
            k += 1
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                lang=lang,
                source="\n".join(body) + "\n",
                marker=marker.group("verb") if marker else None,
                reason=(marker.group("reason") or "").strip() if marker else "",
            )
        )
        i = k + 1
    return blocks
