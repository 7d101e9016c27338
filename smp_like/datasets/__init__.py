"""Built-in datasets: synthetic shapes for the demo and the tests, and SMP's Oxford-IIIT Pet readers."""

from smp_like.datasets import oxford_pet
from smp_like.datasets.oxford_pet import OxfordPetDataset, SimpleOxfordPetDataset
from smp_like.datasets.shapes import SHAPES_CLASSES, SHAPES_MEAN, SHAPES_STD, ShapesDataset

__all__ = [
    "ShapesDataset",
    "SHAPES_CLASSES",
    "SHAPES_MEAN",
    "SHAPES_STD",
    "OxfordPetDataset",
    "SimpleOxfordPetDataset",
    "oxford_pet",
]
