"""``python -m ndsc``: the ``ndsc`` command line (:mod:`app.cli`), the one import of the core upward."""

import sys

from app.cli import main

sys.exit(main())
