"""Built-in datasets: synthetic shapes for the demo and the tests."""

from smp_like.datasets.shapes import SHAPES_CLASSES, SHAPES_MEAN, SHAPES_STD, ShapesDataset

__all__ = ["ShapesDataset", "SHAPES_CLASSES", "SHAPES_MEAN", "SHAPES_STD"]
