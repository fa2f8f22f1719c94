"""napari plugin (npe2, `pip install donet[napari]`): overlapping cells as Shapes layers.

Label layers hold one label per pixel; a Shapes layer holds polygons that may overlap, so
each cell stays its own object. `reader` opens donet's outputs (COCO, QuPath GeoJSON,
ImageJ ROI zip) and whole slides (multiscale), `widget` segments an image layer, `writer`
turns edited Shapes layers back into COCO annotations for `donet train`.
"""
