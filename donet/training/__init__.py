"""Training: typed run configuration, schedule, augmentation and the resumable loop."""

from .config import ClusterAugmentation, DataSpec, TrainConfig, cpu_defaults
from .trainer import RunPaths, TrainingDiverged, train

__all__ = ["ClusterAugmentation", "DataSpec", "RunPaths", "TrainConfig", "TrainingDiverged", "cpu_defaults", "train"]
