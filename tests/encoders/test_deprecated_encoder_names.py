"""SMP's deprecated ``timm-*`` names: mapped to ``tu-`` with a DeprecationWarning; old checkpoints still load.

The oracle is SMP 0.6 (same name -> same keys and outputs). Old checkpoints are made the way SMP's old native
encoders stored them: the timm model's own keys directly under ``encoder.`` (no ``model.``), with ByobNet
(GERNet) stages as ``stages.N`` rather than ``stages_N``; ``timm-mobilenetv3*`` already used ``model.`` keys.
"""

import re
import warnings

import pytest
import torch

import smp_like
from smp_like.encoders import get_encoder, get_preprocessing_params
from smp_like.encoders.deprecated import is_deprecated_name, resolve_encoder_name, timm_equivalent

smp_oracle = pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.conformance

# One small model per deprecated family, with the tu- name SMP 0.6 builds for it.
FAMILIES = [
    ("timm-regnetx_002", "tu-regnetx_002"),
    ("timm-res2net50_26w_4s", "tu-res2net50_26w_4s"),
    ("timm-resnest14d", "tu-resnest14d"),
    ("timm-mobilenetv3_small_100", "tu-tf_mobilenetv3_small_100"),
    ("timm-gernet_s", "tu-gernet_s"),
]


def smp_unet(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smp_oracle.Unet(name, encoder_weights=None, classes=2).eval()


def old_smp_key(key: str, name: str) -> str:
    """How SMP's native encoders (before the tu- mapping) named a parameter of the Unet."""
    if name.startswith("timm-mobilenetv3") or not key.startswith("encoder.model."):
        return key
    inner = key[len("encoder.model.") :]
    return "encoder." + re.sub(r"^stages_(\d+)\.", r"stages.\1.", inner)


def randomise_norms(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    return module


@pytest.mark.parametrize("name, replacement", FAMILIES)
def test_deprecated_name_builds_smp_model_and_loads_old_checkpoints(name, replacement):
    assert timm_equivalent(name) == replacement
    theirs = randomise_norms(smp_unet(name))
    with pytest.warns(DeprecationWarning, match=re.escape(replacement)):
        ours = smp_like.Unet(name, encoder_weights=None, classes=2).eval()
    current = theirs.state_dict()
    assert list(ours.state_dict()) == list(current)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs(x)

    ours.load_state_dict(current, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-5)

    old = {old_smp_key(k, name): v for k, v in current.items()}
    if not name.startswith("timm-mobilenetv3"):
        assert not any(k.startswith("encoder.model.") for k in old)
    fresh = smp_like.Unet(replacement, encoder_weights=None, classes=2).eval()  # the tu- name loads them too
    fresh.load_state_dict(old, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=1e-5)
    # The oracle agrees that this is a checkpoint it still accepts.
    smp_unet(name).load_state_dict(old, strict=True)


def test_old_encoder_checkpoint_loads_into_the_encoder_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = randomise_norms(smp_oracle.encoders.get_encoder("timm-gernet_s", weights=None, depth=3))
    old = {
        old_smp_key("encoder." + k, "timm-gernet_s")[len("encoder.") :]: v
        for k, v in theirs.state_dict().items()
    }
    assert any(k.startswith("stages.0.") for k in old) and not any(k.startswith("model.") for k in old)
    with pytest.deprecated_call():
        ours = get_encoder("timm-gernet_s", depth=3)
    ours.load_state_dict(old, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours.eval()(x), theirs.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_renaming_does_not_hide_wrong_keys():
    with pytest.deprecated_call():
        ours = get_encoder("timm-regnetx_002")
    old = {k[len("model.") :]: v for k, v in ours.state_dict().items()}
    old["not_a_layer.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="not_a_layer"):
        ours.load_state_dict(old, strict=True)


def test_preprocessing_params_follow_the_replacement():
    with pytest.deprecated_call():
        params = get_preprocessing_params("timm-regnetx_002")
    assert params == get_preprocessing_params("tu-regnetx_002")


def test_name_table():
    assert all(is_deprecated_name(n) for n, _ in FAMILIES)
    assert timm_equivalent("timm-mobilenetv3_large_minimal_100") == "tu-tf_mobilenetv3_large_minimal_100"
    assert timm_equivalent("timm-regnety_002.pycls_in1k") == "tu-regnety_002.pycls_in1k"
    # SMP's remaining native timm-* encoders and other names are not remapped.
    for name in [
        "timm-skresnet18",
        "timm-efficientnet-b0",
        "resnet18",
        "tu-regnetx_002",
        "regnetx_002",
        None,
    ]:
        assert not is_deprecated_name(name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_encoder_name(name, {}) == name
    # An explicitly registered name wins over the mapping, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_encoder_name("timm-regnetx_002", {"timm-regnetx_002": {}}) == "timm-regnetx_002"
    with pytest.raises(ValueError, match="not a deprecated"):
        timm_equivalent("timm-skresnet18")


def test_unknown_model_of_a_deprecated_family_is_a_clear_error():
    with pytest.deprecated_call(), pytest.raises(ValueError, match="regnetx_999"):
        get_encoder("timm-regnetx_999")
