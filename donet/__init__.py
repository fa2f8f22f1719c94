"""donet: DoNet (CVPR 2023) instance segmentation of overlapping, translucent cells."""

__version__ = "0.1.0"
