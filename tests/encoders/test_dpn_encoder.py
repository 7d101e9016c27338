"""DPN family (Chen et al. 2017): what the generic SMP catalogue test does not cover.

Dilation, odd input sizes and shallow depths against the SMP oracle, state-dict keys of every name, classifier
keys in pretrained files, and the errors for bad arguments (DPN is 2D only).
"""


import pytest
import torch
from encoder_testing import assert_same, features, random_bn_statistics, smp_encoder
from safetensors.torch import save

from smp_like.encoders import encoders, get_encoder

smp_oracle = pytest.importorskip("segmentation_models_pytorch")

NAMES = ["dpn68", "dpn68b", "dpn92", "dpn98", "dpn107", "dpn131"]


@pytest.mark.conformance
def test_keys_and_shapes_equal_smp_for_every_name_on_meta():
    for name in NAMES:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


@pytest.mark.conformance
@pytest.mark.parametrize("name, output_stride", [("dpn68", 16), ("dpn68", 8), ("dpn68b", 8)])
def test_dilation_and_odd_sizes_match_smp(name, output_stride):
    torch.manual_seed(0)
    theirs = smp_encoder(name, output_stride=output_stride)
    random_bn_statistics(theirs)
    ours = get_encoder(name, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.output_stride == theirs.output_stride == output_stride
    assert ours.reductions == tuple(min(2**i, output_stride) for i in range(6))
    for size in ((64, 64), (65, 97)):
        x = torch.randn(1, 3, *size)
        assert_same(features(ours, x), features(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_shallow_depths_match_smp(depth):
    theirs = smp_encoder("dpn68b", depth=depth)
    random_bn_statistics(theirs)
    ours = get_encoder("dpn68b", depth=depth)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 33, 31)
    assert_same(features(ours, x), features(theirs, x))


def test_odd_sizes_round_up():
    # Every down-sampling op is padded, so features have size ceil(size / reduction), as decoders expect.
    encoder = get_encoder("dpn68")
    x = torch.randn(1, 3, 37, 70)
    for feature, channels, reduction in zip(features(encoder, x), encoder.out_channels, encoder.reductions):
        assert feature.shape[1] == channels
        assert tuple(feature.shape[2:]) == tuple(-(-s // reduction) for s in x.shape[2:])


@pytest.mark.conformance
def test_pretrained_file_with_classifier_keys_loads(hub_env):
    torch.manual_seed(0)
    source = get_encoder("dpn68")
    random_bn_statistics(source)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    # The original checkpoints carry a 1x1-conv classifier that the encoder does not have.
    state.update({"last_linear.weight": torch.zeros(1000, 832, 1, 1), "last_linear.bias": torch.zeros(1000)})
    setting = encoders["dpn68"]["pretrained_settings"]["imagenet"]
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    loaded = get_encoder("dpn68", weights="imagenet")
    x = torch.randn(1, 3, 32, 32)
    assert_same(features(loaded, x), features(source, x))


def test_spatial_dims_3_refused():
    with pytest.raises(
        ValueError, match=r"'dpn68' supports spatial_dims \(2,\).*spatial_dims=3.*se_resnet50"
    ):
        get_encoder("dpn68", spatial_dims=3)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_unsupported_depth(depth):
    with pytest.raises(ValueError, match=r"`depth`.*1\.\.5"):
        get_encoder("dpn68", depth=depth)


def test_unsupported_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("dpn68", output_stride=4)


def test_unknown_weights_tag():
    # dpn68b's only weights are trained on ImageNet-5k.
    with pytest.raises(ValueError, match=r"encoder_weights.*'imagenet'.*\['imagenet\+5k'\]"):
        get_encoder("dpn68b", weights="imagenet")


def test_time_embedding_refused():
    encoder = get_encoder("dpn68", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))
