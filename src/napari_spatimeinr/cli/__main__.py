"""``python -m napari_spatimeinr.cli``: the ``spatimeinr`` command."""

import sys

from . import main

sys.exit(main())
