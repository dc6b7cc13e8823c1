"""napari dock widgets (the only package, with the napari hook modules, that imports Qt/napari)."""
