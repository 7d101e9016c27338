"""MAnet: SMP conformance, PAB/MFAB blocks, norms, any input size, 3D, bad input."""

import json
import re
import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp
from smp_like.decoders.manet.decoder import MAnetDecoder, MFABBlock, PABBlock

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
SMALL = dict(decoder_channels=(32, 16, 16, 8, 8), decoder_pab_channels=16)


def randomize_norms(model):
    # Non-trivial batch-norm statistics, so a norm applied in the wrong place cannot go unnoticed.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.MAnet(encoder_weights=None, **kwargs)
    randomize_norms(theirs)
    ours = smp.MAnet(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(encoder_name=encoder_name, classes=3, aux_params=aux, **SMALL)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(decoder_pab_channels=8),
        dict(decoder_pab_channels=64),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.2}),
        dict(decoder_use_norm={"type": "instancenorm", "affine": True}),
        dict(decoder_interpolation="bilinear"),
        dict(encoder_depth=3, decoder_channels=(16, 8, 8)),
        dict(encoder_depth=4, decoder_channels=(32, 16, 8, 8)),
        dict(encoder_depth=1, decoder_channels=(8,)),
        dict(in_channels=1, activation="sigmoid"),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_smp(options):
    kwargs = dict(encoder_name="resnet18", classes=2, **SMALL)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, aux_params=dict(classes=3, dropout=0), **SMALL)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
def test_any_size_equals_smp_on_the_padded_input():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, **SMALL)
    x = torch.randn(1, 3, 45, 70)
    padded, shape = smp.pad_to_stride(x, 32)
    assert_same_outputs(eval_out(ours, x), smp.crop_to_shape(eval_out(theirs, padded), shape))


@pytest.mark.conformance
def test_blocks_match_smp_blocks():
    # The position-wise attention and fusion blocks on their own, on sizes with distinct H and W.
    _, theirs = build_pair(encoder_name="resnet18", **SMALL)
    theirs.eval()
    pab = PABBlock(512, 16).eval()
    pab.load_state_dict(theirs.decoder.center.state_dict())
    mfab = MFABBlock(512, 256, 32).eval()
    mfab.load_state_dict(theirs.decoder.blocks[0].state_dict())
    x, skip = torch.randn(2, 512, 3, 5), torch.randn(2, 256, 6, 10)
    with torch.no_grad():
        assert_same_outputs(pab(x), theirs.decoder.center(x))
        assert_same_outputs(mfab(x, [6, 10], skip), theirs.decoder.blocks[0](x, skip))


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.MAnet("resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                              decoder_pab_channels=8, classes=3, aux_params=dict(classes=2, dropout=0.1)).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.MAnet and not ours.training
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    ours.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert "input_padding" not in config and "spatial_dims" not in config
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


# ----------------------------------------------------------------------------- blocks against the paper's maths


def test_pab_is_a_softmax_attention_over_all_position_pairs():
    # Independent loop formula: S[i, j] = exp(<c_i, t_j>) / sum over all (i', j') of the same sample (SMP's
    # softmax spans the whole L x L map); A[l] = sum_j S[l, j] b_j, read back in memory order.
    torch.manual_seed(0)
    pab = PABBlock(6, 3).eval()
    x = torch.randn(2, 6, 2, 3)
    top, center, bottom = pab.top_conv(x), pab.center_conv(x), pab.bottom_conv(x)
    expected = torch.empty_like(x)
    for n in range(2):
        t, c, b = top[n].reshape(3, -1), center[n].reshape(3, -1), bottom[n].reshape(6, -1)
        logits = torch.stack([torch.stack([c[:, i] @ t[:, j] for j in range(6)]) for i in range(6)])
        weights = torch.exp(logits - logits.max()) / torch.exp(logits - logits.max()).sum()
        attended = torch.stack([sum(weights[i, j] * b[:, j] for j in range(6)) for i in range(6)])  # (L, C)
        expected[n] = attended.reshape(6, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(pab(x), pab.out_conv(x + expected))


def test_mfab_with_fewer_skip_channels_than_the_reduction():
    # SMP's squeeze-excitation would get 8 // 16 = 0 hidden channels; here it keeps one.
    block = MFABBlock(16, 8, 4).eval()
    assert block.SE_ll[1].out_channels == 1
    assert block(torch.randn(1, 16, 3, 3), [6, 6], torch.randn(1, 8, 6, 6)).shape == (1, 4, 6, 6)
    with pytest.raises(ValueError, match="skip"):
        block(torch.randn(1, 16, 3, 3), [6, 6])


def test_dilated_encoder_works_where_smp_crashes():
    # SMP upsamples x2 blindly, so a stride-16 deepest feature misses its stride-16 skip; here blocks resize to it.
    model = smp.MAnet("resnet18", encoder_weights=None, output_stride=16, **SMALL)
    assert model.input_stride == 16
    assert eval_out(model, torch.randn(1, 3, 48, 80)).shape == (1, 1, 48, 80)


def test_layernorm_works_where_smp_crashes():
    model = smp.MAnet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                      decoder_use_norm="layernorm")
    assert eval_out(model, torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_decoder_with_placeholder_feature_and_time_embedding():
    # A transformer encoder's 0-channel stride-2 placeholder gets a plain block (no fusion attention), as in SMP.
    decoder = MAnetDecoder((3, 0, 8, 16), (16, 8, 8), n_blocks=3, pab_channels=4).eval()
    assert type(decoder.blocks[0]).__name__ == "MFABBlock" and type(decoder.blocks[1]).__name__ == "MAnetDecoderBlock"
    shapes = [(1, 3, 32, 32), (1, 0, 16, 16), (1, 8, 8, 8), (1, 16, 4, 4)]
    features = [torch.randn(*shape) for shape in shapes]
    assert decoder(features).shape == (1, 8, 32, 32)
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        decoder(features, time_emb=torch.randn(1, 4))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_decoder_is_scriptable():
    decoder = MAnetDecoder((3, 8, 8, 16), (16, 8, 8), n_blocks=3, pab_channels=4).eval()
    features = [torch.randn(2, 3, 32, 32), torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    scripted = torch.jit.script(decoder)
    with torch.no_grad():
        torch.testing.assert_close(scripted(features), decoder(features))


# ----------------------------------------------------------------------------- any size, 3D


def test_any_input_size_2d():
    model = smp.MAnet("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, 131, 97))
    assert mask.shape == (1, 3, 131, 97) and label.shape == (1, 2)


def test_3d_odd_size():
    model = smp.MAnet("resnet18", encoder_weights=None, spatial_dims=3, in_channels=1, classes=2,
                      aux_params=dict(classes=4), decoder_interpolation="bilinear", **SMALL)
    assert isinstance(model.decoder.center.bottom_conv, torch.nn.Conv3d)
    assert model.decoder.blocks[0].SE_hl[0].spatial_dims == 3
    mask, label = eval_out(model, torch.randn(1, 1, 37, 41, 29))
    assert mask.shape == (1, 2, 37, 41, 29) and label.shape == (1, 4)


def test_3d_trains_one_step():
    model = smp.MAnet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                      decoder_pab_channels=4, spatial_dims=3, classes=2)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_message():
    model = smp.MAnet("resnet18", encoder_weights=None, input_padding=None, **SMALL)
    with pytest.raises(ValueError, match=r"Wrong input shape \(65, 70\).*divisible.*32.*" + re.escape("(96, 96)")):
        model(torch.randn(1, 3, 65, 70))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)


# ----------------------------------------------------------------------------- bad input, named clearly


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(decoder_pab_channels=0), ValueError, r"decoder_pab_channels.*positive.*0"),
        (dict(decoder_pab_channels=8.0), ValueError, r"decoder_pab_channels.*8\.0"),
        (dict(decoder_channels=(16, 8)), ValueError, r"decoder_channels.*encoder_depth=5.*2"),
        (dict(decoder_channels=(16, 8, 8, 8, 0)), ValueError, r"decoder_channels.*positive"),
        (dict(encoder_depth=6, decoder_channels=(8,) * 6), ValueError, r"depth.*1\.\.5.*6"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(decoder_interpolation="cubic"), ValueError, r"interpolation.*'cubic'"),
        (dict(decoder_interpolation="bicubic", spatial_dims=3), ValueError, r"'bicubic'.*spatial_dims=3"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(spatial_dims=1), ValueError, r"spatial_dims.*\(2, 3\).*1"),
        (dict(input_padding="wrap"), ValueError, r"input_padding.*'wrap'"),
        (dict(aux_params=dict(classes=2, pooling="min")), ValueError, r"pooling.*'min'"),
        (dict(encoder_name="resnet19"), ValueError, r"encoder_name.*'resnet19'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.MAnet(**kwargs)


def test_wrong_input_at_forward():
    model = smp.MAnet("resnet18", encoder_weights=None, **SMALL).eval()
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([1, 2])


def test_deprecated_decoder_use_batchnorm():
    with pytest.warns(DeprecationWarning, match="decoder_use_norm"):
        model = smp.MAnet("resnet18", encoder_weights=None, decoder_use_batchnorm=False)
    assert isinstance(model.decoder.blocks[0].conv1[1], torch.nn.Identity)


def test_signature_matches_smp():
    import inspect

    ours = inspect.signature(smp.MAnet.__init__).parameters
    theirs = inspect.signature(smp_oracle.MAnet.__init__).parameters
    shared = [name for name in theirs if name != "kwargs"]
    assert [n for n in ours if n in shared] == shared
    assert all(ours[n].default == theirs[n].default for n in shared)
    assert ours["spatial_dims"].default == 2 and ours["input_padding"].default == "constant"


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.MAnet("resnet18", encoder_weights=None, **SMALL)
