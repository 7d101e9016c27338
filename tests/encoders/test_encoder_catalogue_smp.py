"""Every encoder name SMP has, checked against SMP's encoder of the same name (the oracle).

For each name: SMP's state dict loads with ``strict=True`` and the features agree (shapes exactly, values within
1e-5 relative to the feature's scale) for depth 5 and 3 and in_channels 1, 3 and 4; every weights tag resolves to
SMP's Hub repository and pinned revision with the published normalisation; one download per family goes through
the loopback Hub and gives SMP's features.
"""

import warnings
from typing import Dict, List, Tuple

import pytest
import torch
from encoder_testing import assert_same, features, random_bn_statistics, smp_encoder
from safetensors.torch import save

import smp_like.encoders as registry

warnings.filterwarnings("ignore", category=UserWarning)
smp_oracle = pytest.importorskip("segmentation_models_pytorch")

SMP_NAMES: List[str] = list(smp_oracle.encoders.encoders)

# Over ~60M parameters (or SMP's very wide ResNeXts): only in the slow set; each still runs there.
LARGE = {
    "resnext101_32x8d",
    "resnext101_32x16d",
    "resnext101_32x32d",
    "resnext101_32x48d",
    "dpn107",
    "dpn131",
    "senet154",
    "se_resnet152",
    "efficientnet-b7",
    "timm-efficientnet-b7",
    "timm-efficientnet-b8",
    "timm-efficientnet-l2",
    "mit_b4",
    "mit_b5",
}

# Published input normalisation of each weights tag (golden numbers: the values the original ports were trained
# with, as listed by pretrainedmodels / efficientnet-pytorch / timm and by SMP up to 0.3).
_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
_HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
_DPN = ([124 / 255, 117 / 255, 104 / 255], [1 / (0.0167 * 255)] * 3)


def expected_normalisation(name: str, tag: str) -> Tuple[List[float], List[float]]:
    if name.startswith("dpn"):
        return _DPN
    if name.startswith(("inception", "xception", "timm-tf_efficientnet_lite")) or tag == "advprop":
        return _HALF
    return _IMAGENET


def input_size(name: str) -> int:
    # 96 px for the Inception encoders, so that their deepest features are larger than 2x2.
    return 96 if name.startswith("inception") else 64


def assert_same_features(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor) -> None:
    assert_same(features(ours, x), features(theirs, x))


def _params(name: str) -> List:
    return [pytest.param(name, marks=pytest.mark.slow) if name in LARGE else name]


ALL_NAMES = [p for name in SMP_NAMES for p in _params(name)]


def test_every_smp_name_is_registered():
    missing = [n for n in SMP_NAMES if n not in registry.encoders]
    assert not missing, f"SMP encoder names missing here: {missing}"


@pytest.mark.conformance
@pytest.mark.parametrize("name", ALL_NAMES)
def test_features_match_smp(name):
    size = input_size(name)
    for depth in (5, 3):
        for in_channels in (3, 1, 4):
            torch.manual_seed(0)
            try:
                theirs = smp_encoder(name, in_channels=in_channels, depth=depth)
            except Exception as err:  # SMP refuses the combination: so must we, with a ValueError
                with pytest.raises(ValueError):
                    registry.get_encoder(name, in_channels=in_channels, depth=depth)
                print(f"{name} depth={depth} in_channels={in_channels}: both refuse ({err})")
                continue
            random_bn_statistics(theirs, seed=depth * 10 + in_channels)
            ours = registry.get_encoder(name, in_channels=in_channels, depth=depth)
            ours.load_state_dict(theirs.state_dict(), strict=True)
            assert tuple(ours.out_channels) == tuple(theirs.out_channels)
            x = torch.randn(1, in_channels, size, size, generator=torch.Generator().manual_seed(1))
            assert_same_features(ours, theirs, x)


@pytest.mark.conformance
@pytest.mark.parametrize("name", SMP_NAMES)
def test_weights_tags_resolve_like_smp(name):
    theirs: Dict[str, dict] = smp_oracle.encoders.encoders[name]["pretrained_settings"]
    ours: Dict[str, dict] = registry.encoders[name]["pretrained_settings"]
    assert set(ours) == set(theirs)
    for tag, setting in theirs.items():
        assert ours[tag]["repo_id"] == setting["repo_id"], tag
        assert ours[tag]["revision"] == setting["revision"], tag
        params = registry.get_preprocessing_params(name, tag)
        mean, std = expected_normalisation(name, tag)
        assert params["input_space"] == "RGB" and params["input_range"] == [0, 1]
        assert params["mean"] == pytest.approx(mean, abs=1e-9) and params["std"] == pytest.approx(std, abs=1e-9)


# One name per family: a safetensors file made from SMP's (random) encoder is served at SMP's repository and
# revision; get_encoder(weights=tag) must fetch it through hf_hub_download and then compute SMP's features.
FAMILY_REPRESENTATIVES = [
    ("dpn68", "imagenet"),
    ("vgg11_bn", "imagenet"),
    ("se_resnet50", "imagenet"),
    ("densenet121", "imagenet"),
    ("inceptionv4", "imagenet+background"),
    ("inceptionresnetv2", "imagenet"),
    ("efficientnet-b0", "advprop"),
    ("mobilenet_v2", "imagenet"),
    ("xception", "imagenet"),
    ("timm-efficientnet-b0", "noisy-student"),
    ("timm-tf_efficientnet_lite0", "imagenet"),
    ("timm-skresnet18", "imagenet"),
    ("mobileone_s0", "imagenet"),
]


@pytest.mark.conformance
@pytest.mark.parametrize("name,tag", FAMILY_REPRESENTATIVES)
def test_download_through_hub_gives_smp_features(name, tag, hub_env):
    setting = smp_oracle.encoders.encoders[name]["pretrained_settings"][tag]
    torch.manual_seed(0)
    theirs = smp_encoder(name)
    random_bn_statistics(theirs, seed=3)
    state = {k: v.contiguous() for k, v in theirs.state_dict().items()}
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    hub_env.clear_requests()
    ours = registry.get_encoder(name, weights=tag)
    paths = {r.path for r in hub_env.requests if "/resolve/" in r.path}
    assert paths == {f"/{setting['repo_id']}/resolve/{setting['revision']}/model.safetensors"}
    size = input_size(name)
    assert_same_features(ours, theirs, torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2)))
