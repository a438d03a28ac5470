"""``python -m responseloop``: the ``responseloop`` command."""

import sys

from .cli import main

sys.exit(main())
