"""Reading stacks into :class:`~napari_spatimeinr.data.Stack4D` and writing outputs, by suffix."""
