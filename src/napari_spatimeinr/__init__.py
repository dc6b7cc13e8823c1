"""napari-spatimeinr: continuous 4D (T,Z,Y,X) super-resolution of fluorescence time-lapses.

The core (everything outside ``_widgets`` and the napari hook modules) never imports Qt or napari:
use :mod:`napari_spatimeinr.api` from scripts and notebooks.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

if sys.platform == "darwin":  # an operation the Apple GPU lacks runs on the CPU (core/device.py)
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # read when torch is imported

try:
    __version__ = version("napari-spatimeinr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
