"""Short garbage collections in napari's process while a training run reports to the GUI.

A full (generation 2) collection of Python's garbage collector walks every object the process
holds: in napari with a few layers that is hundreds of thousands of objects, and
``benchmarks/gui_pause.py`` measured 360 ms for one on the GUI thread during a t_ctc2d training
run (the progress records, the loss plot and the previews allocate enough to trigger two).

:func:`hold` moves every object alive now to the collector's permanent generation
(:func:`gc.freeze`), so the collections that follow walk only what was made since; :func:`release`
puts them back (:func:`gc.unfreeze`) when the last holder ends, so anything freed meanwhile (a
layer the user deleted) is collected as usual afterwards. Holds nest (training and a QC check).
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holds = 0


def hold() -> None:
    """Freeze the objects alive now until the matching :func:`release`."""
    global _holds
    with _lock:
        if _holds == 0:
            gc.freeze()
        _holds += 1


def release() -> None:
    """End one :func:`hold`; the last one unfreezes (extra calls do nothing)."""
    global _holds
    with _lock:
        if _holds == 0:
            return
        _holds -= 1
        if _holds == 0:
            gc.unfreeze()


def holding() -> bool:
    """Whether a hold is active."""
    return _holds > 0
