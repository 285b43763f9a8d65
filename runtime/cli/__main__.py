"""``python -m runtime.cli``: the ``edgeport`` command."""

import sys

from .command import main

sys.exit(main())
