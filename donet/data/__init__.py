"""Data layer: the overlap-preserving representation, its measurements and generators.
Reading and writing files is `donet.io`'s."""

from .cluster_augmentor import ClusterAugmentor
from .dataset import Dataset
from .decomposition import decompose, decompose_image
from .instances import AnnotatedImage, CellClass, Instance
from .stats import dataset_stats
from .synthetic import SynthConfig, generate

__all__ = [
    "AnnotatedImage", "CellClass", "ClusterAugmentor", "Dataset", "Instance", "SynthConfig", "dataset_stats",
    "decompose", "decompose_image", "generate",
]
