"""Short garbage collections while training reports to the GUI (``_widgets/quiet_gc``)."""

import gc

from napari_spatimeinr._widgets import quiet_gc


class _Cycle:
    def __init__(self):
        self.me = self


def test_hold_freezes_what_lives_and_release_gives_it_back():
    assert not quiet_gc.holding()
    before = gc.get_freeze_count()
    quiet_gc.hold()
    quiet_gc.hold()  # nested: training and a QC check
    try:
        frozen = gc.get_freeze_count()
        assert frozen > before  # napari's objects are no longer walked by each collection
        quiet_gc.release()
        # still frozen (objects freed meanwhile by other threads leave the count: not "==")
        assert quiet_gc.holding() and gc.get_freeze_count() > frozen // 2
    finally:
        quiet_gc.release()
    assert not quiet_gc.holding() and gc.get_freeze_count() == 0
    quiet_gc.release()  # one too many: nothing happens
    assert gc.get_freeze_count() == 0


def test_garbage_made_while_holding_is_collected():
    quiet_gc.hold()
    try:
        c = _Cycle()
        ref = __import__("weakref").ref(c)
        del c
        gc.collect()
        assert ref() is None  # new objects are collected as usual
    finally:
        quiet_gc.release()


def test_garbage_freed_during_a_hold_is_collected_after_it():
    c = _Cycle()
    ref = __import__("weakref").ref(c)
    quiet_gc.hold()
    try:
        del c  # e.g. a layer the user deletes while training runs
        gc.collect()
        assert ref() is not None  # frozen: not walked
    finally:
        quiet_gc.release()
    gc.collect()
    assert ref() is None
