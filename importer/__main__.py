"""``python -m importer`` is the ``trackspec`` command."""

import sys

from .cli import main

sys.exit(main())
