"""MeshNet and ATrousNet: shapes (2D/3D, odd sizes, aux head), measured receptive field, save/load, errors."""

import pytest
import torch

from smp_like.decoders.atrousnet.model import ATrousNet
from smp_like.decoders.meshnet.model import MeshNet

torch.set_num_threads(1)


def _meshnet(**kw):
    return MeshNet(in_channels=2, classes=3, channels=8, **kw)


def _atrousnet(**kw):
    return ATrousNet(in_channels=2, classes=3, channels=8, **kw)


@pytest.mark.parametrize("build", [_meshnet, _atrousnet])
@pytest.mark.parametrize("size", [(37, 41), (9, 11, 13)])
def test_shapes_and_aux(build, size):
    dims = len(size)
    model = build(spatial_dims=dims, aux_params={"classes": 4, "dropout": 0.1}).eval()
    x = torch.randn(2, 2, *size)
    mask, label = model(x)
    assert mask.shape == (2, 3, *size)
    assert label.shape == (2, 4)
    assert model.encoder.reductions == (1, 1) and model.output_stride == 1
    plain = build(spatial_dims=dims).eval()
    assert plain(x).shape == (2, 3, *size)


def _measured_extent(model, dims, size):
    """Per-axis extent of the non-zero gradient of the centre output pixel w.r.t. the input."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            torch.nn.init.constant_(module.weight, 0.1)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    model = model.double().eval()
    x = torch.ones(1, 1, *size, dtype=torch.float64, requires_grad=True)
    out = model(x)
    centre = tuple(s // 2 for s in size)
    out[(0, 0) + centre].backward()
    nonzero = (x.grad[0, 0] != 0).nonzero()
    extents = [int(nonzero[:, a].max() - nonzero[:, a].min()) + 1 for a in range(dims)]
    # The centre of the support is the centre pixel (symmetric kernels).
    for a in range(dims):
        assert int(nonzero[:, a].max() + nonzero[:, a].min()) == 2 * centre[a]
    return extents


def _linear(cls, **kw):
    # No norm, identity activation, positive weights: nothing cancels, so the support is exactly the receptive field.
    return cls(in_channels=1, classes=1, channels=2, norm=None, layer_activation=None, **kw)


@pytest.mark.parametrize(
    "dilations,expected",
    [
        ((1,), 3),
        ((1, 1, 1), 7),
        ((1, 1, 1, 2), 11),
        ((1, 1, 1, 2, 4), 19),
        ((1, 1, 1, 2, 4, 8), 35),
        ((1, 1, 1, 2, 4, 8, 1), 37),
    ],
)
def test_meshnet_receptive_field_measured(dilations, expected):
    model = _linear(MeshNet, dilations=dilations)
    assert model.receptive_field == expected  # 1 + 2 * sum(d), written out by hand
    size = expected + 6
    assert _measured_extent(model, 2, (size, size + 2)) == [expected, expected]


def test_meshnet_default_schedule_and_growth():
    model = MeshNet(in_channels=1, channels=4)
    assert model.dilations == (1, 1, 1, 2, 4, 8, 1)
    assert model.receptive_field == 37  # Fedorov et al. 2017
    fields = [_linear(MeshNet, dilations=(1, 1, 1, 2, 4, 8, 1)[:n]).receptive_field for n in range(1, 8)]
    assert fields == sorted(set(fields))  # strictly growing with the schedule
    # kernel size, convs per layer and head kernel enter as documented
    assert (
        _linear(MeshNet, dilations=(1, 2), kernel_size=5, convs_per_layer=2).receptive_field == 1 + 2 * 4 * 3
    )
    assert _linear(MeshNet, dilations=(1, 2), head_kernel_size=3).receptive_field == 7 + 2


def test_meshnet_receptive_field_measured_3d_two_convs():
    model = _linear(MeshNet, dilations=(1, 2), convs_per_layer=2, spatial_dims=3)
    assert model.receptive_field == 13
    assert _measured_extent(model, 3, (15, 17, 15)) == [13, 13, 13]


@pytest.mark.parametrize(
    "groups,convs,expected",
    [
        (((1,),), 1, 3),
        (((1,), (1, 2)), 1, 7),
        (((1,), (1, 2), (1, 2, 4)), 1, 15),
        (((1,), (1, 2), (1, 2, 4), (1, 2), (1,)), 1, 21),
        (((1,), (1, 2), (1, 2, 4), (1, 2), (1,)), 2, 41),
        (((4, 1),), 1, 9),
    ],
)
def test_atrousnet_receptive_field_measured(groups, convs, expected):
    model = _linear(ATrousNet, dilation_groups=groups, convs_per_layer=convs)
    assert model.receptive_field == expected  # 1 + 2 * convs * sum of each level's widest branch
    size = expected + 4
    assert _measured_extent(model, 2, (size, size)) == [expected, expected]


def test_atrousnet_default_groups():
    model = ATrousNet(in_channels=1, channels=4)
    assert model.dilation_groups == ((1,), (1, 2), (1, 2, 4), (1, 2), (1,))
    assert model.receptive_field == 41
    assert len(model.encoder.layers[2]) == 3  # three parallel branches at the middle level


@pytest.mark.parametrize("build", [_meshnet, _atrousnet])
def test_save_load_identical(build, tmp_path):
    model = build(aux_params={"classes": 2}, dropout=0.1).eval()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    x = torch.randn(1, 2, 13, 15)
    for a, b in zip(model(x), loaded(x)):
        assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dilations"):
        MeshNet(dilations=(1, -2))
    with pytest.raises(ValueError, match="dilations"):
        MeshNet(dilations=())
    with pytest.raises(ValueError, match="spatial_dims"):
        MeshNet(spatial_dims=4)
    with pytest.raises(ValueError, match="dilation_groups"):
        ATrousNet(dilation_groups=((1,), ()))
    with pytest.raises(ValueError, match="dilation_groups"):
        ATrousNet(dilation_groups=((1, 0),))
    with pytest.raises(ValueError, match="dilation_groups"):
        ATrousNet(dilation_groups=())
    with pytest.raises(ValueError, match="spatial_dims"):
        ATrousNet(spatial_dims=1)
    with pytest.raises(ValueError, match="kernel_size"):
        MeshNet(kernel_size=4)
    with pytest.raises(ValueError, match="channels"):
        MeshNet(channels=0)
    with pytest.raises(TypeError, match="dilations"):
        MeshNet(dilations=3)
    with pytest.raises(ValueError, match="encoder_weights"):
        MeshNet(encoder_weights="imagenet")
    with pytest.raises(ValueError, match="encoder_name"):
        ATrousNet(encoder_name="resnet34")


def test_create_model():
    import smp_like

    # Arguments not given keep the architecture's own defaults (no encoder, no weights).
    model = smp_like.create_model("meshnet", in_channels=1, classes=2, channels=8)
    assert isinstance(model, MeshNet)
    other = smp_like.create_model("ATrousNet", encoder_weights=None, in_channels=1, classes=2, channels=8)
    assert isinstance(other, ATrousNet)
    assert model(torch.randn(1, 1, 11, 13)).shape == (1, 2, 11, 13)


def test_time_embedding_eps_model():
    model = MeshNet(in_channels=1, classes=1, channels=8, dilations=(1, 2), time_embedding_dim=16)
    x = torch.randn(2, 1, 11, 13)
    a = model(x, torch.tensor([1, 1]))
    b = model(x, torch.tensor([500, 500]))
    assert a.shape == (2, 1, 11, 13)
    assert not torch.allclose(a, b)  # the timestep changes the output
    a.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if "injection" in n]
    assert grads and all(g is not None for g in grads)
    # every conv layer of the stack carries an injection
    assert all(
        layer.injection is not None for level in model.encoder.layers for branch in level for layer in branch
    )


@pytest.mark.parametrize("cls", [MeshNet, ATrousNet])
def test_torchscript_matches_eager(cls):
    model = (
        cls(in_channels=1, channels=4, dilations=(1, 2))
        if cls is MeshNet
        else cls(in_channels=1, channels=4, dilation_groups=((1,), (1, 2)))
    )
    model = model.eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, 9, 11)
    assert torch.equal(scripted(x), model(x))
