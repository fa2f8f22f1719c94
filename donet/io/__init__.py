"""Every file format donet reads or writes, one module each, one reader and one writer per
format; the CLI, evaluation and the napari plugin call these and parse nothing themselves.

- `images`: PNG, JPEG, TIFF (8/16-bit, gray or colour; OME-TIFF focal stacks and channels)
- `slides`: whole slides (tiled TIFF, SVS, OME-TIFF pyramids, NDPI, MRXS, DICOM WSI...)
- `coco`: COCO instances (annotations and scored predictions), RLE or polygons
- `isbi2014`: the ISBI 2014 challenge's two layouts; `datasets` opens any dataset layout
- `geojson`: QuPath GeoJSON; `imagej`: ImageJ / Fiji ROI sets; `parquet`: instance tables;
  `label_stack`: overlap-keeping label stacks; `polygons`: mask outlines they share
"""

from .coco import (
    read_coco,
    read_predictions,
    to_coco,
    write_coco,
    write_dataset,
    write_predictions,
)
from .datasets import DataFormat, open_dataset
from .isbi2014 import read_isbi_mat, read_isbi_png

__all__ = [
    "DataFormat", "open_dataset", "read_coco", "read_isbi_mat", "read_isbi_png", "read_predictions", "to_coco",
    "write_coco", "write_dataset", "write_predictions",
]
