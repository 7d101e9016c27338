from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="smp_like",
    version="0.1.0",
    description="Segmentation (and generation) model zoo for PyTorch, drop-in compatible with "
    "segmentation_models_pytorch, with 3D, timm and Hub-hosted weights.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["smp_like", "smp_like.*"]),
    # The true floors, checked by tests/test_min_versions.py: ``X | None`` annotations are evaluated at import
    # (Python 3.10); torch.compiler.is_exporting is first in torch 2.7 (nn.RMSNorm needs 2.4).
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.7",
        "timm>=1.0.26",  # 1.0.26: every torch.load in timm defaults to weights_only=True
        "huggingface_hub>=0.24",
        "safetensors>=0.4",
        "numpy",
        "tqdm",
    ],
    extras_require={
        # Training and data: Lightning is the engine, pydantic validates configs, nibabel/tifffile read volumes
        # and large TIFFs, torchdata gives the resumable (stateful) data loader.
        "train": [
            "albumentations>=2.0",  # Compose(seed=...), set_random_seed, PadIfNeeded(fill=, fill_mask=)
            "matplotlib>=3.5",
            "pyyaml>=6",
            "lightning>=2.3",  # 2.3+: StatefulDataLoader state in checkpoints (mid-epoch resume)
            "torchmetrics>=1.0",  # metric states reduced across processes (installed with lightning; imported directly)
            "pydantic>=2.5",
            "nibabel>=5",
            "tifffile>=2023.7",
            "torchdata>=0.8",
            "tensorboard>=2.14",
        ],
        # MetaImage / NRRD volumes (.mha, .nrrd) besides NIfTI.
        "sitk": ["SimpleITK>=2.2"],
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "hypothesis>=6",
            "segmentation-models-pytorch>=0.5",
            "scipy",
            "onnx",
            "onnxscript",
            "onnxruntime",
            "monai>=1.3",  # test-only oracle for sliding-window inference
            "SimpleITK>=2.2",  # the sitk extra's .mha/.nrrd path is tested (and SimpleITK reads NIfTI as a reference)
        ],
        # `smp-like export --format onnx` writes with torch's exporter (onnxscript) and checks with onnxruntime.
        "export": ["onnx", "onnxscript", "onnxruntime"],
        "mamba": ["mamba-ssm>=2"],
        # The documentation site (mkdocs.yml): `mkdocs build --strict` in CI, API pages from the docstrings.
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    },
    entry_points={"console_scripts": ["smp-like=smp_like.cli:main"]},
)
