"""Mix Transformer (mit_b0..b5): SMP parity of keys and features, in_channels, dilation, Hub, errors."""

from contextlib import contextmanager
from unittest import mock

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from safetensors.torch import save

import smp_like as smp
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders.mix_transformer import MixVisionTransformerEncoder, mix_transformer_encoders

MIT_NAMES = [f"mit_b{i}" for i in range(6)]
LIGHT = ["mit_b0", "mit_b1"]
HEAVY = ["mit_b2", "mit_b3", "mit_b4", "mit_b5"]


def features(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


def assert_same_features(ours, theirs, x, atol=1e-5):
    a, b = features(ours, x), features(theirs, x)
    assert len(a) == len(b)
    for mine, oracle in zip(a, b):
        assert mine.shape == oracle.shape
        torch.testing.assert_close(mine, oracle, rtol=0, atol=atol)


def oracle_and_ours(name, **kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.encoders.get_encoder(name, weights=None, **kwargs)
    ours = get_encoder(name, weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@contextmanager
def oracle_on_meta():
    """Build SMP encoders on the meta device: its drop-path schedule reads numbers out of a tensor, so that
    one tensor is made on the CPU."""
    real_linspace = torch.linspace

    def cpu_linspace(*args, **kwargs):
        kwargs["device"] = "cpu"
        return real_linspace(*args, **kwargs)

    with mock.patch.object(torch, "linspace", cpu_linspace), torch.device("meta"):
        yield


# ----------------------------------------------------------------------------- SMP parity


@pytest.mark.conformance
@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("name", LIGHT)
def test_matches_smp_at_depth_5(name, in_channels):
    ours, theirs = oracle_and_ours(name, in_channels=in_channels)
    assert list(ours.out_channels) == list(theirs.out_channels)
    assert ours.output_stride == theirs.output_stride == 32
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert_same_features(ours, theirs, torch.randn(1, in_channels, 64, 96))


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_matches_smp_at_smaller_depths(depth):
    ours, theirs = oracle_and_ours("mit_b0", depth=depth)
    assert list(ours.out_channels) == list(theirs.out_channels)
    assert ours.reductions == (1, 2, 4, 8, 16, 32)[: depth + 1]
    assert_same_features(ours, theirs, torch.randn(1, 3, 64, 64))


@pytest.mark.conformance
@pytest.mark.parametrize("size", [(65, 67), (31, 33)])
def test_matches_smp_at_odd_sizes(size):
    # Includes the 0-channel placeholder, which is half the input size rounded down in both.
    ours, theirs = oracle_and_ours("mit_b0")
    assert_same_features(ours, theirs, torch.randn(1, 3, *size))


@pytest.mark.conformance
@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_matches_smp(output_stride):
    # SMP 0.6 dilates MiT (it does not refuse): every conv of the last stage(s) gets stride 1 and the rate.
    ours, theirs = oracle_and_ours("mit_b0", output_stride=output_stride)
    assert ours.output_stride == theirs.output_stride == output_stride
    assert ours.reductions == tuple(min(2**i, output_stride) for i in range(6))
    convs = {n: m for n, m in ours.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs["patch_embed4.proj"].stride == (1, 1)
    assert convs["block4.0.mlp.dwconv.dwconv"].dilation == ((2, 2) if output_stride == 16 else (4, 4))
    assert_same_features(ours, theirs, torch.randn(1, 3, 64, 64))


@pytest.mark.conformance
@pytest.mark.parametrize("in_channels", [1, 2, 4, 7])
def test_pretrained_first_conv_adapted_like_smp(in_channels):
    ours, theirs = oracle_and_ours("mit_b0")
    ours.set_in_channels(in_channels, pretrained=True)
    theirs.set_in_channels(in_channels, pretrained=True)
    torch.testing.assert_close(ours.patch_embed1.proj.weight, theirs.patch_embed1.proj.weight, rtol=0, atol=0)
    assert list(ours.out_channels) == list(theirs.out_channels)


@pytest.mark.conformance
def test_state_dict_keys_and_shapes_equal_smp_for_heavy_names_on_meta():
    for name in HEAVY:
        with oracle_on_meta():
            theirs = smp_oracle.encoders.get_encoder(name, weights=None)
        with torch.device("meta"):
            ours = get_encoder(name, weights=None)
        theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
        assert list(ours_state) == list(theirs_state), name
        assert all(ours_state[k].shape == theirs_state[k].shape for k in ours_state), name
        assert list(ours.out_channels) == list(theirs.out_channels), name


@pytest.mark.parametrize("in_channels", [1, 4])
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_names_adapt_in_channels_on_meta(name, in_channels):
    with torch.device("meta"):
        encoder = get_encoder(name, weights=None, in_channels=in_channels)
        out = features(encoder, torch.randn(2, in_channels, 64, 96))
    assert encoder.patch_embed1.proj.weight.shape[1] == in_channels
    assert [tuple(f.shape[1:]) for f in out] == [
        (c, 64 // r, 96 // r) for c, r in zip(encoder.out_channels, (1, 2, 4, 8, 16, 32))
    ]


@pytest.mark.slow
@pytest.mark.conformance
@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_names_match_smp_on_cpu(name, in_channels):
    ours, theirs = oracle_and_ours(name, in_channels=in_channels)
    assert_same_features(ours, theirs, torch.randn(1, in_channels, 64, 64))


# ----------------------------------------------------------------------------- registry and Hub weights


def test_registry_entries():
    for name in MIT_NAMES:
        entry = encoders[name]
        assert entry is mix_transformer_encoders[name]
        assert entry["encoder"] is MixVisionTransformerEncoder
        assert entry["spatial_dims"] == (2,)
        assert list(entry["params"]["out_channels"]) == list(
            smp_oracle.encoders.encoders[name]["params"]["out_channels"]
        )
        params = smp.encoders.get_preprocessing_params(name, "imagenet")
        assert params["mean"] == [0.485, 0.456, 0.406] and params["std"] == [0.229, 0.224, 0.225]


@pytest.mark.conformance
@pytest.mark.parametrize("name", MIT_NAMES)
def test_every_tag_resolves_to_smp_repo_and_pinned_revision(name, hub_env):
    oracle_settings = smp_oracle.encoders.encoders[name]["pretrained_settings"]
    ours_settings = encoders[name]["pretrained_settings"]
    assert set(ours_settings) == set(oracle_settings)
    for tag, oracle in oracle_settings.items():
        assert ours_settings[tag]["repo_id"] == oracle["repo_id"]
        assert ours_settings[tag]["revision"] == oracle["revision"]
        # The download asks the Hub for exactly that repository at exactly that revision.
        hub_env.add_file(
            oracle["repo_id"], "model.safetensors", b"not read here", commit_sha=oracle["revision"]
        )
        hub_env.clear_requests()
        smp.encoders.download_weights(name, tag)
        paths = {r.path for r in hub_env.requests if "/resolve/" in r.path}
        assert paths == {f"/{oracle['repo_id']}/resolve/{oracle['revision']}/model.safetensors"}


def test_pretrained_weights_load_through_the_hub(hub_env):
    torch.manual_seed(0)
    state = get_encoder("mit_b0", weights=None).state_dict()
    # A classification checkpoint may carry the ImageNet head, which the encoder does not have.
    served = dict(state, **{"head.weight": torch.randn(1000, 256), "head.bias": torch.randn(1000)})
    settings = encoders["mit_b0"]["pretrained_settings"]["imagenet"]
    hub_env.add_file(settings["repo_id"], "model.safetensors", save(served), commit_sha=settings["revision"])
    encoder = get_encoder("mit_b0", weights="imagenet", in_channels=1)
    torch.testing.assert_close(
        encoder.patch_embed1.proj.weight, state["patch_embed1.proj.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(encoder.block4[1].mlp.fc2.weight, state["block4.1.mlp.fc2.weight"])


# ----------------------------------------------------------------------------- behaviour and errors


def test_placeholder_and_reductions():
    encoder = get_encoder("mit_b0", depth=3, weights=None)
    out = features(encoder, torch.randn(2, 3, 64, 96))
    assert encoder.out_channels == (3, 0, 32, 64) and encoder.reductions == (1, 2, 4, 8)
    assert out[1].shape == (2, 0, 32, 48)
    assert all(f.is_contiguous() for f in out)


def test_depth_stops_early():
    # Stages past the depth exist (for SMP-compatible keys) but never run.
    encoder = get_encoder("mit_b0", depth=2, weights=None)
    called = []
    encoder.patch_embed2.register_forward_hook(lambda *args: called.append(True))
    assert len(features(encoder, torch.randn(1, 3, 32, 32))) == 3 and not called


def test_trains_with_stochastic_depth():
    torch.manual_seed(0)
    encoder = get_encoder("mit_b0", weights=None, drop_path_rate=0.5).train()
    x = torch.randn(2, 3, 64, 64)
    out = encoder(x)[-1]
    out.mean().backward()
    assert encoder.patch_embed1.proj.weight.grad is not None
    assert not torch.equal(encoder(x)[-1], out)  # random branch drops


def test_torchscript_encoder():
    encoder = get_encoder("mit_b0", depth=4, weights=None).eval()
    scripted = torch.jit.script(encoder)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(scripted(x), features(encoder, x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bad", [0, 6, 2.5, True])
def test_depth_out_of_range(bad):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("mit_b0", depth=bad)


def test_3d_is_refused_clearly():
    with pytest.raises(ValueError, match=r"'mit_b0' supports spatial_dims \(2,\).*spatial_dims=3"):
        get_encoder("mit_b0", spatial_dims=3)
    with pytest.raises(ValueError, match=r"2D only.*spatial_dims must be 2, got 3"):
        MixVisionTransformerEncoder(**encoders["mit_b0"]["params"], spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        smp.Unet("mit_b0", encoder_weights=None, spatial_dims=3)


def test_time_embedding_refused():
    encoder = get_encoder("mit_b0", depth=2, weights=None)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'ade20k'.*\['imagenet'\]"):
        get_encoder("mit_b0", weights="ade20k")
