"""Code written for segmentation_models_pytorch 0.6 runs unchanged (issue 13): one test per divergence found.

Each test was checked to fail on the code before the fix (except the ``unfreeze_encoder`` one, which already
passed when this was written: it pins SMP's behaviour). SMP is the oracle wherever it can run offline.
"""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import smp_like
from smp_like.encoders import get_encoder

smp = pytest.importorskip("segmentation_models_pytorch")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8))


# ------------------------------------------------------------------------------------------------------------
# 1. get_encoder(name, encoder_weights=...) and unknown keyword arguments
# ------------------------------------------------------------------------------------------------------------


def test_get_encoder_accepts_encoder_weights_and_refuses_unknown_arguments():
    encoder = get_encoder("resnet18", depth=3, encoder_weights=None)
    theirs = smp.encoders.get_encoder("resnet18", depth=3, encoder_weights=None)
    assert list(encoder.out_channels) == list(theirs.out_channels)
    assert get_encoder("tu-test_resnet", depth=3, encoder_weights=None).out_channels[-1] > 0
    # The alias reaches the weights resolution (an unknown tag is reported as such, not as a bad argument).
    with pytest.raises(ValueError, match=r"Unknown `encoder_weights` 'no-such-tag'"):
        get_encoder("resnet18", encoder_weights="no-such-tag")
    assert get_encoder("resnet18", depth=3, weights=None, encoder_weights=None).depth == 3  # same value: fine
    with pytest.raises(ValueError, match=r"`weights`='imagenet' and its alias `encoder_weights`=None"):
        get_encoder("resnet18", weights="imagenet", encoder_weights=None)
    # SMP drops unknown keyword arguments silently; smp_like names them and what the encoder accepts.
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['pretrained_path'\].*ResNetEncoder "
                                        r"accepts \[.*'layers'"):
        get_encoder("resnet18", pretrained_path="x.pth")


# ------------------------------------------------------------------------------------------------------------
# 2. Missing public names
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.conformance
@pytest.mark.parametrize("use_norm", ["batchnorm", False, "identity", "instancenorm"])
def test_conv2drelu_is_smps_block(use_norm):
    from smp_like.base.modules import Conv2dReLU

    torch.manual_seed(0)
    theirs = smp.base.modules.Conv2dReLU(3, 8, 3, padding=1, stride=2, use_norm=use_norm).eval()
    ours = smp_like.base.Conv2dReLU(3, 8, 3, padding=1, stride=2, use_norm=use_norm).eval()
    assert ours.__class__ is Conv2dReLU
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 9, 11)
    torch.testing.assert_close(ours(x), theirs(x))
    assert smp_like.base.modules.get_norm_layer(use_norm, 8).__class__ is theirs[1].__class__


@pytest.mark.conformance
def test_encoders_expose_timm_encoder_classes():
    from smp_like.decoders.dpt.model import DPT

    assert smp_like.encoders.TimmViTEncoder is importlib.import_module("smp_like.encoders.timm_vit").TimmViTEncoder
    dpt = DPT("tu-test_vit", encoder_weights=None, encoder_depth=2, decoder_intermediate_channels=(8, 8),
              decoder_fusion_channels=8)
    assert isinstance(dpt.encoder, smp_like.encoders.TimmViTEncoder)
    assert isinstance(get_encoder("tu-test_resnet", depth=3), smp_like.encoders.TimmUniversalEncoder)
    assert smp_like.encoders.efficient_net_encoders is smp_like.encoders.efficientnet_encoders
    for name in ("timm-gernet_s", "timm-mobilenetv3_small_100", "resnet18", "tu-resnet18"):
        expected = smp.encoders.is_equivalent_to_timm_universal(name)
        assert smp_like.encoders.is_equivalent_to_timm_universal(name) == expected


@pytest.mark.conformance
def test_model_architectures_mapping_is_lazy_and_drives_create_model():
    mapping = smp_like.MODEL_ARCHITECTURES_MAPPING
    for key, cls in smp.MODEL_ARCHITECTURES_MAPPING.items():
        assert mapping[key].__name__ == cls.__name__
    assert mapping is smp_like.MODEL_ARCHITECTURES_MAPPING
    # As in SMP, an entry added to the mapping is an architecture create_model knows.
    mapping["myunet"] = mapping["unet"]
    try:
        assert isinstance(smp_like.create_model("MyUnet", **TINY_UNET), smp_like.Unet)
    finally:
        del mapping["myunet"]
    # `import smp_like` alone still builds no model module.
    script = "import sys, smp_like; print(any(m.startswith('smp_like.decoders') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.conformance
@pytest.mark.parametrize(
    "kwargs", [{}, dict(gamma=0.0), dict(reduced_threshold=0.5), dict(normalized=True), dict(reduction="sum"),
               dict(reduction="none"), dict(reduction="batchwise_mean")]
)
def test_softmax_focal_loss_with_logits_matches_smp(kwargs):
    from smp_like.losses._functional import softmax_focal_loss_with_logits

    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 5, 6) * 3, torch.randint(0, 4, (2, 5, 6))
    expected = smp.losses._functional.softmax_focal_loss_with_logits(logits, target, **kwargs)
    torch.testing.assert_close(softmax_focal_loss_with_logits(logits, target, **kwargs), expected)


def test_softmax_focal_loss_closed_form():
    from smp_like.losses._functional import softmax_focal_loss_with_logits

    # Two classes, logits (0, log 3): p_t = 3/4 for label 1, 1/4 for label 0.
    logits = torch.tensor([[0.0, 3.0 ** 0 * torch.log(torch.tensor(3.0)).item()]]).reshape(1, 2, 1)
    for label, pt in ((1, 0.75), (0, 0.25)):
        loss = softmax_focal_loss_with_logits(logits, torch.tensor([[label]]), gamma=2.0)
        assert loss.item() == pytest.approx(-((1 - pt) ** 2) * torch.log(torch.tensor(pt)).item(), rel=1e-6)


@pytest.mark.conformance
def test_wing_loss_and_to_tensor_match_smp():
    import numpy as np

    from smp_like.losses._functional import to_tensor, wing_loss

    torch.manual_seed(0)
    a, b = torch.randn(3, 7) * 10, torch.randn(3, 7)
    for kwargs in ({}, dict(width=2, curvature=1.0), dict(reduction="sum"), dict(reduction="none")):
        torch.testing.assert_close(wing_loss(a, b, **kwargs), smp.losses._functional.wing_loss(a, b, **kwargs))
    for value in ([1, 2], (1.0, 2.0), np.arange(3), torch.ones(2)):
        theirs = smp.losses._functional.to_tensor(value)
        assert torch.equal(to_tensor(value), theirs) and to_tensor(value).dtype == theirs.dtype
        assert to_tensor(value, torch.float16).dtype == torch.float16
    with pytest.raises(TypeError, match="to_tensor"):
        to_tensor("abc")


@pytest.mark.conformance
@pytest.mark.parametrize("arch, kwargs, blocks", [
    ("FPN", dict(decoder_interpolation="nearest"), ("p4", "p3", "p2")),
    ("FPN", dict(decoder_interpolation="bilinear"), ("p4", "p3", "p2")),
    ("PAN", dict(decoder_interpolation="bilinear"), ("gau3", "gau2", "gau1")),
    ("PAN", dict(decoder_interpolation="nearest"), ("gau3", "gau2", "gau1")),
])
def test_fpn_and_pan_blocks_expose_interpolation_mode(arch, kwargs, blocks):
    theirs = getattr(smp, arch)("resnet18", encoder_weights=None, **kwargs).eval()
    ours = getattr(smp_like, arch)("resnet18", encoder_weights=None, **kwargs).eval()
    for block in blocks:
        assert getattr(ours.decoder, block).interpolation_mode == getattr(theirs.decoder, block).interpolation_mode
    # The attribute is what forward uses: changing it on both models keeps the outputs equal.
    ours.load_state_dict(theirs.state_dict())
    for model in (ours, theirs):
        for block in blocks:
            getattr(model.decoder, block).interpolation_mode = "bicubic"
    x = torch.randn(1, 3, 64 if arch == "FPN" else 256, 64 if arch == "FPN" else 256)  # PAN's FPA pools 3 times
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# 3. requires_divisible_input_shape keeps SMP's meaning
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.conformance
def test_requires_divisible_input_shape_says_whether_forward_raises():
    for name, cls in smp.MODEL_ARCHITECTURES_MAPPING.items():  # on the class: SMP's value
        assert smp_like.MODEL_ARCHITECTURES_MAPPING[name].requires_divisible_input_shape == (
            cls.requires_divisible_input_shape
        ), name
    x = torch.randn(1, 3, 36, 44)  # not divisible by 32
    for arch in ("FPN", "PSPNet", "Unet"):
        model = getattr(smp_like, arch)("resnet18", encoder_weights=None).eval()
        assert model.input_padding == "constant" and model.requires_divisible_input_shape is False
        with torch.no_grad():
            model(x)  # padded inside forward: no error, as the flag says
        strict = getattr(smp_like, arch)("resnet18", encoder_weights=None).eval()
        strict.set_input_padding(None)
        assert strict.requires_divisible_input_shape is type(strict).requires_divisible_input_shape
        if strict.requires_divisible_input_shape:
            with pytest.raises(ValueError, match="divisible by the output stride"):
                strict(x)
        model.set_input_padding(None)
        assert model.requires_divisible_input_shape is strict.requires_divisible_input_shape


# ------------------------------------------------------------------------------------------------------------
# 4. unfreeze_encoder returns the encoder's norm layers to the model's mode
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.conformance
@pytest.mark.parametrize("mode", [True, False])
def test_unfreeze_encoder_restores_norm_layers_to_the_model_mode(mode):
    def norm_modes(model):
        return [m.training for m in model.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]

    ours, theirs = smp_like.Unet(**TINY_UNET), smp.Unet(**TINY_UNET)
    for model in (ours, theirs):
        model.train(mode)
        model.freeze_encoder()
        assert not any(norm_modes(model))
        model.unfreeze_encoder()
    assert norm_modes(ours) == [mode] * len(norm_modes(ours))
    # SMP switches them to training mode even in an eval-mode model; smp_like follows the model's mode (the
    # issue's wording), so the two agree for a training model only.
    assert norm_modes(theirs) == [True] * len(norm_modes(theirs))
    if mode:  # statistics update again
        before = ours.encoder.bn1.running_mean.clone()
        ours(torch.randn(2, 3, 32, 32))
        assert not torch.equal(before, ours.encoder.bn1.running_mean)


# ------------------------------------------------------------------------------------------------------------
# 5. from_pretrained(folder, classes=..., strict=False) fine-tunes to a new head
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.conformance
@pytest.mark.parametrize("saved_by", ["smp", "smp_like"])
def test_from_pretrained_non_strict_loads_what_fits_and_warns(saved_by, tmp_path):
    torch.manual_seed(0)
    saver = (smp if saved_by == "smp" else smp_like).Unet(**TINY_UNET, classes=1)
    saver.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"segmentation_head\.0\.weight: shape \(1, 8, 3, 3\) \(weights\) -> "
                                         r"\(2, 8, 3, 3\) \(model\)") as record:
        model = smp_like.from_pretrained(tmp_path, classes=2, strict=False)
    message = "\n".join(str(w.message) for w in record if issubclass(w.category, UserWarning))
    assert "segmentation_head.0.bias" in message and "encoder." not in message and "decoder." not in message
    saved = saver.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("segmentation_head"):
            assert value.shape[0] == 2
        else:
            assert torch.equal(value, saved[key]), key
    # The same folder in SMP: the same tensors are loaded.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp.from_pretrained(str(tmp_path), classes=2, strict=False)
    for key, value in theirs.state_dict().items():
        if not key.startswith("segmentation_head"):
            assert torch.equal(value, model.state_dict()[key])
    with pytest.raises(RuntimeError, match="size mismatch for segmentation_head.0.weight"):
        smp_like.from_pretrained(tmp_path, classes=2, strict=True)


# ------------------------------------------------------------------------------------------------------------
# 6. tu- encoders: encoder_weights=True, tag strings, SMP's warning
# ------------------------------------------------------------------------------------------------------------


def test_timm_encoder_weights_true_is_timms_default_tag(hub_env):
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("test_resnet")
    hub_env.add_file("timm/test_resnet.r160_in1k", "model.safetensors", save(reference.state_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # True is SMP's own spelling: no warning
        model = smp_like.Unet("tu-test_resnet", encoder_weights=True, encoder_depth=3, decoder_channels=(8, 8, 8))
    torch.testing.assert_close(model.encoder.model.conv1[0].weight, reference.conv1[0].weight)
    # A string is smp_like's extension: honoured, with SMP's warning (which now says so).
    with pytest.warns(UserWarning, match=r"'tu-'.*encoder_weights='r160_in1k'.*honoured it as the timm pretrained "
                                         r"tag 'r160_in1k'"):
        tagged = get_encoder("tu-test_resnet", depth=3, weights="r160_in1k")
    torch.testing.assert_close(tagged.model.conv1[0].weight, reference.conv1[0].weight)
    with pytest.warns(UserWarning, match="honoured it as timm's default pretrained tag"):
        get_encoder("tu-test_resnet", depth=3, encoder_weights="imagenet")
    random = get_encoder("tu-test_resnet", depth=3, weights=False)
    assert not torch.equal(random.model.conv1[0].weight, reference.conv1[0].weight)


# ------------------------------------------------------------------------------------------------------------
# 7. Binary losses: targets that differ from the prediction only by singleton dimensions
# ------------------------------------------------------------------------------------------------------------

BINARY_LOSSES = [
    ("DiceLoss", dict(mode="binary")),
    ("JaccardLoss", dict(mode="binary")),
    ("TverskyLoss", dict(mode="binary")),
    ("FocalLoss", dict(mode="binary")),
    ("LovaszLoss", dict(mode="binary")),
    ("MCCLoss", dict()),
]


@pytest.mark.conformance
@pytest.mark.parametrize("name, kwargs", BINARY_LOSSES)
@pytest.mark.parametrize("pred_shape, true_shape", [((2, 1, 16), (2, 1, 1, 16)), ((2, 1, 4, 4), (2, 4, 1, 4)),
                                                    ((2, 1, 4, 4), (2, 1, 4, 4, 1))])
def test_binary_losses_accept_singleton_dim_differences(name, kwargs, pred_shape, true_shape):
    torch.manual_seed(0)
    y_pred = torch.randn(pred_shape)
    y_true = (torch.rand(true_shape) > 0.5).float()
    if name == "MCCLoss":  # SMP's MCCLoss takes probabilities
        y_pred = y_pred.sigmoid()
    expected = getattr(smp.losses, name)(**kwargs)(y_pred, y_true)
    torch.testing.assert_close(getattr(smp_like.losses, name)(**kwargs)(y_pred, y_true), expected)


@pytest.mark.parametrize("name, kwargs", BINARY_LOSSES)
def test_binary_losses_still_refuse_different_element_counts(name, kwargs):
    loss = getattr(smp_like.losses, name)(**kwargs)
    with pytest.raises(ValueError, match=r"y_pred shape \(2, 1, 8\) and y_true shape \(2, 1, 1, 9\) do not fit "
                                         r"mode='binary'"):
        loss(torch.randn(2, 1, 8), torch.ones(2, 1, 1, 9))


# ------------------------------------------------------------------------------------------------------------
# Found by the surface walk (tests/test_smp_api_surface.py)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.conformance
def test_vgg_unet_has_smps_center_block():
    # SMP's Unet applies a center block on VGG encoders; without it SMP's VGG-Unet checkpoints did not load.
    torch.manual_seed(0)
    kwargs = dict(encoder_name="vgg11", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8))
    theirs, ours = smp.Unet(**kwargs).eval(), smp_like.Unet(**kwargs).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert any(k.startswith("decoder.center.") for k in ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert not any(k.startswith("decoder.center.") for k in smp_like.Unet(**TINY_UNET).state_dict())


@pytest.mark.conformance
@pytest.mark.parametrize("build", [
    lambda lib: importlib.import_module(f"{lib}.decoders.deeplabv3.decoder").SeparableConv2d(4, 8, 3, padding=1),
    lambda lib: importlib.import_module(f"{lib}.decoders.deeplabv3.decoder").SeparableConv2d(4, 8, 3, 2, 2, 2, False),
    lambda lib: importlib.import_module(f"{lib}.decoders.upernet.decoder").LayerNorm2d(4, eps=1e-6),
    lambda lib: importlib.import_module(f"{lib}.decoders.segformer.decoder").MLP(4, 8),
    lambda lib: importlib.import_module(f"{lib}.decoders.unet.decoder").UnetCenterBlock(4, 8),
    lambda lib: importlib.import_module(f"{lib}.decoders.unetplusplus.decoder").CenterBlock(4, 8, use_norm=False),
    lambda lib: importlib.import_module(f"{lib}.decoders.fpn.decoder").Conv3x3GNReLU(4, 32),
    lambda lib: importlib.import_module(f"{lib}.decoders.upernet.decoder").PSPModule(4, 8, sizes=(1, 3)),
    lambda lib: importlib.import_module(f"{lib}.decoders.dpt.decoder").ReadoutConcatBlock(embed_dim=8,
                                                                                          has_prefix_tokens=False),
])
def test_decoder_blocks_under_smps_names_match_smp(build):
    torch.manual_seed(0)
    theirs, ours = build("segmentation_models_pytorch").eval(), build("smp_like").eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    for value in theirs.state_dict().values():  # non-trivial norm parameters too
        if value.is_floating_point():
            value.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 6, 6)
    if "ReadoutConcatBlock" in type(ours).__name__:
        x = torch.randn(2, 8, 3, 3)
    elif "MLP" in type(theirs).__name__:
        x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.conformance
def test_upernet_lateral_block_takes_smps_argument_names():
    from segmentation_models_pytorch.decoders.upernet.decoder import FPNLateralBlock as Theirs

    from smp_like.decoders.upernet.decoder import FPNLateralBlock as Ours

    torch.manual_seed(0)
    theirs, ours = Theirs(lateral_channels=4, out_channels=8).eval(), Ours(lateral_channels=4, out_channels=8).eval()
    ours.load_state_dict(theirs.state_dict())
    state, lateral = torch.randn(1, 8, 3, 3), torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(state_feature=state, lateral_feature=lateral),
                                   theirs(state_feature=state, lateral_feature=lateral))


@pytest.mark.conformance
def test_model_config_model_card_and_save_pretrained_arguments(tmp_path):
    ours, theirs = smp_like.Unet(**TINY_UNET, classes=2), smp.Unet(**TINY_UNET, classes=2)
    assert {k: ours.config[k] for k in theirs.config} == theirs.config
    ours.config["classes"] = 9  # a copy: the model's record is unchanged
    assert ours.config["classes"] == 2
    ours.save_pretrained(tmp_path, config=ours.config,
                         model_card_kwargs={"dataset": "pets", "metrics": [{"iou": 0.5}]})
    card = (tmp_path / "README.md").read_text()
    assert "Dataset name: pets" in card and '"iou": 0.5' in card
    loaded = smp_like.from_pretrained(tmp_path).config  # read back from JSON: tuples come back as lists
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in ours.config.items()} == loaded
    with pytest.raises(ValueError, match=r"differs at \['classes'\] and adds \['foo'\]"):
        ours.save_pretrained(tmp_path / "other", config={"classes": 3, "foo": 1})
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match=r"'metrics' and 'dataset', got \['license'\]"):
        ours.save_pretrained(tmp_path, model_card_kwargs={"license": "mit"})
    generated = ours.generate_model_card(dataset="pets")
    assert "Dataset name: pets" in str(generated) and type(generated).__name__ == "ModelCard"
