"""Training: typed run configuration, schedule, augmentation and the resumable loop."""

from .config import ClusterAugmentation, DataSpec, LowResolution, TrainConfig
from .trainer import RunPaths, TrainingDiverged, train

__all__ = ["ClusterAugmentation", "DataSpec", "LowResolution", "RunPaths", "TrainConfig", "TrainingDiverged", "train"]
