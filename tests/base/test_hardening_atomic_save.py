"""Issue 17 item 3: a save_pretrained killed (SIGKILL) at any step leaves the old folder or the new one, loadable,
never a mix; the next save or load cleans up what the killed one left."""
import json
import os
import signal
import time

import pytest
import torch

import smp_like as smp
from smp_like.base import hub

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a save in a child process")

STEPS = ("weights", "config", "card", "manifest", "swap", "cleanup")


def _model(classes):
    torch.manual_seed(classes)
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=2, decoder_channels=(8, 8),
                    classes=classes).eval()


def _save_killed_at(model, folder, step, exchange=True):
    """Fork; the child saves ``model`` into ``folder`` and SIGKILLs itself when the save reaches ``step``."""
    pid = os.fork()
    if pid == 0:  # child: never returns to pytest
        try:
            def hook(name):
                if name == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            hub._save_step = hook
            if not exchange:
                def no_exchange(a, b):
                    raise OSError("no renameat2 here")

                hub._exchange = no_exchange
            model.save_pretrained(folder)
        finally:
            os._exit(0)  # reached only if the step never came
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the save killed at {step!r} hung")
        time.sleep(0.01)


def _which(folder, old, new):
    loaded = smp.from_pretrained(str(folder))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = loaded(x)
        matches = [name for name, m in (("old", old), ("new", new)) if out.shape == m(x).shape
                   and torch.allclose(out, m(x))]
    assert len(matches) == 1, "the folder is a mix of two saves"
    config = json.loads((folder / "config.json").read_text())
    assert config["classes"] == (old if matches[0] == "old" else new).config["classes"]
    return matches[0]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_killed_save_leaves_the_old_or_the_new_folder(tmp_path, exchange):
    old, new = _model(1), _model(2)
    steps = STEPS if exchange else ("swap", "between-renames", "cleanup")
    seen = {}
    for step in steps:
        folder = tmp_path / step / "model"
        old.save_pretrained(folder)
        (folder / "notes.txt").write_text("mine")  # a user's file in the folder survives every save
        assert _save_killed_at(new, folder, step, exchange), f"the save never reached step {step!r}"
        seen[step] = _which(folder, old, new)  # the load also removes what the killed save left
        assert (folder / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "README.md", "config.json", "manifest.json", "model.safetensors", "notes.txt"]
    assert seen["swap"] == "old" and seen["cleanup"] == "new"
    if exchange:
        assert seen["weights"] == seen["config"] == seen["card"] == seen["manifest"] == "old"
    else:
        assert seen["between-renames"] == "old"  # restored from .model.old-* by the load
    new.save_pretrained(folder)  # a later save over a folder that went through a killed one works
    assert _which(folder, old, new) == "new"


def test_saved_files_are_0644_and_the_folder_swap_keeps_its_name(tmp_path):
    _model(1).save_pretrained(tmp_path / "m")
    for name in ("config.json", "model.safetensors", "manifest.json", "README.md"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o644
