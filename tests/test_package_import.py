"""`import smp_like` stays light: no timm, albumentations, matplotlib, lightning or pydantic until they are needed."""

import subprocess
import sys

HEAVY = ("timm", "albumentations", "matplotlib", "torchvision", "huggingface_hub", "segmentation_models_pytorch",
         "lightning", "pydantic", "torchmetrics", "torchdata", "tensorboard")


def _imported_after(statement):
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_is_light():
    assert _imported_after("import smp_like") == ""


def test_building_a_native_unet_does_not_import_timm():
    assert _imported_after("import smp_like as smp; smp.Unet('resnet18', encoder_weights=None)") == ""


def test_public_api_names():
    import smp_like

    for name in ("Unet", "create_model", "from_pretrained", "encoders", "losses", "metrics", "SegmentationModel",
                 "pad_to_stride", "crop_to_shape"):
        assert getattr(smp_like, name) is not None


def test_training_package_import_is_light():
    assert _imported_after("import smp_like.training, smp_like.datasets, smp_like.cli; smp_like.cli.build_parser()") == ""
