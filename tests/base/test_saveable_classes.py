"""Every saveable class round-trips through save_pretrained / from_pretrained with no per-class code; user
subclasses (with their own constructor arguments) do too; the registry's one table covers every built-in class;
a time-conditioned model gives each thread its own timesteps."""
import threading

import pytest
import torch
import torch.nn as nn

import smp_like
from smp_like.base.hub import HubMixin
from smp_like.base.registry import BUILTIN_MODELS, MODEL_REGISTRY, classes_with, get_model_class

ENC = dict(encoder_name="tu-test_resnet", encoder_weights=None)
SMALL_AE = dict(encoder_name="tu-test_resnet", encoder_depth=2, in_channels=1, decoder_channels=(8, 4),
                latent_channels=2)
DIFFUSION = dict(**ENC, encoder_depth=2, decoder_channels=(8, 4), time_embedding_dim=8, num_train_timesteps=10)

# name -> (constructor arguments, input channels); every built-in saveable class.
CASES = {
    "Unet": (dict(**ENC, encoder_depth=3, decoder_channels=(8, 8, 4), classes=2), 3),
    "UnetPlusPlus": (dict(**ENC, encoder_depth=3, decoder_channels=(8, 8, 4)), 3),
    "MAnet": (dict(**ENC, encoder_depth=3, decoder_channels=(8, 8, 4), decoder_pab_channels=8), 3),
    "Linknet": (dict(**ENC, encoder_depth=3), 3),
    "FPN": (dict(**ENC, encoder_depth=3, decoder_pyramid_channels=8, decoder_segmentation_channels=32), 3),
    "PSPNet": (dict(**ENC, encoder_depth=3, psp_out_channels=8), 3),
    "DeepLabV3": (dict(**ENC, decoder_channels=16), 3),
    "DeepLabV3Plus": (dict(**ENC, decoder_channels=16), 3),
    "PAN": (dict(**ENC, decoder_channels=16), 3),
    "UPerNet": (dict(**ENC, decoder_channels=16), 3),
    "Segformer": (dict(**ENC, decoder_segmentation_channels=16), 3),
    "DPT": (dict(encoder_name="tu-test_vit", encoder_weights=None, decoder_intermediate_channels=(8, 8, 8, 8),
                 decoder_fusion_channels=8), 3),
    "HSeM": (dict(**ENC, encoder_depth=3, decoder_channels=(8, 8, 4), classes=2), 3),
    "ClM": (dict(encoder_name="tu-test_resnet", encoder_depth=3, classes=3, hidden_channels=(8,)), 3),
    "StackedHourglass": (dict(num_stacks=2, **ENC, encoder_depth=3, decoder_channels=(8,)), 3),
    "MeshNet": (dict(in_channels=1, classes=2, channels=4, dilations=(1, 2, 1)), 1),
    "ATrousNet": (dict(in_channels=1, classes=2, channels=4), 1),
    "AE": (SMALL_AE, 1),
    "VAE": (SMALL_AE, 1),
    "HAE": (SMALL_AE, 1),
    "DDPM": (dict(**DIFFUSION, in_channels=1, num_classes=2), 1),
    "DDIM": (dict(**DIFFUSION, in_channels=1), 1),
    "SDPM": (dict(**DIFFUSION, in_channels=1, classes=1, num_ensemble=2), 1),
    "SDIM": (dict(**DIFFUSION, in_channels=1, classes=1, num_ensemble=2, eta=0.5), 1),
    "LDPM": (dict(autoencoder={**SMALL_AE, "_model_class": "VAE"}, **DIFFUSION, latent_scale=0.5), 1),
    "LDIM": (dict(autoencoder={**SMALL_AE, "_model_class": "AE"}, **DIFFUSION), 1),
}


def test_cases_cover_every_builtin_class():
    assert set(CASES) == set(BUILTIN_MODELS)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_saveable_class_round_trips(name, tmp_path):
    kwargs, channels = CASES[name]
    torch.manual_seed(0)
    cls = get_model_class(name)
    model = cls(**kwargs).eval()
    assert type(model).__name__ == name
    model.save_pretrained(tmp_path)
    loaded = smp_like.from_pretrained(tmp_path)
    assert type(loaded) is cls
    assert loaded.get_config() == model.get_config()
    _assert_same_weights(model, loaded)
    if isinstance(model, smp_like.SegmentationModel) or name in ("ClM", "AE", "HAE"):
        x = torch.randn(1, channels, 32, 32)
        with torch.no_grad():
            out, again = model(x), loaded(x)
        out, again = (out[0], again[0]) if isinstance(out, tuple) else (out, again)
        assert torch.equal(out, again)
    # The class method of the class itself, and of the shared base, load it too.
    assert type(cls.from_pretrained(tmp_path)) is cls
    assert type(HubMixin.from_pretrained(tmp_path)) is cls


def test_checkpoint_families_load_each_other_and_nothing_else(tmp_path):
    kwargs, _ = CASES["DDPM"]
    smp_like.DDPM(**kwargs).save_pretrained(tmp_path / "ddpm")
    assert type(smp_like.DDIM.from_pretrained(tmp_path / "ddpm")) is smp_like.DDIM
    with pytest.raises(ValueError, match="holds a DDPM, not a LDPM"):
        smp_like.LDPM.from_pretrained(tmp_path / "ddpm")
    with pytest.raises(ValueError, match="holds a DDPM, not a Unet"):
        smp_like.Unet.from_pretrained(tmp_path / "ddpm")


def test_latent_scale_estimated_after_construction_is_saved(tmp_path):
    kwargs, _ = CASES["LDPM"]
    torch.manual_seed(0)
    model = smp_like.LDPM(**kwargs)
    scale = model.estimate_latent_scale(torch.randn(4, 1, 16, 16))
    model.save_pretrained(tmp_path)
    loaded = smp_like.from_pretrained(tmp_path)
    assert loaded.get_config()["latent_scale"] == pytest.approx(scale, rel=1e-6)
    assert torch.equal(loaded.latent_scale, model.latent_scale)


class UnetWithExtraHead(smp_like.Unet):
    """A user subclass with its own constructor argument and module, and no registration code."""

    def __init__(self, extra_classes: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.extra_head = nn.Conv2d(self.decoder.blocks[-1].conv2[0].out_channels, extra_classes, 1)
        self.extra_classes = extra_classes


class PlainSubclass(smp_like.FPN):
    """A subclass without its own constructor."""


def test_user_subclass_with_extra_argument_saves_and_loads(tmp_path):
    kwargs, _ = CASES["Unet"]
    torch.manual_seed(0)
    model = UnetWithExtraHead(extra_classes=5, **kwargs)
    config = model.get_config()
    assert config["_model_class"] == "UnetWithExtraHead" and config["extra_classes"] == 5
    assert config["decoder_channels"] == [8, 8, 4] and config["classes"] == 2
    model.save_pretrained(tmp_path)
    for loader in (smp_like.from_pretrained, UnetWithExtraHead.from_pretrained, smp_like.Unet.from_pretrained):
        loaded = loader(tmp_path)
        assert type(loaded) is UnetWithExtraHead and loaded.extra_classes == 5
        _assert_same_weights(model, loaded)
    assert MODEL_REGISTRY["unetwithextrahead"] is UnetWithExtraHead


def test_user_subclass_without_constructor_saves_and_loads(tmp_path):
    kwargs, _ = CASES["FPN"]
    model = PlainSubclass(**kwargs)
    assert model.get_config()["decoder_pyramid_channels"] == 8
    model.save_pretrained(tmp_path)
    loaded = smp_like.from_pretrained(tmp_path)
    assert type(loaded) is PlainSubclass
    _assert_same_weights(model, loaded)


def test_one_name_table_serves_create_model_and_both_lazy_packages():
    for name, module in BUILTIN_MODELS.items():
        cls = getattr(smp_like, name)
        assert cls.__module__ == module and get_model_class(name.lower()) is cls
        if module.startswith("smp_like.generative"):
            assert getattr(smp_like.generative, name) is cls
    assert "StackedHourglass" not in classes_with("accepts_time_embedding")
    assert {"Unet", "FPN", "MeshNet"} <= set(classes_with("accepts_time_embedding"))
    with pytest.raises(ValueError, match="Unknown architecture 'nope'"):
        get_model_class("nope")


def test_time_arguments_are_visible_and_documented():
    import inspect

    for name, module in BUILTIN_MODELS.items():
        cls = getattr(smp_like, name)
        if not issubclass(cls, smp_like.SegmentationModel):
            continue
        parameters = inspect.signature(cls.__init__).parameters
        assert parameters["time_embedding_dim"].default is None, name
        assert parameters["time_injection"].default == "gate_bias", name
        assert "time_embedding_dim:" in (cls.__doc__ or ""), name


def test_threads_calling_one_time_conditioned_model_keep_their_own_timesteps():
    """Two threads x 40 calls on the same hook-injected Unet, each with its own timesteps, give exactly the
    sequential outputs (the time vector travels with the call, not through module state)."""
    torch.manual_seed(0)
    model = smp_like.Unet(**CASES["Unet"][0], time_embedding_dim=8).eval()
    assert len(model.time_injections) > 0  # the hook path, which once shared one attribute between callers
    x = torch.randn(2, 3, 32, 32)
    steps = {0: torch.tensor([1, 2]), 1: torch.tensor([700, 900])}
    with torch.no_grad():
        expected = {k: model(x, t) for k, t in steps.items()}
    assert not torch.equal(expected[0], expected[1])
    mismatches = []
    barrier = threading.Barrier(2)

    def work(k: int) -> None:
        barrier.wait()
        with torch.no_grad():
            for _ in range(40):
                if not torch.equal(model(x, steps[k]), expected[k]):
                    mismatches.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
    assert all(injection.embedding is None for injection in model.time_injections)
