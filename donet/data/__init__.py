"""Data layer: the overlap-preserving representation, readers, writers and generators."""

from .cluster_augmentor import ClusterAugmentor
from .coco import read_coco, to_coco, write_coco, write_dataset
from .dataset import Dataset
from .decomposition import decompose, decompose_image
from .formats import DataFormat, open_dataset
from .instances import AnnotatedImage, CellClass, Instance
from .isbi2014 import read_isbi_mat, read_isbi_png
from .stats import dataset_stats
from .synthetic import SynthConfig, generate

__all__ = [
    "AnnotatedImage", "CellClass", "ClusterAugmentor", "DataFormat", "Dataset", "Instance", "SynthConfig",
    "dataset_stats", "decompose", "decompose_image", "generate", "open_dataset", "read_coco", "read_isbi_mat",
    "read_isbi_png", "to_coco", "write_coco", "write_dataset",
]
