"""Issue 17 items 2, 5, 8 (rest) and 10: config.json is untrusted, Hub errors are clear and fast, corrupted or
mismatched folders are refused naming the file."""
import json
import shutil
import sys
import time

import pytest
import torch
from hub_server import configure_hub, set_offline, unused_local_url

import smp_like as smp
from smp_like.base import hub
from smp_like.cli import main as cli_main
from smp_like.encoders import WeightsDownloadError, get_encoder

_OPENED = []  # paths opened while _WATCH is set (an audit hook cannot be removed, so it is gated)
_WATCH = []


def _audit(event, args):
    if _WATCH and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def _tiny(**kwargs):
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8), **kwargs)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = _tiny().eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model, folder


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("key, value", [
    ("checkpoint_path", "MARKER/weights.pth"),
    ("pretrained_cfg", {"file": "MARKER/weights.pth"}),
    ("pretrained_cfg_overlay", {"file": "MARKER/weights.pth"}),
    ("cache_dir", "MARKER"),
])
def test_steering_keys_are_refused_without_touching_the_file_system(saved, tmp_path, key, value):
    _, folder = saved
    marker = tmp_path / "never-touched"
    value = json.loads(json.dumps(value).replace("MARKER", str(marker)))
    _edit_config(folder, **{key: value})
    _OPENED.clear()
    _WATCH.append(1)
    try:
        with pytest.raises(ValueError, match=f"`{key}` is refused.*read, download or look for files"):
            smp.from_pretrained(str(folder))
    finally:
        _WATCH.clear()
    assert not [p for p in _OPENED if str(marker) in p]


def test_tu_encoder_configs_accept_only_the_documented_timm_kwargs(tmp_path):
    model = smp.Unet("tu-test_resnet", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8),
                     drop_path_rate=0.1)
    model.save_pretrained(tmp_path / "m")
    assert isinstance(smp.from_pretrained(str(tmp_path / "m")), smp.Unet)  # drop_path_rate is on the allow-list
    _edit_config(tmp_path / "m", global_pool="avg")
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['global_pool'\]"):
        smp.from_pretrained(str(tmp_path / "m"))
    _edit_config(tmp_path / "m", global_pool=None, checkpoint_path=str(tmp_path / "x.pth"))
    with pytest.raises(ValueError, match="`checkpoint_path` is refused"):
        smp.from_pretrained(str(tmp_path / "m"))


def test_nested_steering_keys_are_refused_too(tmp_path):
    model = smp.DDPM(encoder_name="resnet18", encoder_depth=3, decoder_channels=(8, 8, 8), time_embedding_dim=16,
                     num_train_timesteps=10)
    model.save_pretrained(tmp_path / "d")
    _edit_config(tmp_path / "d", aux_params={"classes": 2, "pretrained_cfg_overlay": {"file": "/x"}})
    with pytest.raises(ValueError, match=r"config.json.aux_params: key `pretrained_cfg_overlay` is refused"):
        smp.from_pretrained(str(tmp_path / "d"))


def test_huge_sizes_are_refused_before_allocating(saved, monkeypatch):
    _, folder = saved
    _edit_config(folder, classes=1_000_000_000)
    requested = []
    real_empty = torch.empty

    def spy(*args, **kwargs):
        if torch.get_default_device().type != "meta" and kwargs.get("device") != "meta":
            shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
            numel = 1
            for size in shape:
                numel *= int(size)
            requested.append(numel)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", spy)
    for strict in (True, False):
        with pytest.raises(ValueError, match="refused before allocating") as info:
            smp.from_pretrained(str(folder), strict=strict)
        assert "model.safetensors" in str(info.value) and "1000000000" in str(info.value)
    assert max(requested, default=0) < 10**8


def test_a_small_mismatch_still_gets_torchs_size_mismatch_error(saved):
    _, folder = saved
    _edit_config(folder, classes=3)
    with pytest.raises(RuntimeError, match="size mismatch for segmentation_head.0.weight"):
        smp.from_pretrained(str(folder))


def test_corrupted_weights_are_caught_by_the_manifest_sha256(saved):
    _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["files"]["model.safetensors"]["sha256"]) == 64
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # a flipped byte inside a tensor: safetensors itself would load it silently
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupted or was replaced.*manifest\.json"):
        smp.from_pretrained(str(folder))


@pytest.mark.parametrize("name, content, error", [
    ("config.json", b"{not json", "JSONDecodeError"),
    ("config.json", b"\xff\xfe\x00garbage", "UnicodeDecodeError"),
    ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{broken header}", "safetensors"),
])
def test_load_errors_name_the_file(saved, name, content, error):
    _, folder = saved
    (folder / "manifest.json").unlink()  # a folder from SMP or an older smp_like has none
    (folder / name).write_bytes(content)
    with pytest.raises(ValueError, match=error) as info:
        smp.from_pretrained(str(folder))
    assert str(folder / name) in str(info.value)


def test_saving_a_model_whose_head_was_replaced_is_refused(tmp_path):
    model = _tiny()
    model.segmentation_head[0] = torch.nn.Conv2d(8, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"segmentation_head\.0\.weight: \(4, 8, 3, 3\) \(model\) vs \(1, 8, 3, 3\)"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_mistyped_local_folder_says_folder_not_found(tmp_path):
    for source in (str(tmp_path / "no-such-run"), "./runs/no-such-run", "runs/exp1/best"):
        with pytest.raises(FileNotFoundError, match="folder not found"):
            smp.from_pretrained(source)


@pytest.mark.filterwarnings("ignore:For .tu-.:UserWarning")
def test_refused_endpoint_fails_fast_with_repository_revision_and_remedies(tmp_path, monkeypatch):
    # Library defaults for the retry waits (not shortened): hf_hub_download alone needs ~23 s per file here.
    configure_hub(monkeypatch, unused_local_url(), tmp_path / "hf_home", shorten_backoff=False)
    start = time.perf_counter()
    with pytest.raises(hub.HubDownloadError) as info:
        smp.from_pretrained("someone/unet")
    message = str(info.value)
    assert "'someone/unet'" in message and "revision main" in message and "config.json" in message
    assert "HF_HUB_OFFLINE" in message and "HF_ENDPOINT" in message and "local folder" in message
    with pytest.raises(WeightsDownloadError, match=r"(?s)timm/test_resnet\.r160_in1k.*encoder_weights=None"):
        get_encoder("tu-test_resnet", weights="r160_in1k", depth=3)
    with pytest.raises(WeightsDownloadError, match=r"smp-hub/resnet18\.imagenet"):
        get_encoder("resnet18", weights="imagenet", depth=3)
    assert time.perf_counter() - start < 5


def test_offline_errors_name_the_repository(hub_env, monkeypatch):
    set_offline(monkeypatch)
    with pytest.raises(WeightsDownloadError, match=r"timm/test_resnet.*offline mode \(HF_HUB_OFFLINE\) is on"):
        get_encoder("tu-test_resnet", weights="imagenet", depth=3)
    with pytest.raises(hub.HubDownloadError, match=r"'user/repo'.*offline mode"):
        smp.from_pretrained("user/repo")
    assert not hub_env.requests


def test_a_cached_file_is_used_when_the_endpoint_is_down(hub_env, tmp_path, monkeypatch):
    model = _tiny()
    model.save_pretrained(tmp_path / "m")
    hub_env.add_folder("someone/unet", tmp_path / "m")
    smp.from_pretrained("someone/unet")  # fills the cache
    configure_hub(monkeypatch, unused_local_url(), tmp_path / "hf_home", shorten_backoff=False)
    start = time.perf_counter()
    loaded = smp.from_pretrained("someone/unet")
    assert time.perf_counter() - start < 15  # no retries: 3 files x ~23 s with hf_hub_download's own
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_cli_exit_codes(hub_unreachable, capsys):
    assert cli_main(["download", "resnet18", "--weights", "imagenet"]) == hub.DOWNLOAD_EXIT_CODE == 3
    assert "download failed" in capsys.readouterr().err
    assert cli_main(["download", "no-such-encoder"]) == 2
    with pytest.raises(SystemExit) as info:
        cli_main(["download"])
    assert info.value.code == 2
