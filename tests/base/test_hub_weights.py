"""Weights through the real huggingface_hub code path, served by the loopback Hub (no network)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

import smp_like as smp
from hub_server import set_offline
from smp_like.cli import main as cli_main
from smp_like.encoders import WeightsDownloadError, encoders, get_encoder

RESNET18_REPO = "smp-hub/resnet18.imagenet"
RESNET18_REVISION = encoders["resnet18"]["pretrained_settings"]["imagenet"]["revision"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def resnet18_checkpoint(seed=0):
    """A torchvision-style resnet18 checkpoint (with the fc layer the encoder drops) as safetensors bytes."""
    torch.manual_seed(seed)
    state = get_encoder("resnet18", weights=None).state_dict()
    state = {k: v for k, v in state.items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return state, save(state)


@pytest.fixture
def served_resnet18(hub_env):
    state, data = resnet18_checkpoint()
    hub_env.add_file(RESNET18_REPO, "model.safetensors", data, commit_sha=RESNET18_REVISION)
    hub_env.clear_requests()
    return hub_env, state


def resolve_requests(server, repo=RESNET18_REPO):
    return [r for r in server.requests if f"/{repo}/resolve/" in r.path]


def test_weights_by_tag_from_pinned_revision(served_resnet18):
    server, state = served_resnet18
    encoder = get_encoder("resnet18", weights="imagenet")
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, state[key])
    paths = {r.path for r in resolve_requests(server)}
    assert paths == {f"/{RESNET18_REPO}/resolve/{RESNET18_REVISION}/model.safetensors"}


def test_unet_with_pretrained_encoder_and_adapted_input(served_resnet18):
    _, state = served_resnet18
    model = smp.Unet("resnet18", encoder_weights="imagenet", in_channels=1, classes=2)
    torch.testing.assert_close(model.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_pretrained_2d_weights_inflate_to_3d(served_resnet18):
    _, state = served_resnet18
    encoder = get_encoder("resnet18", weights="imagenet", spatial_dims=3)
    weight3d = encoder.conv1.weight
    assert weight3d.shape == (64, 3, 7, 7, 7)
    for depth_index in range(7):
        torch.testing.assert_close(weight3d[:, :, depth_index], state["conv1.weight"] / 7)
    torch.testing.assert_close(encoder.bn1.running_var, state["bn1.running_var"])


def test_offline_uses_the_cache_without_any_request(served_resnet18, monkeypatch):
    server, state = served_resnet18
    get_encoder("resnet18", weights="imagenet")
    server.clear_requests()
    set_offline(monkeypatch)
    encoder = get_encoder("resnet18", weights="imagenet")
    torch.testing.assert_close(encoder.conv1.weight, state["conv1.weight"])
    assert server.requests == []


def test_offline_with_empty_cache_names_repo_and_remedies(hub_env, monkeypatch):
    set_offline(monkeypatch)
    with pytest.raises(WeightsDownloadError) as info:
        get_encoder("resnet18", weights="imagenet")
    message = str(info.value)
    assert RESNET18_REPO in message and RESNET18_REVISION in message
    assert "encoder_weights=None" in message and "smp-like download resnet18 --weights imagenet" in message
    assert hub_env.requests == []


def test_unreachable_hub_gives_clear_error(hub_unreachable):
    with pytest.raises(WeightsDownloadError, match=r"smp-hub/resnet18\.imagenet.*\n.*encoder_weights=None.*smp-like download"):
        smp.Unet("resnet18", encoder_weights="imagenet")


def test_missing_revision_on_hub_is_reported(hub_env):
    hub_env.add_file(RESNET18_REPO, "model.safetensors", resnet18_checkpoint()[1])  # not at the pinned revision
    with pytest.raises(WeightsDownloadError, match="RevisionNotFound"):
        get_encoder("resnet18", weights="imagenet")


def test_cli_download_fills_cache_for_offline_use(served_resnet18, monkeypatch, capsys):
    server, state = served_resnet18
    assert cli_main(["download", "resnet18", "--weights", "imagenet"]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    set_offline(monkeypatch)
    server.clear_requests()
    encoder = get_encoder("resnet18", weights="imagenet")
    torch.testing.assert_close(encoder.conv1.weight, state["conv1.weight"])
    assert server.requests == []
    assert cli_main(["download", "resnet18", "--weights", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_environment_variables_are_honoured_in_fresh_processes(served_resnet18, tmp_path):
    """HF_ENDPOINT and HF_HOME set only in the environment (no patching): download, then build offline."""
    server, state = served_resnet18
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "fresh_home"), HF_HUB_DISABLE_TELEMETRY="1")
    download = subprocess.run([sys.executable, "-m", "smp_like", "download", "resnet18"], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)
    assert download.returncode == 0, download.stderr
    assert str(tmp_path / "fresh_home") in download.stdout
    server.clear_requests()
    env["HF_HUB_OFFLINE"] = "1"
    script = ("from smp_like.encoders import get_encoder; import sys; "
              "e = get_encoder('resnet18', weights='imagenet'); print(float(e.conv1.weight.sum()))")
    offline = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
    assert offline.returncode == 0, offline.stderr
    assert float(offline.stdout) == pytest.approx(float(state["conv1.weight"].sum()), rel=1e-6)
    assert server.requests == []


def test_timm_pretrained_tag_through_the_hub(hub_env):
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet")
    hub_env.add_file("timm/test_resnet.r160_in1k", "model.safetensors", save(reference.state_dict()))
    encoder = get_encoder("tu-test_resnet", weights="imagenet", depth=3)
    torch.testing.assert_close(encoder.model.conv1[0].weight, reference.conv1[0].weight)
    assert any("/timm/test_resnet.r160_in1k/resolve/" in r.path for r in hub_env.requests)
    path = smp.encoders.download_weights("tu-test_resnet", "r160_in1k")
    assert Path(path).name == "model.safetensors"


def test_push_to_hub_then_from_pretrained(served_resnet18, tmp_path, monkeypatch):
    server, _ = served_resnet18
    model = smp.Unet("resnet18", encoder_weights="imagenet", encoder_depth=3, decoder_channels=(16, 8, 8),
                     classes=2, aux_params=dict(classes=3)).eval()
    model.push_to_hub("someone/my-unet", metrics={"iou": 0.5})
    assert set(server.list_files("someone/my-unet")) >= {"config.json", "model.safetensors", "README.md"}

    server.clear_requests()
    loaded = smp.from_pretrained("someone/my-unet")
    # Loading never fetches the encoder's pretrained weights again: the saved weights hold them.
    assert resolve_requests(server) == []
    assert resolve_requests(server, "someone/my-unet")
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    server.clear_requests()
    set_offline(monkeypatch)
    again = smp.Unet.from_pretrained("someone/my-unet")
    assert isinstance(again, smp.Unet) and server.requests == []


def test_save_pretrained_push_flag(served_resnet18, tmp_path):
    server, _ = served_resnet18
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=2, decoder_channels=(8, 8))
    model.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="someone/pushed")
    stored = load_file(str(tmp_path / "local" / "model.safetensors"))
    assert server.read_file("someone/pushed", "model.safetensors") == (tmp_path / "local" / "model.safetensors").read_bytes()
    assert set(stored) == set(model.state_dict())


def test_sha256_pin_is_checked(hub_env, monkeypatch):
    _, data = resnet18_checkpoint()
    hub_env.add_file("me/pinned", "model.safetensors", data)
    settings = {"repo_id": "me/pinned", "revision": "main", "sha256": "0" * 64}
    monkeypatch.setitem(encoders, "pinned_resnet18", dict(encoders["resnet18"], pretrained_settings={"x": settings}))
    with pytest.raises(ValueError, match="sha256"):
        get_encoder("pinned_resnet18", weights="x")
    import hashlib

    settings["sha256"] = hashlib.sha256(data).hexdigest()
    get_encoder("pinned_resnet18", weights="x")
