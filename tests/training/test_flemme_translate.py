"""Flemme config dialect: detection, translation (models, data, transforms, losses, schedules), the one warning,
and Flemme-style checkpoints. End-to-end runs live in test_flemme_runs.py."""

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

import smp_like
from smp_like.training.flemme import FlemmeConfigWarning, is_flemme_config, translate
from smp_like.training.flemme.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

pytest.importorskip("pydantic")
pytest.importorskip("lightning")


def flemme(model=None, loader=None, **top):
    """A minimal Flemme train config: SeM on a tiny UNet, one ImgSegDataset."""
    cfg = {
        "mode": "train",
        "model": model or {"name": "SeM", "segmentation_losses": [{"name": "Dice"}],
                           "encoder": tiny_encoder("UNet")},
        "loader": loader or {"dataset": {"name": "ImgSegDataset", "data_path": "data"}, "batch_size": 2},
        "optimizer": {"name": "Adam", "lr": 1e-3},
    }
    cfg.update(top)
    return cfg


def tiny_encoder(name, block=None, **extra):
    family_block = {"CNN": "single", "UNet": "single", "DNet": "single", "ViT": "vit", "ViTU": "vit", "ViTD": "vit",
                    "Swin": "swin", "SwinU": "swin", "SwinD": "swin", "VMamba": "vmamba", "VMambaU": "vmamba",
                    "VMambaD": "vmamba"}[name]
    enc = {"name": name, "image_size": [24, 40], "in_channel": 1, "out_channel": 2, "patch_channel": 8,
           "patch_size": 2, "down_channels": [16, 32], "middle_channels": [32], "num_blocks": 1,
           "building_block": block or family_block}
    if name.startswith("Swin"):
        enc["window_size"] = 4
    enc.update(extra)
    return enc


def build(native_model, classes=2):
    kwargs = dict(native_model)
    return smp_like.create_model(kwargs.pop("arch"), classes=classes, **kwargs)


def test_detection():
    assert is_flemme_config(flemme())
    assert is_flemme_config({"model": {"name": "DDPM"}, "test_loader": {}})
    assert not is_flemme_config({"model": {"arch": "Unet"}, "data": {}})
    assert not is_flemme_config({"model": {"name": "SeM"}})  # no loader section
    assert not is_flemme_config({"model": {"name": "Unet"}, "loader": {}})  # not a Flemme model name
    assert not is_flemme_config(["model"])


# ------------------------------------------------------------------------------------------ encoders and blocks

ENCODERS = {
    # Flemme name: (encoder class, architecture, skips)
    "CNN": ("FlemmeCNNEncoder", smp_like.Unet, "none"),
    "UNet": ("FlemmeCNNEncoder", smp_like.Unet, "cat"),
    "DNet": ("FlemmeCNNEncoder", smp_like.UnetPlusPlus, None),
    "ViT": ("FlemmeViTEncoder", smp_like.Unet, "none"),
    "ViTU": ("FlemmeViTEncoder", smp_like.Unet, "cat"),
    "ViTD": ("FlemmeViTEncoder", smp_like.UnetPlusPlus, None),
    "Swin": ("FlemmeSwinEncoder", smp_like.Unet, "none"),
    "SwinU": ("FlemmeSwinEncoder", smp_like.Unet, "cat"),
    "SwinD": ("FlemmeSwinEncoder", smp_like.UnetPlusPlus, None),
    "VMamba": ("FlemmeVMambaEncoder", smp_like.Unet, "none"),
    "VMambaU": ("FlemmeVMambaEncoder", smp_like.Unet, "cat"),
    "VMambaD": ("FlemmeVMambaEncoder", smp_like.UnetPlusPlus, None),
}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_every_encoder_builds_the_expected_structure(name):
    native, report = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder(name)}))
    model = build(native["model"])
    enc_cls, arch, skip = ENCODERS[name]
    assert type(model) is arch
    assert type(model.encoder).__name__ == enc_cls
    # patch_size 2 (one stride-2 level) + 2 down levels = depth 3; widths: patch 8, then 16, then the middle 32
    assert model.encoder.depth == 3
    assert tuple(model.encoder.out_channels) == (1, 8, 16, 32)
    assert native["model"]["decoder_channels"] == [16, 8, 8]  # the encoder's widths, mirrored
    if skip is not None:
        assert model.decoder.blocks[0].fusion.mode == skip if hasattr(model.decoder.blocks[0], "fusion") else \
            skip == "cat"
        assert native["model"].get("decoder_skip", "cat") == skip
    out = model(torch.randn(1, 1, 24, 40))
    assert out.shape == (1, 2, 24, 40)
    assert native["data"]["classes"] == ["background", "class_1"] and native["data"]["task"] == "multiclass"


def _block_classes(model):
    return [type(m).__name__ for m in model.encoder.modules()]


@pytest.mark.parametrize("flemme_block,expected", [
    ("single", "SingleConv"), ("conv", "SingleConv"), ("double", "DoubleConv"), ("double_conv", "DoubleConv"),
    ("res", "ResConv"), ("res_conv", "ResConv"),
])
def test_cnn_building_blocks(flemme_block, expected):
    native, _ = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder("UNet", flemme_block)}))
    model = build(native["model"])
    names = _block_classes(model)
    assert expected in names
    assert not {"SingleConv", "DoubleConv", "ResConv"} - {expected} & set(names)
    # a ResNet-style UNet also gets residual decoder blocks
    assert native["model"].get("decoder_block", "conv") == ("res_conv" if expected == "ResConv" else "conv")


@pytest.mark.parametrize("flemme_block,expected", [("swin", "SwinBlock"), ("double_swin", "SwinPair"),
                                                   ("res_swin", "ResidualSwinPair")])
def test_swin_building_blocks(flemme_block, expected):
    native, _ = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder("SwinU", flemme_block)}))
    model = build(native["model"])
    assert expected in _block_classes(model)
    assert native["model"]["decoder_block"] == "swin"
    assert native["model"]["decoder_block_kwargs"]["building_block"] == flemme_block
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)


@pytest.mark.parametrize("flemme_block,version,vss,mixers", [
    ("vmamba", 1, 1, 1), ("vmamba2", 2, 1, 1), ("double_vmamba", 1, 2, 2), ("double_vmamba2", 2, 2, 2),
    ("res_vmamba", 1, 1, 2), ("res_vmamba2", 2, 1, 2),
])
def test_vmamba_building_blocks(flemme_block, version, vss, mixers):
    native, _ = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder("VMamba", flemme_block)}))
    model = build(native["model"])
    mods = list(model.encoder.modules())
    ss2d = [m for m in mods if type(m).__name__ == "SS2D"]
    per_stage = 4  # patch level + 2 down levels + the middle stage (middle_channels [32]), num_blocks 1 each
    assert {m.version for m in ss2d} == {version}
    assert sum(type(m).__name__ == "VSSBlock" for m in mods) == vss * per_stage
    assert len(ss2d) == mixers * per_stage


def test_vit_block_and_attention_unet():
    native, _ = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder("ViTU")}))
    assert "ViTBlock" in _block_classes(build(native["model"]))
    # AttenUNet-style: attention after the convolutions of the down / middle levels
    enc = tiny_encoder("UNet", down_attens=[None, "atten"], middle_attens=["atten"])
    native, report = translate(flemme(model={"name": "SeM", "encoder": enc}))
    assert native["model"]["attention"] == "self"
    model = build(native["model"])
    assert any("Attention" in n for n in _block_classes(model))
    assert any("down_attens" in n for n in report.notes)


def test_flemme_encoder_defaults_and_depth():
    # Flemme's defaults: in_channel 1, patch_size 2, patch_channel 32, down_channels [64, 128, 256], group norm
    native, _ = translate(flemme(model={"name": "SeM", "encoder": {"name": "UNet", "out_channel": 1}}))
    m = native["model"]
    assert (m["in_channels"], m["patch_size"], m["patch_channel"], m["down_channels"]) == (1, 2, 32, [64, 128, 256])
    assert m["encoder_depth"] == 4 and m["normalization"] == "group"
    assert "activation" not in m  # an architecture's `activation` is its output activation, not the encoder's
    assert m["decoder_channels"] == [128, 64, 32, 32]
    assert native["data"]["task"] == "binary" and native["data"]["classes"] == ["foreground"]
    # patch_size 4: two strides in the patch embedding
    native, _ = translate(flemme(model={"name": "SeM", "encoder": tiny_encoder("UNet", patch_size=4)}))
    model = build(native["model"])
    assert model.encoder.depth == 4 and tuple(model.encoder.out_channels) == (1, 0, 8, 16, 32)


def test_hierarchical_and_autoencoders():
    native, _ = translate(flemme(model={"name": "HSeM", "segmentation_losses": {"name": "CE"},
                                        "encoder": tiny_encoder("UNet")}))
    assert native["model"]["arch"] == "HSeM" and native["loss"]["deep_supervision"] is True
    assert native["loss"]["terms"] == [{"name": "CrossEntropy", "weight": 1.0}]
    model = build(native["model"])
    assert type(model.encoder).__name__ == "FlemmeCNNEncoder" and model.encoder.depth == 3
    vae = {"name": "VAE", "reconstruction_losses": [{"name": "MSE"}],
           "distribution_loss": {"name": "KL", "weight": 0.01},
           "encoder": tiny_encoder("CNN", out_channel=1)}
    loader = {"dataset": {"name": "ImgDataset", "data_path": "imgs"}}
    native, _ = translate(flemme(model=vae, loader=loader))
    m = native["model"]
    assert m["arch"] == "VAE" and m["encoder_name"] == "cnn" and m["encoder_depth"] == 3
    assert m["decoder_channels"] == [16, 8, 8] and m["latent_channels"] == 32
    assert native["loss"]["terms"] == [{"name": "MSELoss", "weight": 1.0}, {"name": "KLDivergenceLoss", "weight": 0.01}]
    assert native["data"]["train"][0]["masks"] is None and native["data"]["train"][0]["images"].endswith("imgs")
    # the Flemme encoder's widths reach the auto-encoder's encoder (AE/VAE/HAE/ClM pass encoder options on)
    built = smp_like.create_model("VAE", **{k: v for k, v in m.items() if k != "arch"})
    assert built.encoder.out_channels[1:3] == (8, 16)


# ------------------------------------------------------------------------------------------ diffusion


def _eps(name="UNet", **extra):
    return {"time_channel": 16, "encoder": tiny_encoder(name, **extra)}


def test_ddpm_flat_and_consine():
    model = {"name": "DDPM", "num_steps": 50, "beta_schedule": "consine", "eps_loss": {"name": "MSE"},
             "eps_model": _eps(in_channel=1, out_channel=1), "sample_num_steps": 10}
    loader = {"dataset": {"name": "ImgDataset", "data_path": "x"},
              "data_transforms": [{"name": "ToTensor"}, {"name": "Normalize", "mean": [0.5], "std": [0.5]}]}
    native, report = translate(flemme(model=model, loader=loader))
    m = native["model"]
    assert m["arch"] == "DDPM" and m["beta_schedule"] == "cosine" and m["num_train_timesteps"] == 50
    # generative runs scale images themselves ([0, 1], diffusion [-1, 1]): Normalize is listed, not translated
    assert "normalization" not in native["data"] and report.ignored_keys == ["loader.data_transforms.1"]
    assert m["num_inference_steps"] == 10 and m["time_embedding_dim"] == 16 and m["in_channels"] == 1
    assert m["eps_model"]["arch"] == "Unet" and m["eps_model"]["down_channels"] == [16, 32]
    assert native["loss"] == {"terms": [{"name": "MSELoss"}]}
    model["beta_schedule"] = "linear"
    assert translate(flemme(model=model))[0]["model"]["beta_schedule"] == "linear"


def test_nested_diffusion_form_and_identity_condition():
    eps = _eps(in_channel=1, out_channel=1)
    eps["condition_embedding"] = {"combine_condition": "cat", "merge_timestep_and_condition": False,
                                  "encoder": {"name": "Identity", "out_channel": 3}}
    flat = {"name": "SDIM", "num_steps": 40, "num_ensemble": 2, "beta_schedule": "consine",
            "eps_loss": {"name": "MSE"}, "eps_model": copy.deepcopy(eps)}
    nested = {"name": "SDM", "diffusion": {"name": "DDIM", "num_steps": 40, "num_ensemble": 2,
                                           "beta_schedule": "consine", "eps_loss": {"name": "MSE"},
                                           "eps_model": copy.deepcopy(eps)}}
    a, ra = translate(flemme(model=flat))
    b, rb = translate(flemme(model=nested))
    assert a["model"] == b["model"]
    m = b["model"]
    assert m["arch"] == "SDIM" and m["in_channels"] == 3 and m["classes"] == 1 and m["num_ensemble"] == 2
    assert m["image_conditioning"] == "concat" and "condition_channels" not in m
    assert b["generation"]["num_ensemble"] == 2
    assert b["data"]["task"] == "binary"
    assert not ra.unknown and not rb.unknown


def test_class_conditioned_ddpm_and_guidance():
    eps = _eps(in_channel=1, out_channel=1)
    eps["condition_embedding"] = {"combine_condition": "add", "merge_timestep_and_condition": True,
                                  "encoder": {"name": "OneHot", "type": "categories", "out_channel": 16,
                                              "num_classes": 10}}
    model = {"name": "DDPM", "num_steps": 20, "classifier_free_guidance": {"condition_dropout": 0.2,
                                                                           "guidance_weight": 2.0}, "eps_model": eps}
    native, report = translate(flemme(model=model))
    m = native["model"]
    assert (m["num_classes"], m["class_embedding"], m["condition_dropout"], m["guidance_scale"]) == (10, "one_hot",
                                                                                                       0.2, 2.0)
    assert "model.eps_model.condition_embedding.encoder.type" in report.ignored_keys


def test_edm_and_download_datasets_are_clear_errors(tmp_path):
    from smp_like.training.flemme import FlemmeConfigError as ConfigError

    with pytest.raises(ConfigError, match="EDM .* not supported"):
        translate(flemme(model={"name": "EDM", "eps_model": _eps()}))
    with pytest.raises(ConfigError, match="EDM .* not supported"):
        translate(flemme(model={"name": "SDM", "diffusion": {"name": "EDM", "eps_model": _eps()}}))
    with pytest.raises(ConfigError, match="MNIST is downloaded .* offline"):
        translate(flemme(loader={"dataset": {"name": "MNIST", "data_path": str(tmp_path / "nowhere")}}))
    (tmp_path / "mnist" / "raw").mkdir(parents=True)
    native, report = translate(flemme(model={"name": "VAE", "encoder": tiny_encoder("CNN")},
                                      loader={"dataset": {"name": "MNIST", "data_path": str(tmp_path / "mnist"),
                                                          "data_dir": "raw"}}), base=tmp_path)
    assert native["data"]["train"][0]["images"] == str(tmp_path / "mnist" / "raw")
    assert any("local copy" in n for n in report.notes)


# ------------------------------------------------------------------------------------------ data


def test_flemme_data_defaults_and_pairing(tmp_path):
    native, _ = translate(flemme(loader={"dataset": {"name": "ImgSegDataset", "data_path": "ds"}}), base=tmp_path)
    split = native["data"]["train"][0]
    assert split == {"images": str(tmp_path / "ds" / "raw"), "masks": str(tmp_path / "ds" / "label"),
                     "image_suffix": ".png", "mask_suffix": ".png", "pairing": "flemme"}
    # label suffix = data suffix unless given; list of data paths
    loader = {"dataset": {"name": "ImgSegDataset", "data_dir": "img", "label_dir": "seg", "data_suffix": ".nii.gz",
                          "dim": 3}, "data_path_list": ["a", "b"]}
    native, _ = translate(flemme(loader=loader), base=tmp_path)
    assert [s["images"] for s in native["data"]["train"]] == [str(tmp_path / "a" / "img"), str(tmp_path / "b" / "img")]
    assert {s["mask_suffix"] for s in native["data"]["train"]} == {".nii.gz"} and native["data"]["dim"] == 3
    # multi-modality: a suffix per modality, stacked as channels
    loader = {"dataset": {"name": "MultiModalityImgSegDataset", "dim": 3, "data_path": "brats", "data_dir": "flair",
                          "label_dir": "seg", "data_suffix": ["_flair.nii.gz", "_t1.nii.gz"],
                          "label_suffix": "_seg.nii.gz", "data_combine": "cat"}}
    native, _ = translate(flemme(loader=loader), base=tmp_path)
    split = native["data"]["train"][0]
    assert split["image_suffix"] == ["_flair.nii.gz", "_t1.nii.gz"] and split["mask_suffix"] == "_seg.nii.gz"
    assert native["model"]["in_channels"] == 2
    # patches (slice_builder) and crop_nonzero
    loader = {"dataset": {"name": "PatchImgSegDataset", "dim": 3, "data_path": "v", "data_suffix": ".nii.gz",
                          "crop_nonzero": {"margin": [2, 2, 2], "crop_by": "raw"},
                          "slice_builder": {"patch_shape": [16, 16, 16], "stride_shape": [8, 8, 8]}}}
    native, report = translate(flemme(loader=loader), base=tmp_path)
    assert native["data"]["patch_size"] == [16, 16, 16] and native["data"]["crop_nonzero"] == {"margin": [2, 2, 2]}
    assert "loader.dataset.slice_builder.stride_shape" in report.ignored_keys
    assert "resize" not in native["data"]  # image_size does not resize patch-trained volumes


def test_transforms_map_to_native_keys():
    def data_of(data_t=(), label_t=(), dim=2, name="ImgSegDataset"):
        loader = {"dataset": {"name": name, "data_path": "d", "dim": dim}, "data_transforms": list(data_t),
                  "label_transforms": list(label_t)}
        return translate(flemme(loader=loader))

    native, _ = data_of([{"name": "Resize", "size": [32, 48]}, {"name": "ToTensor"},
                         {"name": "Normalize", "mean": [0.5], "std": [0.5]}, {"name": "InverseColor"},
                         {"name": "GrayScale"}],
                        [{"name": "Resize", "size": [32, 48]}, {"name": "Relabel", "map": [[255, 1], [128, 2]]},
                         {"name": "ToOneHot", "num_classes": 3}])
    d = native["data"]
    assert d["resize"] == [32, 48] and d["invert_intensity"] is True and d["grayscale"] is True
    assert d["normalization"] == {"normalization": "mean_std", "mean": [0.5], "std": [0.5]}
    assert d["label_map"] == {255: 1, 128: 2}
    native, _ = data_of(label_t=[{"name": "Relabel", "offset": -1}])
    assert native["data"]["label_offset"] == -1
    native, _ = data_of(label_t=[{"name": "Relabel"}])
    assert native["data"]["relabel_consecutive"] is True
    native, _ = data_of(label_t=[{"name": "ToBinaryMask", "threshold": 0.5}])
    assert native["data"]["mask_threshold"] == 0.5
    # ToOneHot's num_classes against the model's out_channel
    model = {"name": "SeM", "encoder": tiny_encoder("UNet", out_channel=3)}
    loader = {"dataset": {"name": "ImgSegDataset", "data_path": "d"},
              "label_transforms": [{"name": "ToOneHot", "num_classes": 3}]}
    native, report = translate(flemme(model=model, loader=loader))
    assert native["data"]["classes"] == ["background", "class_1", "class_2"] and not report.notes
    # random 2D transforms -> albumentations
    native, _ = data_of([{"name": "RandomHorizontalFlip", "p": 0.3}, {"name": "RandomRotation", "degrees": 15}])
    assert native["data"]["augment"]["train"] == [{"name": "HorizontalFlip", "p": 0.3},
                                                  {"name": "Rotate", "limit": [-15.0, 15.0], "p": 1.0}]
    # Flemme's random volume transforms -> smp_like's 3D ones; ElasticDeform has no 3D equivalent (listed)
    native, report = data_of([{"name": "RandomFlip", "axis_prob": 0.5}, {"name": "RandomRotate90"},
                              {"name": "RandomContrast", "alpha": [0.7, 1.3], "execution_probability": 0.2},
                              {"name": "ElasticDeform"}, {"name": "Normalize"}, {"name": "ToTensor"}], dim=3)
    aug = native["data"]["augment"]["train"]
    assert [a["name"] for a in aug] == ["RandomFlip3D", "RandomRotate90_3D", "RandomIntensity"]
    assert aug[0]["p"] == 0.5 and aug[2]["p"] == 0.2 and math.isclose(aug[2]["scale"], 0.3)
    assert native["data"]["normalization"] == {"normalization": "zscore"}
    assert report.ignored_keys == ["loader.data_transforms.3"]


# ------------------------------------------------------------------------------------------ the warning


def test_report_lists_exactly_the_ignored_and_unknown_keys():
    cfg = flemme(
        model={"name": "SeM", "segmentation_losses": [{"name": "Dice", "normalization": "sigmoid"},
                                                      {"name": "BCEL", "weight": 0.5}],
               "encoder": tiny_encoder("UNet", out_channel=1, dense_channels=[64], z_count=1, dropuot=0.1)},
        eval_batch_num=4, tsne_visualization=True, write_after_iters=10, max_epochs=3, save_after_epochs=2,
        rand_seed=3, determinstic=True, score_metric={"name": "Dice", "higher_is_better": True},
        evaluation_metrics={"seg": [{"name": "Dice"}, {"name": "ACC"}], "recon": [{"name": "SSIM"}]},
    )
    native, report = translate(cfg)
    assert sorted(report.ignored_keys) == sorted([
        "model.segmentation_losses.0.normalization", "model.encoder.dense_channels", "model.encoder.z_count",
        "eval_batch_num", "tsne_visualization", "evaluation_metrics.recon",
    ])
    assert report.unknown == [("model.encoder.dropuot", " (did you mean 'dropout'?)"),
                              ("max_epochs", " (did you mean 'max_epoch'?)")]
    text = report.message("x.yaml")
    for key in report.ignored_keys + report.unknown_keys:
        assert key in text
    # and what was translated is in the native config
    assert native["trainer"]["deterministic"] is True and native["seed"] == 3
    assert native["trainer"]["log_every_n_steps"] == 10 and native["checkpoint"]["every_n_epochs"] == 2
    assert native["metrics"] == {"names": ["dice", "accuracy"], "monitor": "val/dice", "mode": "max"}
    assert native["loss"]["terms"] == [{"name": "Dice", "weight": 1.0}, {"name": "BCEWithLogits", "weight": 0.5}]
    # a clean config: nothing to report
    assert translate(flemme())[1].message() == ""


def test_optimizer_scheduler_and_trainer_keys():
    cfg = flemme(optimizer={"name": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
                 lr_scheduler={"name": "OneCycleLR", "total_steps": 7, "max_lr": 0.1, "pct_start": 0.2},
                 warmup_epochs=2, warmup_start_scale=0.01, max_epoch=5, max_steps=40, clip_grad=1.0,
                 early_stop_patience=3, check_point_dir="ckp")
    native, report = translate(cfg, base=Path("/tmp"))
    assert native["optimizer"] == {"name": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    assert native["scheduler"] == {"name": "OneCycleLR", "pct_start": 0.2, "warmup": 2, "warmup_start_factor": 0.01}
    assert native["trainer"]["max_epochs"] == 5 and native["trainer"]["max_steps"] == 40
    assert native["trainer"]["gradient_clip_val"] == 1.0 and native["early_stopping"] == {"patience": 3}
    assert native["checkpoint"]["flemme_dir"] == "/tmp/ckp" and native["output_dir"] == "/tmp/ckp"
    assert not report.unknown


def test_test_config_keys(tmp_path):
    cfg = flemme(mode="test", model_path="ckp/ckp_best_score.pth", seg_dir="out", save_input=True,
                 save_target=True, save_colorized=True)
    native, report = translate(cfg, base=tmp_path)
    assert native["test"] == {"checkpoint": str(tmp_path / "ckp" / "ckp_best_score.pth"),
                              "output_dir": str(tmp_path / "out"), "save_inputs": True, "save_targets": True,
                              "colorize": True}
    assert native["data"]["test"] == native["data"]["train"]
    assert not report.ignored and not report.unknown


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = smp_like.Unet("cnn", encoder_weights=None, encoder_depth=2, decoder_channels=[8, 8], in_channels=1,
                          classes=2, patch_channel=8, down_channels=[8, 8]).eval()
    path = save_checkpoint(model, tmp_path / "ckp_last.pth", epoch=3, loss=0.5, score=0.7, monitor="val/dice")
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert data["epoch"] == 3 and data["model_config"]["_model_class"] == "Unet"
    again = model_from_checkpoint(path)
    x = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # a file that is not an smp_like checkpoint is a clear error
    torch.save({"model": {}}, tmp_path / "flemme.pth")
    with pytest.raises(ValueError, match="not an smp_like ckp"):
        load_checkpoint(tmp_path / "flemme.pth")


def test_ddpm_checkpoint_loads_as_ddim(tmp_path):
    ddpm = smp_like.DDPM(architecture="unet", encoder_name="resnet18", encoder_depth=2, decoder_channels=[8, 8],
                         in_channels=1, time_embedding_dim=8, num_train_timesteps=20)
    path = save_checkpoint(ddpm, tmp_path / "ckp_last.pth", epoch=1)
    ddim = model_from_checkpoint(path, arch="DDIM", overrides={"num_inference_steps": 5, "encoder_depth": 4})
    assert type(ddim).__name__ == "DDIM" and ddim.num_inference_steps == 5
    for (k, a), (_, b) in zip(ddpm.state_dict().items(), ddim.state_dict().items()):
        assert torch.equal(a, b), k
    # an unrelated class in the config does not replace the saved one
    assert type(model_from_checkpoint(path, arch="Unet")).__name__ == "DDPM"


def test_validation_loader_differences_are_listed():
    train_loader = {"dataset": {"name": "ImgSegDataset", "data_path": "t"},
                    "data_transforms": [{"name": "Resize", "size": [32, 32]}, {"name": "RandomVerticalFlip"}]}
    val_loader = {"dataset": {"name": "ImgSegDataset", "data_path": "v"},
                  "data_transforms": [{"name": "Resize", "size": [64, 64]}, {"name": "RandomVerticalFlip"}],
                  "batch_size": 1}
    native, report = translate(flemme(loader=train_loader, val_loader=val_loader))
    assert native["data"]["resize"] == [32, 32] and native["data"]["val_batch_size"] == 1
    assert native["data"]["augment"]["train"] == [{"name": "VerticalFlip", "p": 0.5}]
    assert report.ignored_keys == ["val_loader.data_transforms.1", "val_loader (resize)"]


def test_latent_diffusion_ae_path_from_an_smp_like_checkpoint(tmp_path):
    vae = smp_like.VAE(encoder_name="cnn", encoder_depth=2, decoder_channels=[8, 8], in_channels=1,
                       latent_channels=4)
    save_checkpoint(vae, tmp_path / "ae" / "ckp_best_loss.pth", epoch=1)
    eps = {"time_channel": 8, "encoder": {"name": "UNet", "in_channel": 4, "out_channel": 4, "patch_size": 1,
                                          "patch_channel": 8, "down_channels": [8], "num_blocks": 1}}
    model = {"name": "LDIM", "num_steps": 10, "freezed_ae": True, "ae_path": "ae/ckp_best_loss.pth",
             "ae_model": {"name": "VAE", "encoder": {"name": "CNN"}}, "eps_model": eps}
    native, report = translate(flemme(model=model, loader={"dataset": {"name": "ImgDataset", "data_path": "x"}}),
                               base=tmp_path)
    folder = native["model"]["autoencoder"]["from_pretrained"]
    assert folder == str(tmp_path / "ae" / "ckp_best_loss_pretrained")
    loaded = smp_like.from_pretrained(folder)
    for (k, a), (_, b) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert native["model"]["arch"] == "LDIM" and native["model"]["freeze_autoencoder"] is True
    assert "model.ae_model" in report.ignored_keys
