"""Every Python block of docs/ and README.md runs (issue 19): a block that does not run fails the suite.

Blocks of a page run in order in one fresh namespace, in a temporary working directory; a block marked
``<!-- docs-test: skip (reason) -->`` is reported as skipped with its reason; shell blocks marked
``<!-- docs-test: run -->`` run in their turn, in the same folder (so they can use what earlier blocks wrote), with
``smp-like`` and ``python`` bound to this checkout. See docs_code_blocks.py.

Pages that load pretrained encoder weights (``encoder_weights="imagenet"``) get them from the suite's loopback Hub:
stand-in (randomly initialised) weights published at the registry's own repository and pinned revision, so the
examples run unchanged through the real ``hf_hub_download`` path with no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from docs_code_blocks import PYTHON_LANGS, ROOT, SHELL_LANGS, code_blocks, markdown_pages

PAGES = markdown_pages()
ALL_BLOCKS = [b for page in PAGES for b in code_blocks(page)]
RUN_PAGES = [
    p for p in PAGES
    if any((b.lang in PYTHON_LANGS and b.marker != "skip") or (b.lang in SHELL_LANGS and b.marker == "run")
           for b in code_blocks(p))
]
SKIPPED = [b for b in ALL_BLOCKS if b.lang in PYTHON_LANGS and b.marker == "skip"]
# Skips are for blocks that need the network or a GPU; keep them rare.
MAX_SKIPPED = 6
# Encoders whose "imagenet" weights the pages load; the loopback Hub serves stand-ins for them.
STAND_IN_WEIGHTS = [("resnet18", "imagenet"), ("resnet34", "imagenet")]


def _rel(page) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.fixture
def docs_env(tmp_path, monkeypatch, hub_env):
    """A temporary working directory, no display, huggingface_hub pointed at the loopback Hub (never the network)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return work


def _publish_stand_in_weights(hub) -> None:
    from safetensors.torch import save

    from smp_like.encoders import encoders, get_encoder

    for name, tag in STAND_IN_WEIGHTS:
        setting = encoders[name]["pretrained_settings"][tag]
        state = {k: v.contiguous() for k, v in get_encoder(name, weights=None).state_dict().items()}
        hub.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])


def _runnable(block) -> bool:
    return (block.lang in PYTHON_LANGS and block.marker != "skip") or (
        block.lang in SHELL_LANGS and block.marker == "run"
    )


def _shell_env(work) -> dict:
    # `smp-like` and `python` resolve to this interpreter and checkout through small shims first on PATH.
    bin_dir = work.parent / "_bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for name, command in (("smp-like", f'"{sys.executable}" -m smp_like'), ("python", f'"{sys.executable}"'),
                              ("python3", f'"{sys.executable}"')):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
            shim.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT))


def _run_shell(block, work) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.source], cwd=work, env=_shell_env(work), capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, textwrap.dedent(
        f"shell block at {block.name} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n"
        f"--- stderr\n{result.stderr[-3000:]}"
    )


@pytest.mark.parametrize("page", RUN_PAGES, ids=_rel)
def test_blocks_of_page_run(page, docs_env, hub_env):
    blocks = [b for b in code_blocks(page) if _runnable(b)]
    if any("imagenet" in b.source for b in blocks if b.lang in PYTHON_LANGS):
        _publish_stand_in_weights(hub_env)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__main__"}
    for block in blocks:
        if block.lang in SHELL_LANGS:
            _run_shell(block, docs_env)  # in the same folder: it may use the files earlier blocks wrote
            continue
        # Leading newlines make tracebacks point at the page's own line numbers.
        code = compile("\n" * block.line + block.source, str(page), "exec")
        try:
            exec(code, namespace)
        except Exception as err:  # noqa: BLE001 - re-raised with the block's location
            raise AssertionError(f"code block at {block.name} failed: {type(err).__name__}: {err}") from err
    assert blocks


def test_skipped_blocks_are_few_and_say_why():
    # Skipped blocks are listed by name and reason; each must give one: <!-- docs-test: skip (why) -->.
    assert all(block.reason for block in SKIPPED), [b.name for b in SKIPPED if not b.reason]
    assert len(SKIPPED) <= MAX_SKIPPED, [f"{b.name}: {b.reason}" for b in SKIPPED]
    # A marker on a block the runner never looks at would be a promise nobody keeps.
    for block in ALL_BLOCKS:
        if block.marker == "run":
            assert block.lang in SHELL_LANGS, f"{block.name}: 'run' marks shell blocks (python blocks always run)"


def test_collector_finds_the_blocks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a GPU) -->\n\n```python\ny = 2\n```\n"
        "~~~bash\necho hi\n~~~\n"
    )
    blocks = code_blocks(page)
    assert [(b.lang, b.line, b.marker, b.reason) for b in blocks] == [
        ("python", 3, None, ""),
        ("python", 9, "skip", "needs a GPU"),
        ("bash", 12, None, ""),
    ]
    assert blocks[0].source == "x = 1\n" and blocks[2].source == "echo hi\n"
