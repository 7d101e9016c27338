"""Registry API: SMP's custom-encoder example, register_encoder, preprocessing, errors."""

from typing import List

import numpy as np
import pytest
import torch

import smp_like
import smp_like as smp
from smp_like.encoders import (
    UnknownEncoderError,
    encoders,
    get_encoder,
    get_encoder_names,
    get_preprocessing_fn,
    get_preprocessing_params,
    register_encoder,
)


@pytest.fixture
def clean_registry():
    before = dict(encoders)
    yield
    encoders.clear()
    encoders.update(before)


# ---- The SMP insights seed, verbatim apart from the package name; only the `...` placeholders are filled in
# ---- with a real small encoder, since the seed leaves them to the reader.
from smp_like.encoders._base import EncoderMixin  # noqa: E402


class MyEncoder(torch.nn.Module, EncoderMixin):

    def __init__(self, **kwargs):
        super().__init__()

        # A number of channels for each encoder feature tensor, list of integers
        self._out_channels: List[int] = [3, 16, 64, 128, 256, 512]

        # A number of stages in decoder (in other words number of downsampling operations), integer
        # use in in forward pass to reduce number of returning features
        self._depth: int = 5

        # Default number of input channels in first Conv2d layer for encoder (usually 3)
        self._in_channels: int = 3

        # Define encoder modules below
        channels = self._out_channels
        self.stages = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1), torch.nn.ReLU())
            for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Produce list of features of different spatial resolutions, each feature is a 4D torch.tensor of
        shape NCHW (features should be sorted in descending order according to spatial resolution, starting
        with resolution same as input `x` tensor).

        Input: `x` with shape (1, 3, 64, 64)
        Output: [f0, f1, f2, f3, f4, f5] - features with corresponding shapes
                [(1, 3, 64, 64), (1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8),
                (1, 512, 4, 4), (1, 1024, 2, 2)] (C - dim may differ)

        also should support number of features according to specified depth, e.g. if depth = 5,
        number of feature tensors = 6 (one with same resolution as input and 5 downsampled),
        depth = 3 -> number of feature tensors = 4 (one with same resolution as input and 3 downsampled).
        """
        feat1 = x
        feat2 = self.stages[0](feat1)
        feat3 = self.stages[1](feat2)
        feat4 = self.stages[2](feat3)
        feat5 = self.stages[3](feat4)
        feat6 = self.stages[4](feat5)
        return [feat1, feat2, feat3, feat4, feat5, feat6]


def test_seed_custom_encoder_example(clean_registry, tmp_path, monkeypatch):
    # The seed's weights URL is fictitious; as with torch.hub, a file already in the hub cache is used without
    # any download, which is what lets the example run offline as written.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    reference = MyEncoder()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "my-model-weights")

    smp.encoders.encoders["my_awesome_encoder"] = {
        "encoder": MyEncoder,  # encoder class here
        "pretrained_settings": {
            "imagenet": {
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "url": "https://some-url.com/my-model-weights",
                "input_space": "RGB",
                "input_range": [0, 1],
            },
        },
        "params": {
            # init params for encoder if any
        },
    }

    model = smp.Unet(encoder_name="my_awesome_encoder")

    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value)
    mask = model.eval()(torch.randn(1, 3, 64, 64))
    assert mask.shape == (1, 1, 64, 64)
    assert model.encoder.reductions == (1, 2, 4, 8, 16, 32)
    assert get_preprocessing_params("my_awesome_encoder")["mean"] == [0.485, 0.456, 0.406]

    aux_params = dict(pooling="avg", dropout=0.5, activation="sigmoid", classes=4)
    model = smp.Unet("my_awesome_encoder", classes=4, aux_params=aux_params, encoder_weights=None)
    mask, label = model.eval()(torch.randn(2, 3, 64, 64))
    assert mask.shape == (2, 4, 64, 64) and label.shape == (2, 4)
    assert torch.all((label >= 0) & (label <= 1))


def test_register_encoder_decorator_and_function(clean_registry):
    @register_encoder("tiny_test_encoder", params={"width": 4})
    class Tiny(torch.nn.Module, EncoderMixin):
        def __init__(self, width, depth=5):
            super().__init__()
            self._depth, self._in_channels = depth, 3
            self._out_channels = [3] + [width * 2**i for i in range(5)]
            self.convs = torch.nn.ModuleList(
                torch.nn.Conv2d(self._out_channels[i], self._out_channels[i + 1], 3, 2, 1) for i in range(5)
            )

        def forward(self, x):
            features = [x]
            for conv in self.convs[: self._depth]:
                features.append(conv(features[-1]))
            return features

    assert "tiny_test_encoder" in get_encoder_names()
    model = smp_like.Unet("tiny_test_encoder", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4),
                          in_channels=1)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    assert model.encoder.in_channels == 1 and model.encoder.out_channels == (1, 4, 8, 16)

    register_encoder("tiny_again", Tiny, params={"width": 2})
    assert get_encoder("tiny_again", depth=2).out_channels == (3, 2, 4)
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("tiny_again", Tiny)
    register_encoder("tiny_again", Tiny, params={"width": 8}, overwrite=True)
    assert get_encoder("tiny_again", depth=1).out_channels == (3, 8)
    with pytest.raises(ValueError, match="reserved"):
        register_encoder("tu-mine", Tiny)
    with pytest.raises(TypeError, match="nn.Module"):
        register_encoder("not_a_module", object)
    with pytest.raises(ValueError, match=r"supports spatial_dims \(2,\).*spatial_dims=3.*resnet18"):
        get_encoder("tiny_again", spatial_dims=3)


def test_unknown_encoder_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown `encoder_name` 'resnet19'.*Did you mean.*resnet18") as info:
        get_encoder("resnet19")
    assert isinstance(info.value, KeyError)  # SMP raises KeyError: both kinds of handler keep working
    assert isinstance(info.value, UnknownEncoderError)


def test_unknown_weights_tag_lists_tags():
    with pytest.raises(ValueError, match=r"'imagenet21k'.*resnet18.*\['imagenet', 'ssl', 'swsl'\]"):
        get_encoder("resnet18", weights="imagenet21k")


@pytest.mark.parametrize("bad", [7, 0])
def test_bad_output_stride(bad):
    with pytest.raises(ValueError, match=r"output_stride.*\(8, 16, 32\)"):
        get_encoder("resnet18", output_stride=bad)


def test_preprocessing_params_and_fn():
    params = get_preprocessing_params("resnet34", "imagenet")
    assert params == {"input_space": "RGB", "input_range": [0, 1], "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225]}
    fn = get_preprocessing_fn("resnet34")
    image = np.full((4, 4, 3), 255, dtype=np.uint8)
    out = fn(image)
    np.testing.assert_allclose(out[0, 0], (1 - np.array(params["mean"])) / np.array(params["std"]))
    timm_params = get_preprocessing_params("tu-test_resnet")
    assert len(timm_params["mean"]) == 3 and timm_params["input_range"] == [0, 1]
